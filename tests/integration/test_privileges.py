"""Capabilities, no_new_privs, seccomp and Landlock as configured, on the real kernel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import as_user_file

pytestmark = pytest.mark.integration

PROBE = Path(__file__).resolve().parent.parent / "security" / "probe.py"
CAPS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@pytest.fixture
def probe(user_tmp) -> str:
    """probe.py where the sandbox can read it (user_tmp is bound in by `inside`)."""
    target = user_tmp / "probe.py"
    shutil.copy(PROBE, target)
    target.chmod(0o644)
    return str(target)


def inside(jailpy, user_tmp, probe, *args, options=(), **kwargs):
    t = str(user_tmp)
    return jailpy.run(["run", "--ro-bind", t, t, *options, "--", "python3", probe, *args],
                      **kwargs)


def verdict(result) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, (result.returncode, result.stdout, result.stderr)
    return json.loads(lines[-1])


def profile(user_tmp, test_user, text: str, name: str = "p.toml") -> str:
    return str(as_user_file(user_tmp / name, text, test_user))


# -- capabilities and no_new_privs ----------------------------------------------------------


@pytest.mark.parametrize("uid", [None, "0"])
def test_all_capabilities_dropped_and_no_new_privs(jailpy, user_tmp, probe, uid):
    options = ("--uid", uid) if uid else ()
    status = verdict(inside(jailpy, user_tmp, probe, "status", options=options))["value"]
    assert {key: int(status[key], 16) for key in CAPS} == dict.fromkeys(CAPS, 0)
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert status["securebits"] == 0b101111     # noroot, no_setuid_fixup, keep_caps: locked


def test_status_counterpart_outside(jailpy, probe):
    status = json.loads(jailpy.raw(["python3", probe, "status"]).stdout)["value"]
    assert status["NoNewPrivs"] == "0" and status["securebits"] == 0


def test_kept_capability_in_every_set_and_usable(jailpy, user_tmp, probe):
    # CAP_NET_RAW: a raw socket in the sandbox's own network namespace. (Not
    # CAP_NET_BIND_SERVICE: low ports are open to everyone in a namespace jailpy made.)
    options = ("--cap-keep", "CAP_NET_RAW")
    status = verdict(inside(jailpy, user_tmp, probe, "status", options=options))["value"]
    assert {key: int(status[key], 16) for key in CAPS} == dict.fromkeys(CAPS, 1 << 13)
    raw = ("import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); "
           "print('raw')")
    assert jailpy.run(["run", *options, "--", "python3", "-c", raw]).stdout == "raw\n"
    refused = jailpy.run(["run", "--", "python3", "-c", raw])
    assert "Operation not permitted" in refused.stderr


def test_kept_capabilities_from_profile_and_explain(jailpy, user_tmp, test_user):
    path = profile(user_tmp, test_user,
                   'extends = ["default"]\n[capabilities]\nkeep = ["net_raw"]\n')
    explain = jailpy.run(["run", "--profile", path, "--explain", "--", "true"])
    assert "capabilities kept: CAP_NET_RAW" in explain.stdout
    assert "no_new_privs yes" in explain.stdout
    status = jailpy.run(["run", "--profile", path, "--", "grep", "CapEff", "/proc/self/status"])
    assert status.stdout.split()[1] == f"{1 << 13:016x}"


def test_unknown_capability_names_the_key(jailpy, user_tmp, test_user):
    path = profile(user_tmp, test_user, '[capabilities]\nkeep = ["CAP_NET_ADMN"]\n')
    result = jailpy.run(["run", "--profile", path, "--", "true"])
    assert result.returncode == 125
    assert f"{path}: capabilities.keep[0]: unknown capability 'CAP_NET_ADMN'" in result.stderr
    assert "did you mean 'CAP_NET_ADMIN'" in result.stderr
    assert "Traceback" not in result.stderr


# -- seccomp configuration ------------------------------------------------------------------


@pytest.mark.parametrize("action,expect", [
    ("errno:EACCES", {"ok": False, "errno": "EACCES"}),
    ("log", {"ok": True}),
])
def test_seccomp_actions(jailpy, user_tmp, probe, action, expect):
    result = verdict(inside(jailpy, user_tmp, probe, "keyctl",
                            options=("--seccomp-action", action)))
    assert {k: result[k] for k in expect} == expect


def test_seccomp_kill_process(jailpy, user_tmp, probe):
    result = inside(jailpy, user_tmp, probe, "keyctl", options=("--seccomp-action", "kill-process"))
    assert result.returncode == 128 + 31 and result.stdout == ""


def test_seccomp_trap_delivers_sigsys(jailpy, user_tmp, probe):
    result = inside(jailpy, user_tmp, probe, "keyctl-trapped", options=("--seccomp-action", "trap"))
    assert '{"sigsys": true}' in result.stdout


def test_per_syscall_action_and_exception(jailpy, user_tmp, test_user, probe):
    path = profile(user_tmp, test_user, 'extends = ["default"]\n[seccomp]\n'
                   'actions = { keyctl = "errno:ENOSYS" }\n')
    result = verdict(inside(jailpy, user_tmp, probe, "keyctl", options=("--profile", path)))
    assert result == {"ok": False, "errno": "ENOSYS"}
    allowed = verdict(inside(jailpy, user_tmp, probe, "keyctl",
                             options=("--seccomp-allow", "keyctl")))
    assert allowed["ok"] is True


def test_seccomp_can_be_turned_off(jailpy):
    result = jailpy.run(["run", "--no-seccomp", "--", "grep", "^Seccomp:", "/proc/self/status"])
    assert result.stdout.split() == ["Seccomp:", "0"]


def test_allow_userns_lets_nested_sandboxes_run(jailpy):
    result = jailpy.sandbox("unshare -Ur id -u", "--allow-userns")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_allow_userns_lets_an_apps_own_sandbox_chroot(jailpy):
    """Chromium's and Firefox's sandboxes chroot inside the user namespace they
    made (issue 14's reproducer); a profile that names chroot keeps it refused."""
    ok = jailpy.sandbox("unshare -Ur /usr/sbin/chroot / true", "--allow-userns")
    assert ok.returncode == 0, ok.stderr
    refused = jailpy.sandbox("unshare -Ur /usr/sbin/chroot / true", "--allow-userns",
                             "--seccomp-deny", "chroot")
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
    plain = jailpy.sandbox("/usr/sbin/chroot / true")
    assert plain.returncode != 0 and "Operation not permitted" in plain.stderr


CHROOT_ESCAPE = """
import os
os.makedirs("/tmp/jail/inner", exist_ok=True)
outside = os.open("/", os.O_RDONLY)
os.chroot("/tmp/jail")
os.fchdir(outside)              # the classic escape: a cwd outside the new root
for _ in range(64):
    os.chdir("..")
os.chroot(".")
print(sorted(os.listdir("/")))
print(os.path.exists(%r))
"""


def test_chroot_escape_inside_a_nested_userns_stays_in_the_sandbox(jailpy, user_tmp,
                                                                    test_user):
    """chroot is allowed with allow_userns: breaking out of a chroot made inside
    leads back to the sandbox's root (jailpy's pivot_root), never to the host."""
    secret = as_user_file(user_tmp / "secret.txt", "host only\n", test_user)
    script = CHROOT_ESCAPE % str(secret)
    escaped = jailpy.run(["run", "--allow-userns", "--", "unshare", "-Ur", "python3", "-c",
                          script])
    assert escaped.returncode == 0, escaped.stderr
    listing, found = escaped.stdout.splitlines()
    sandbox_root = jailpy.run(["run", "--", "python3", "-c",
                               "import os; print(sorted(os.listdir('/')))"]).stdout.strip()
    assert listing == sandbox_root  # out of the chroot, into the sandbox: no further
    assert found == "False"
    assert os.path.exists(secret)  # (it is there on the host)


def test_allow_list_mode(jailpy, user_tmp, test_user, probe):
    path = profile(user_tmp, test_user, 'extends = ["default"]\n[seccomp]\n'
                   'default_action = "deny"\nallow = ["@system-service"]\ndeny = ["socketpair"]\n')
    ok = jailpy.run(["run", "--profile", path, "--", "python3", "-c",
                     "import threading, os; t = threading.Thread(target=print, args=('t',)); "
                     "t.start(); t.join(); print(os.getpid())"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "t"
    refused = jailpy.run(["run", "--profile", path, "--", "python3", "-c",
                          "import socket; socket.socketpair()"])
    assert "Operation not permitted" in refused.stderr
    # Outside the allow-list: keyctl is not in @system-service.
    result = verdict(inside(jailpy, user_tmp, probe, "keyctl", options=("--profile", path)))
    assert result == {"ok": False, "errno": "EPERM"}


def test_unknown_syscall_in_profile(jailpy, user_tmp, test_user):
    path = profile(user_tmp, test_user, '[seccomp]\ndeny = ["ptrac"]\n')
    result = jailpy.run(["run", "--profile", path, "--", "true"])
    assert result.returncode == 125
    assert f"{path}: seccomp.deny[0]: unknown syscall 'ptrac'" in result.stderr
    assert "did you mean 'ptrace'" in result.stderr


@pytest.mark.parametrize("text,message", [
    ('[seccomp]\ndeny = ["@mout"]\n', "seccomp.deny[0]: unknown seccomp group '@mout'"),
    ('[seccomp]\naction = "errno:EPREM"\n', "seccomp.action: unknown errno name 'EPREM'"),
    ('[seccomp]\nbad_arch_action = "log"\n', "seccomp.bad_arch_action: unknown seccomp action"),
    ('[seccomp]\ndefault_action = "maybe"\n', "seccomp.default_action: expected \"allow\""),
    ('[landlock]\nread = ["relative"]\n', "landlock.read[0]: path must be absolute"),
])
def test_bad_security_values(jailpy, user_tmp, test_user, text, message):
    path = profile(user_tmp, test_user, text)
    result = jailpy.run(["run", "--profile", path, "--", "true"])
    assert result.returncode == 125 and f"{path}: {message}" in result.stderr, result.stderr


def test_cli_errors_name_the_option(jailpy):
    result = jailpy.run(["run", "--seccomp-deny", "ptrac", "--", "true"])
    assert result.returncode == 125
    assert "--seccomp-deny ptrac: unknown syscall 'ptrac'" in result.stderr


def test_profile_show_seccomp(jailpy):
    result = jailpy.run(["profile", "show", "--seccomp", "default"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "mode: deny-list" in out and "foreign ABIs (i386, x32, ...): kill-process" in out
    assert "ioctl if arg1 & 0xffffffff == 0x5412 (TIOCSTI) -> errno:EPERM" in out
    assert "clone3 -> errno:ENOSYS" in out
    assert any(line.split()[:2] == ["keyctl", "errno:EPERM"] for line in
               (line.strip() for line in out.splitlines()))


def test_exported_filter_works_with_bwrap(jailpy, user_tmp, probe):
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    bpf = user_tmp / "default.bpf"
    export = jailpy.run(["profile", "show", "--export-bpf", str(bpf), "default"])
    assert export.returncode == 0, export.stderr
    assert bpf.stat().st_size % 8 == 0 and bpf.stat().st_size > 0
    base = "bwrap --ro-bind / / --dev /dev --proc /proc"
    with_filter = jailpy.raw(["sh", "-c", f"{base} --seccomp 9 python3 {probe} keyctl 9<{bpf}"])
    assert json.loads(with_filter.stdout) == {"ok": False, "errno": "EPERM"}, with_filter.stderr
    without = jailpy.raw(["sh", "-c", f"{base} python3 {probe} keyctl"])
    assert json.loads(without.stdout)["ok"] is True, without.stderr


# -- Landlock -----------------------------------------------------------------------------------


def test_landlock_rules_without_mount_derivation(jailpy, user_tmp, test_user):
    """With from_mounts = false only the listed paths are reachable: the home tmpfs is
    mounted writable, yet Landlock refuses writing there."""
    path = profile(user_tmp, test_user, 'extends = ["default"]\n[landlock]\nfrom_mounts = false\n'
                   'read = ["/"]\nexecute = ["/usr"]\nwrite = ["/tmp"]\n')
    script = 'echo ok > /tmp/x && cat /tmp/x; echo no > "$HOME/x"; echo "home=$?"'
    refused = jailpy.sandbox(script, "--profile", path)
    assert refused.stdout.splitlines() == ["ok", "home=2"]
    assert "Permission denied" in refused.stderr
    allowed = jailpy.sandbox(script)
    assert allowed.stdout.splitlines() == ["ok", "home=0"]


def test_landlock_tcp_ports(jailpy, user_tmp, test_user, probe):
    path = profile(user_tmp, test_user, 'extends = ["default"]\n[landlock]\n'
                   'bind_tcp = [8001, 8002]\nconnect_tcp = [8001]\n')
    result = verdict(inside(jailpy, user_tmp, probe, "tcp-ports", "8001", "8002", "8003",
                            options=("--profile", path)))
    assert result["value"] == {"8001": "ok", "8002": "connect:EACCES", "8003": "bind:EACCES"}
    free = verdict(inside(jailpy, user_tmp, probe, "tcp-ports", "8001", "8002", "8003"))
    assert free["value"] == {"8001": "ok", "8002": "ok", "8003": "ok"}


def test_landlock_signal_scope_with_shared_pid_namespace(jailpy, user_tmp, test_user, probe):
    """Sharing the host's pid namespace, the host pid is visible but Landlock's signal
    scope refuses signalling it; without Landlock the same signal is delivered."""
    victim = subprocess.Popen(["sleep", "60"], user=test_user.uid if os.geteuid() == 0 else None,
                              group=test_user.gid if os.geteuid() == 0 else None,
                              extra_groups=[] if os.geteuid() == 0 else None)
    try:
        path = profile(user_tmp, test_user, 'extends = ["default"]\n[namespaces]\npid = false\n'
                       '[filesystem]\nremove = ["/proc"]\n')
        refused = verdict(inside(jailpy, user_tmp, probe, "kill-outside", str(victim.pid),
                                 options=("--profile", path)))
        assert refused == {"ok": False, "errno": "EPERM"}
        allowed = verdict(inside(jailpy, user_tmp, probe, "kill-outside", str(victim.pid),
                                 options=("--profile", path, "--no-landlock")))
        assert allowed == {"ok": True, "value": "signalled"}
    finally:
        victim.kill()
        victim.wait(timeout=10)


def test_stdout_reopens_through_landlock(jailpy, user_tmp):
    """The file behind fd 1 may be reopened (/dev/stdout), with its own access."""
    out = user_tmp / "out.txt"
    result = jailpy.raw(["sh", "-c", f"{jailpy.binary} run -- sh -c 'echo hi > /dev/stdout' "
                         f"> {out}; echo $?"])
    assert result.stdout.strip() == "0", result.stderr
    assert out.read_text() == "hi\n"


def test_missing_landlock_rule_path_names_the_option(jailpy):
    result = jailpy.run(["run", "--landlock-read", "/does/not/exist", "--", "true"])
    assert result.returncode == 125
    assert "--landlock-read /does/not/exist: Landlock rule path /does/not/exist" in result.stderr


def test_explain_and_check_report_landlock(jailpy):
    explain = jailpy.run(["run", "--explain", "--", "true"]).stdout
    assert "landlock    ABI" in explain and "scoped: signals, abstract unix sockets" in explain
    check = jailpy.run(["check"]).stdout
    line = next(line for line in check.splitlines() if "landlock:" in line)
    assert "ABI" in line and "filesystem access control" in line


def test_shared_mount_namespace_still_runs_under_landlock(jailpy, user_tmp, test_user):
    path = profile(user_tmp, test_user, "[namespaces]\nmount = false\n")
    result = jailpy.run(["run", "--profile", path, "--", "sh", "-c", "echo hi"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
