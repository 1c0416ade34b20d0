"""`jailpy learn` against a watched program that tries to forge its own record.

The watched program is untrusted by definition: what it writes must never
become profile content except through what strace really observed
(docs/learn.md, "The record cannot be forged"). The attacker below, run as the
unprivileged test user under the real CLI, writes strace-shaped lines claiming
an open of a planted ~/.ssh/id_rsa, a TCP connect to a listening port on
127.0.0.1 and a msgget call it never made, through every way in it can find:

- "by-path": into the log where the learn run used to keep it
  (/tmp/.jailpy-learn), into every descriptor it inherited, and on its own
  stderr;
- "through-strace": into the open descriptors of strace (/proc/PPID/fd) and
  of jailpy's pid 1, into strace's memory (/proc/PPID/mem,
  process_vm_writev) and by PTRACE_SEIZE of strace;
- "kill-strace": it kills strace, then does what it wants unrecorded;
- "retarget": it writes a file of its own, then swaps a directory on the way
  for a symlink into ~/.ssh, so that the host walk after the run leads the
  write somewhere the learn run kept read-only.

Each attempt is reported as JSON on stdout. Then: the learned profile grants
none of the forged accesses, and a probe under it fails to read the key,
connect to the port and call msgget (the first two cases), or learn refuses to
write a profile from the cut-short record (the third).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import tempfile
import tomllib
from pathlib import Path

import pytest

from conftest import as_user_file, chown_tree
from test_learn import ATTEMPTS, FAKE_KEY

MSGGET = {"x86_64": 68, "aarch64": 186}
PTRACE = {"x86_64": 101, "aarch64": 117}
PROCESS_VM_WRITEV = {"x86_64": 311, "aarch64": 271}

ATTACKER = r"""
import ctypes, errno, json, os, signal, socket, sys, time
mode, secret, port, numbers = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)

def hexed(text):
    return "".join(f"\\x{b:02x}" for b in text.encode())

def call(name, *args):
    if libc.syscall(numbers[name], *args) == -1:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))

pid = os.getpid()
sock = hexed("socket:[987654]")
FORGED = "".join((
    f'{pid} openat(AT_FDCWD<{hexed("/")}>, "{hexed(secret)}", O_RDONLY|O_CLOEXEC) = 3<{hexed(secret)}>\n',
    f"{pid} socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 7<{sock}>\n",
    f'{pid} connect(7<{sock}>, {{sa_family=AF_INET, sin_port=htons({port}), '
    f'sin_addr=inet_addr("{hexed("127.0.0.1")}")}}, 16) = 0\n',
    f"{pid} msgget(IPC_PRIVATE, 0600) = 0\n",
    f"{pid} +++ exited with 0 +++\n")) * 300  # longer than what strace still has to write
""" + ATTEMPTS + r"""
def append(path):
    with open(path, "a") as log:
        log.write(FORGED)

def by_path():
    old = "/tmp/.jailpy-learn"
    names = os.listdir(old) if os.path.isdir(old) else []
    for name in names or ["trace"]:
        append(os.path.join(old, name))

