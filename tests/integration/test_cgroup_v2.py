"""The cgroup v2 driver against the real v2 hierarchy, as the unprivileged user.

On a hybrid machine the v2 hierarchy has no controllers, so jailpy never
picks it for a memory or pids limit; these tests drive the v2 code paths
that do not need a controller (find the delegated parent, create the
sandbox cgroup, join it from a child, cgroup.kill, remove) and the kernel
rule the parent search encodes: a process can be moved only within a
subtree whose cgroup.procs the mover may write. Setting limit files is
covered on v1 here; on a pure-v2 machine the limit tests use this driver.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from jailpy.runtime import cgroups

DRIVE = r"""
import json, os, time
from jailpy.policy import Limits
from jailpy.runtime import cgroups
h = next(h for h in cgroups.hierarchies() if h.version == 2)
own = cgroups.own_cgroups()
try:
    parent = cgroups.find_parent(h, None, own)
except cgroups.NoParent as exc:
    probe = h.directory(f"/jailpy/{os.environ['USER']}/probe-{os.getpid()}")
    os.mkdir(probe)
    try:
        with open(os.path.join(probe, "cgroup.procs"), "w") as f:
            f.write("0")
        moved = "moved"
    except OSError as err:
        moved = type(err).__name__
    os.rmdir(probe)
    print(json.dumps({"no_parent": str(exc), "direct_move": moved}))
    raise SystemExit(0)
cg = cgroups.SandboxCgroup.in_parents([(parent, [])], Limits(), [])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    cg.join()
    os.write(w, b"j")
    time.sleep(60)
    os._exit(0)
cg.close_join_fds()
os.read(r, 1)
members = sorted(cg.pids())
with open(f"/proc/{pid}/cgroup") as f:
    where = f.read().strip()
cg.kill_all()
_, status = os.waitpid(pid, 0)
directory = cg.directories[0]
cg.remove()
print(json.dumps({"own": own[""], "parent": parent.path, "pid": pid, "members": members,
                  "where": where, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status)
                  else None, "removed": not os.path.exists(directory)}))
"""


@pytest.fixture(scope="module")
def runner_cgroup(test_user) -> Path:
    v2 = [h for h in cgroups.hierarchies() if h.version == 2]
    if not v2:
        pytest.skip("no cgroup v2 hierarchy mounted")
    runner = Path(v2[0].directory(f"/jailpy/{test_user.name}/runner"))
    if not runner.is_dir() or os.geteuid() != 0:
        pytest.skip("needs root and scripts/setup.d/cgroup.sh (v2 runner cgroup)")
    return runner


def _drive(jailpy, runner: Path | None) -> dict:
    def enter() -> None:  # as root, before runuser: start the test user inside `runner`
        with open(runner / "cgroup.procs", "w") as f:
            f.write("0")

    python = str(Path(jailpy.binary).parent / "python")
    proc = subprocess.run(jailpy.user.command([python, "-c", DRIVE]), capture_output=True,
                          text=True, timeout=30, env=jailpy.env({"USER": jailpy.user.name}),
                          cwd="/", preexec_fn=enter if runner else None)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_v2_sandbox_cgroup_lifecycle(jailpy, test_user, runner_cgroup):
    got = _drive(jailpy, runner_cgroup)
    assert got["own"] == f"/jailpy/{test_user.name}/runner"
    assert got["parent"] == f"/jailpy/{test_user.name}"
    assert got["members"] == [got["pid"]]
    v2_line = next(line for line in got["where"].splitlines() if line.startswith("0::"))
    assert v2_line.startswith(f"0::/jailpy/{test_user.name}/jailpy-")
    assert got["signal"] == 9  # cgroup.kill
    assert got["removed"]


def test_v2_refuses_a_parent_the_caller_is_not_inside(jailpy, test_user, runner_cgroup):
    got = _drive(jailpy, None)  # the test user in the root cgroup, outside the delegation
    assert "outside" in got["no_parent"]
    assert got["direct_move"] in ("PermissionError", "FileNotFoundError")  # the kernel agrees
