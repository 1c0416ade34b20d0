"""Limits without a kernel: value parsing, policy conversion, classification, parsing
of cgroup bookkeeping files, the JSON document."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jailpy.errors import ConfigError
from jailpy.plan import Caller, build_plan
from jailpy.policy import Limits, Policy, Workspace
from jailpy.profile import resolve_policy
from jailpy.cli.options import split_rlimit_option
from jailpy.profile.limits import parse_rlimit
from jailpy.runtime import cgroups
from jailpy.runtime.cgroups import CgroupStats, Hierarchy
from jailpy.runtime.init import KILL_ALL
from jailpy.runtime.launcher import Result
from jailpy.runtime.limits import LimitReport, ended_by
from jailpy.runtime.watchdog import Watchdog
from jailpy.report.status import error_document, result_document

INF = resource.RLIM_INFINITY


@pytest.mark.parametrize("name, value, expected", [
    ("nofile", 1024, (1024, 1024)),
    ("nofile", "512:1024", (512, 1024)),
    ("nofile", [256, 512], (256, 512)),
    ("fsize", "1G:2G", (1 << 30, 2 << 30)),
    ("as", "512M", (512 << 20, 512 << 20)),
    ("cpu", "10m", (600, 600)),
    ("cpu", "1.5", (2, 2)),
    ("core", 0, (0, 0)),
    ("stack", "8M:unlimited", (8 << 20, INF)),
    ("nproc", "unlimited", (INF, INF)),
])
def test_rlimit_values(name, value, expected):
    assert parse_rlimit(name, value, "here") == expected


@pytest.mark.parametrize("name, value, message", [
    ("nofiles", 1, "unknown rlimit 'nofiles'"),
    ("nofile", "2:1", "soft limit above the hard limit"),
    ("nofile", "unlimited:10", "soft limit above the hard limit"),
    ("nofile", "1k", "expected a count"),
    ("nofile", -1, "expected a count"),
    ("nofile", [1, 2, 3], "expected [soft, hard]"),
    ("fsize", "lots", "bad size"),
    ("cpu", "0", "duration must be positive"),
])
def test_bad_rlimit_values(name, value, message):
    with pytest.raises(ConfigError) as err:
        parse_rlimit(name, value, "p.toml: limits.rlimits.x")
    assert message in str(err.value) and err.value.origin == "p.toml: limits.rlimits.x"


def test_rlimit_option_syntax():
    assert split_rlimit_option("NOFILE=1:2") == ("nofile", "1:2")
    with pytest.raises(ConfigError) as err:
        split_rlimit_option("nofile")
    assert err.value.origin == "--rlimit nofile"


def _policy(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "p.toml"
    path.write_text('extends = ["default"]\n' + text)
    return resolve_policy(str(path), Caller(os.getuid(), os.getgid(),
                                            {"HOME": str(tmp_path / "home")}, str(tmp_path)))


def test_limits_section_becomes_policy(tmp_path):
    policy = _policy(tmp_path, '[limits]\ntimeout = "10m"\nkill_grace = 2\nmemory_max = "1G"\n'
                     'pids_max = 100\ncpus = 1.5\ncgroup_parent = "/ci"\n'
                     '[limits.rlimits]\nnofile = 64\n')
    limits = policy.limits
    assert (limits.timeout, limits.kill_grace, limits.memory_max, limits.pids_max,
            limits.cpus, limits.cgroup_parent) == (600.0, 2.0, 1 << 30, 100, 1.5, "/ci")
    assert limits.rlimits == (("nofile", 64, 64),)
    assert limits.cgroup_controllers == ("memory", "pids", "cpu")
    assert limits.origin_of("pids_max").endswith("p.toml: limits.pids_max")


@pytest.mark.parametrize("text, message", [
    ("[limits]\npids_max = 0\n", "pids_max must be at least 1"),
    ("[limits]\ncpus = -1\n", "cpus must be a positive number"),
    ("[limits]\ncgroup_parent = \"ci\"\n", "cgroup_parent must be an absolute cgroup path"),
    ("[limits]\ncpu_period = \"5s\"\n", "cpu_period must be between"),
    ("[limits]\ntimeout = true\n", "expected duration"),
    ("[workspace]\npath = \"src\"\n", "workspace must be an absolute path"),
])
def test_bad_limits_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _policy(tmp_path, text)
    assert message in str(err.value)
    assert "p.toml: " in str(err.value)


def test_quotas_defaults_inherit_and_what_may_be_skipped(tmp_path):
    """jailpy's default quotas are the ones the runtime may skip where /proc/sys is
    read-only; a quota the profile names never is; "inherit" writes none."""
    (tmp_path / "home").mkdir()
    plain = build_plan(_policy(tmp_path, ""), ["true"], _caller(tmp_path, tmp_path))
    assert plain.quotas == (("inotify_instances", 32), ("inotify_watches", 16384))
    assert plain.default_quotas == ("inotify_instances", "inotify_watches")
    policy = _policy(tmp_path, '[limits]\nquotas = { inotify_instances = 8, '
                     'inotify_watches = "inherit", user_namespaces = 5 }\n')
    plan = build_plan(policy, ["true"], _caller(tmp_path, tmp_path))
    assert plan.quotas == (("inotify_instances", 8), ("user_namespaces", 5))
    assert plan.default_quotas == ()
    with pytest.raises(ConfigError) as err:
        _policy(tmp_path, '[limits]\nquotas = { inotify_watches = "none" }\n')
    assert 'name = N or "inherit"' in str(err.value) and "limits.quotas" in str(err.value)


def _caller(tmp_path: Path, cwd: Path) -> Caller:
    return Caller(os.getuid(), os.getgid(), {"HOME": str(tmp_path / "home")}, str(cwd))


def test_workspace_is_bound_last_and_becomes_the_cwd(tmp_path):
    (tmp_path / "home").mkdir()
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    policy = Policy(workspace=Workspace(str(ws), "here"))
    plan = build_plan(policy, ["true"], _caller(tmp_path, tmp_path))
    assert plan.mount_ops[-1].kind == "bind" and plan.mount_ops[-1].dest == str(ws)
    assert plan.cwd == str(ws)
    inside = build_plan(policy, ["true"], _caller(tmp_path, ws / "sub"))
    assert inside.cwd == str(ws / "sub")  # the caller's own directory in the workspace


@pytest.mark.parametrize("where", ["home", "root", "parent", "symlink"])
def test_workspace_may_not_contain_the_home(tmp_path, where):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "link").symlink_to(home)
    path = {"home": home, "root": Path("/"), "parent": tmp_path,
            "symlink": tmp_path / "link"}[where]
    with pytest.raises(ConfigError) as err:
        build_plan(Policy(workspace=Workspace(str(path), "ci.toml: workspace.path")), ["true"],
                   _caller(tmp_path, tmp_path))
    assert err.value.origin == "ci.toml: workspace.path"


def _report(**stats) -> LimitReport:
    return LimitReport(stats=CgroupStats(1, **stats), cgroup="v1")


@pytest.mark.parametrize("limits, report, sig, failed, cpu, expected", [
    (Limits(), LimitReport(), None, False, 0, (None, ())),
    (Limits(), LimitReport(timed_out=True), signal.SIGKILL, True, 0,
     ("timeout", ("timeout",))),
    (Limits(), _report(oom_kills=1), signal.SIGKILL, True, 0, ("memory", ("memory",))),
    (Limits(), _report(oom_kills=1), None, True, 0, ("memory", ("memory",))),
    (Limits(), _report(oom_kills=1), None, False, 0, (None, ("memory",))),
    (Limits(), _report(pids_max_hits=3), None, True, 0, (None, ("pids",))),
    (Limits(rlimits=(("cpu", 1, 2),)), LimitReport(), signal.SIGXCPU, True, 1.0,
     ("rlimit-cpu", ("rlimit-cpu",))),
    (Limits(rlimits=(("cpu", 1, 2),)), LimitReport(), signal.SIGKILL, True, 2.0,
     ("rlimit-cpu", ("rlimit-cpu",))),
    (Limits(), LimitReport(), signal.SIGKILL, True, 5.0, (None, ())),
    (Limits(), LimitReport(), signal.SIGXFSZ, True, 0, ("rlimit-fsize", ("rlimit-fsize",))),
])
def test_which_limit_ended_it(limits, report, sig, failed, cpu, expected):
    assert ended_by(limits, report, sig, failed, cpu) == expected


MOUNTINFO = """\
24 1 8:1 / / rw - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 /nested /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / {v2} rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/again rw,relatime - cgroup cgroup rw,memory
"""


def test_hierarchies_from_mountinfo(tmp_path):
    v2 = tmp_path / "unified"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu pids\n")
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO.format(v2=v2))
    found = cgroups.hierarchies(str(info))
    assert [(h.version, h.mount, sorted(h.controllers)) for h in found] == [
        (1, "/sys/fs/cgroup/cpu", ["cpu"]), (1, "/sys/fs/cgroup/memory", ["memory"]),
        (1, "/sys/fs/cgroup/pids", ["pids"]), (2, str(v2), ["cpu", "pids"])]
    chosen, missing = cgroups.choose_hierarchies(("memory", "pids", "cpu", "io"), found)
    assert chosen["memory"].version == 1 and chosen["pids"].version == 2
    assert chosen["cpu"].version == 2 and missing == ["io"]
    pids_v1 = found[2]
    assert pids_v1.directory("/nested/jailpy/u") == "/sys/fs/cgroup/pids/jailpy/u"


def test_own_cgroups(tmp_path):
    path = tmp_path / "cgroup"
    path.write_text("8:pids:/a\n2:cpu,cpuacct:/b\n0::/user.slice/x.scope\n")
    assert cgroups.own_cgroups(str(path)) == {"pids": "/a", "cpu": "/b", "cpuacct": "/b",
                                             "": "/user.slice/x.scope"}


def test_v2_parent_must_contain_the_caller(tmp_path):
    h = Hierarchy(2, str(tmp_path), "/", frozenset({"memory"}))
    parent = tmp_path / "jailpy" / "u"
    parent.mkdir(parents=True)
    (parent / "cgroup.procs").write_text("")
    with pytest.raises(cgroups.NoParent) as err:
        cgroups.find_parent(h, "/jailpy/u", {"": "/user.slice"})
    assert "outside /jailpy/u" in str(err.value)
    found = cgroups.find_parent(h, "/jailpy/u", {"": "/jailpy/u/runner"})
    assert found.directory == str(parent)


@pytest.mark.parametrize("version, limits, files", [
    (1, Limits(memory_max=100), [("memory.limit_in_bytes", "100", True),
                                 ("memory.memsw.limit_in_bytes", "100", False)]),
    (1, Limits(memory_max=100, memory_swap_max=50),
     [("memory.limit_in_bytes", "100", True), ("memory.memsw.limit_in_bytes", "150", True)]),
    (2, Limits(memory_max=100), [("memory.max", "100", True), ("memory.swap.max", "0", False)]),
])
def test_memory_limit_files(version, limits, files):
    assert cgroups._limit_files(limits, "memory", version) == files


def test_cpu_limit_files():
    limits = Limits(cpus=1.5, cpu_period=0.1)
    assert cgroups._limit_files(limits, "cpu", 2) == [("cpu.max", "150000 100000", True)]
    assert cgroups._limit_files(limits, "cpu", 1) == [("cpu.cfs_period_us", "100000", True),
                                                      ("cpu.cfs_quota_us", "150000", True)]


def test_watchdog_terminates_then_kills():
    """A real process stands in for pid 1: SIGTERM first, SIGKILL after the grace."""
    stubborn = subprocess.Popen(["python3", "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                 "print('ready', flush=True)\ntime.sleep(60)"],
                                stdout=subprocess.PIPE)
    assert stubborn.stdout.readline() == b"ready\n"
    dog = Watchdog(timeout=0.0, grace=0.1, start=time.monotonic())
    dog.pid1 = stubborn.pid
    assert dog.wait_time() == 0.0
    dog.expire()
    assert dog.fired and dog.stage == "terminating" and stubborn.poll() is None
    dog.expire()  # KILL_ALL: a real pid 1 kills its namespace; this stand-in just dies of it
    assert dog.stage == "killing" and stubborn.wait(5) == -KILL_ALL
    dog.expire()
    assert dog.stage == "killed"
    dog.expire()
    assert dog.stage == "done" and dog.wait_time() is None


def test_json_documents_have_every_key():
    result = Result(3, None, 1.0, 0.5, 0.25, command_exit_code=3)
    doc = result_document(result)
    err = error_document(ConfigError("bad", origin="--timeout"))
    assert set(doc) == set(err)
    assert doc["exit_code"] == 3 and doc["error"] is None and doc["limits_hit"] == []
    assert err["exit_code"] == 125 and err["error"] == "--timeout: bad"