def own_fds():
    fds = [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
    written = 0
    for fd in fds:
        try:
            os.write(fd, FORGED.encode()); written += 1
        except OSError:
            pass
    if not written:
        raise OSError(errno.EBADF, "no inherited descriptor to write to")

def through_fds(tracer):
    fds = os.listdir(f"/proc/{tracer}/fd")
    for fd in fds:
        if int(fd) > 2:
            append(f"/proc/{tracer}/fd/{fd}")

def through_mem(tracer):
    with open(f"/proc/{tracer}/mem", "r+b", buffering=0):
        pass

def writev(tracer):
    address = 0x10000
    try:
        with open(f"/proc/{tracer}/maps") as maps:
            address = int(maps.readline().split("-")[0], 16)
    except OSError:
        pass  # the write is refused before its address is looked at
    data = ctypes.create_string_buffer(8)
    local = (ctypes.c_void_p * 2)(ctypes.addressof(data), 8)
    remote = (ctypes.c_void_p * 2)(address, 8)  # 8 zero bytes over its ELF header
    call("process_vm_writev", tracer, local, 1, remote, 1, ctypes.c_long(0))

def retarget():
    # Written where the learn run is writable, then the directory on the way is
    # swapped for a symlink to the key's: the host walk after the run follows it.
    os.makedirs("sub", exist_ok=True)
    with open("sub/id_rsa", "w") as own:
        own.write("the command's own file\n")
    os.rename("sub", "sub.old")
    os.symlink(os.path.dirname(secret), "sub")

if mode == "probe":
    def read():
        with open(secret, "rb") as f:
            f.read()
    attempt("read_key", read)
    attempt("connect_port", lambda: socket.create_connection(("127.0.0.1", port), 3).close())
    attempt("msgget", lambda: call("msgget", 0, 0o600))
    print(json.dumps(out)); sys.exit(0)

tracer = os.getppid()
sys.stderr.write(FORGED[:2000])
sys.stderr.flush()
if mode == "by-path":
    attempt("by_path", by_path)
    attempt("own_fds", own_fds)
elif mode == "through-strace":
    attempt("proc_fd", lambda: through_fds(tracer))
    attempt("pid1_fd", lambda: through_fds(1))  # jailpy's pid 1 holds the pipe too
    attempt("proc_mem", lambda: through_mem(tracer))
    if out["proc_fd"] != "ok":  # else strace is dumpable, and a tracer it gained would
        # get its SIGCHLDs and never wait for them: the whole run would hang
        attempt("ptrace_seize", lambda: call("ptrace", 0x4206, tracer, 0, 0))
    attempt("process_vm_writev", lambda: writev(tracer))
elif mode == "retarget":
    attempt("retarget", retarget)
else:
    attempt("by_path", by_path)
    attempt("through_fds", lambda: through_fds(tracer))
    attempt("kill", lambda: os.kill(tracer, signal.SIGKILL))
    time.sleep(0.2)
    attempt("by_path_after", by_path)
    with open(secret, "rb") as f:  # unobserved now
        f.read()
print(json.dumps(out))
"""


@pytest.fixture
def attack(jailpy, test_user, user_tmp):
    """A project with the attacker in it, a home with a planted key, a listening port,
    and a base with the host's network (so a forged connect would matter)."""
    machine = platform.machine()
    if machine not in MSGGET:
        pytest.skip(f"the attacker knows the syscall numbers of x86_64 and aarch64, not {machine}")
    # In the user's real home, not under /var/tmp: the learn run has a fresh /var/tmp,
    # where a forged path would be scratch and granted nothing anyway.
    home = Path(tempfile.mkdtemp(prefix=".jailpy-learn-test-", dir=test_user.home))
    os.chown(home, test_user.uid, test_user.gid)
    (home / ".ssh").mkdir()
    key = as_user_file(home / ".ssh" / "id_rsa", FAKE_KEY, test_user, 0o600)
    project = user_tmp / "project"
    project.mkdir()
    (project / "attacker.py").write_text(ATTACKER)
    base = as_user_file(user_tmp / "host-net.toml",
                        'extends = ["default"]\n[network]\nmode = "host"\n', test_user)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    chown_tree(user_tmp, test_user)
    numbers = json.dumps({"msgget": MSGGET[machine], "ptrace": PTRACE[machine],
                          "process_vm_writev": PROCESS_VM_WRITEV[machine]})
    port = listener.getsockname()[1]

    def learn(mode: str, profile):
        argv = ["/usr/bin/python3", "attacker.py", mode, str(key), str(port), numbers]
        return jailpy.run(["learn", "-p", str(base), "-o", str(profile), "--", *argv],
                          cwd=project, env={"HOME": str(home)}, timeout=120)

    def probe(profile):
        argv = ["/usr/bin/python3", "attacker.py", "probe", str(key), str(port), numbers]
        done = jailpy.run(["run", "-p", str(profile), "--", *argv], cwd=project,
                          env={"HOME": str(home)})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    yield learn, probe, key, port
    listener.close()
    shutil.rmtree(home, ignore_errors=True)


def _attempts(stdout: str) -> dict[str, str]:
    """What the attacker reported while it was watched (the first of the two runs)."""
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))


def _grants_nothing_forged(profile, key, port) -> None:
    doc = tomllib.loads(profile.read_text())
    mounts = json.dumps(doc["filesystem"]["mounts"])
    assert str(key) not in mounts and ".ssh" not in mounts, mounts
    assert port not in doc["network"].get("allow_connect_tcp", []), doc["network"]
    assert "msgget" not in doc["seccomp"]["allow"], doc["seccomp"]["allow"]


@pytest.mark.parametrize("mode", ["by-path", "through-strace"])
def test_forged_lines_grant_nothing(attack, user_tmp, mode):
    learn, probe, key, port = attack
    profile = user_tmp / "learned.toml"
    learned = learn(mode, profile)
    assert learned.returncode == 0, learned.stderr
    assert "jailpy learn: verified: exit 0" in learned.stderr, learned.stderr
    attempts = _attempts(learned.stdout)
    assert attempts and "ok" not in attempts.values(), attempts
    if mode == "through-strace":  # strace is not dumpable: ptrace access is refused
        assert attempts == {"proc_fd": "EACCES", "pid1_fd": "EACCES", "proc_mem": "EACCES",
                            "ptrace_seize": "EPERM", "process_vm_writev": "EPERM"}, attempts
    _grants_nothing_forged(profile, key, port)
    refused = probe(profile)
    assert set(refused) == {"read_key", "connect_port", "msgget"}, refused
    assert "ok" not in refused.values() and refused["msgget"] == "EPERM", refused


def test_killing_strace_leaves_no_profile(attack, user_tmp):
    """strace killed: the record ends early, so learn writes nothing and says why."""
    learn, _, _, _ = attack
    profile = user_tmp / "learned.toml"
    learned = learn("kill-strace", profile)
    assert learned.returncode == 125, (learned.returncode, learned.stderr)
    assert "the record is incomplete" in learned.stderr, learned.stderr
    assert "Traceback" not in learned.stderr, learned.stderr
    assert not profile.exists()


def test_a_symlink_changed_after_a_write_grants_no_write(attack, user_tmp):
    """The command writes a file of its own, then turns the directory on the way into
    a symlink to ~/.ssh: the host walk after the run leads the write there, where the
    learn run was read-only. No read-write bind of it, so neither the verifying run
    (which does the same again) nor any later one can write the key. (A read it may
    point anywhere it could have read outright: docs/learn.md, "Limits".)"""
    learn, _, key, _ = attack
    profile = user_tmp / "learned.toml"
    learned = learn("retarget", profile)
    assert learned.returncode in (0, 1), learned.stderr
    assert _attempts(learned.stdout) == {"retarget": "ok"}, learned.stdout
    assert Path(key).read_text() == FAKE_KEY  # the verifying run did not write it
    text = profile.read_text()
    writable = [op["bind"] for op in tomllib.loads(text)["filesystem"]["mounts"] if "bind" in op]
    assert not [path for path in writable if ".ssh" in path], writable
    assert "a symlink on the way changed" in text


REWRITER = """
import os, sys
if os.path.exists("armed"):  # the verifying run, built from the rewritten base
    with open(sys.argv[1], "a") as target:
        target.write("written by the verifying run\\n")
else:
    open("armed", "w").close()
    with open("base.toml", "w") as base:
        base.write('extends = ["default"]\\n[filesystem]\\nmounts = [{bind = "%s"}]\\n'
                   % os.path.dirname(sys.argv[1]))
"""


def test_a_base_the_command_can_rewrite_is_refused(attack, jailpy, user_tmp, test_user):
    """A base in the working directory: the command could rewrite it while learning
    (here: a bind of ~/.ssh), and the learned profile extends it, so the verifying
    run would write the key. learn refuses it before running anything."""
    _, _, key, _ = attack
    project = user_tmp / "project"
    as_user_file(project / "rewriter.py", REWRITER, test_user)
    base = as_user_file(project / "base.toml", 'extends = ["default"]\n', test_user)
    profile = project / "learned.toml"
    done = jailpy.run(["learn", "-p", "./base.toml", "-o", str(profile), "--",
                       "/usr/bin/python3", "rewriter.py", str(key)], cwd=project, timeout=120)
    assert Path(key).read_text() == FAKE_KEY
    assert done.returncode == 125, done.stderr
    assert f"the profile {base} is where the watched command may write" in done.stderr
    assert "Traceback" not in done.stderr and not profile.exists()


def test_the_verifying_run_cannot_rewrite_the_learned_profile(attack, jailpy, user_tmp,
                                                              test_user):
    """The profile written into the project, which the learned profile binds
    writable: the verifying run's rewrite of it is undone and reported, with the
    warning that later runs could do the same (attack: its project directory)."""
    project = user_tmp / "project"
    as_user_file(project / "rewriter.py", 'import os\nif os.path.exists("armed"):\n'
                 '    open("learned.toml", "a").write("\\n# the command\'s own line\\n")\n'
                 'open("armed", "w").close()\n', test_user)
    done = jailpy.run(["learn", "-o", "learned.toml", "--", "/usr/bin/python3", "rewriter.py"],
                      cwd=project, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "NOT verified: the verifying run changed learned.toml; written again" in done.stderr
    assert "warning: learned.toml is writable under the profile it holds" in done.stderr
    assert "the command's own line" not in (project / "learned.toml").read_text()
