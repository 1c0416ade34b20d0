"""`jailpy learn` on four real workloads, as the unprivileged test user.

For each workload (a C build with make and gcc, `python3 -m pytest` of a small
project, `git status` in a repository, a client fetching from a server on the
host's 127.0.0.1) the test:

1. learns a profile (`jailpy learn -o`), which ends by running the workload
   under the written profile and must report the same exit status;
2. adds a benign run of the probe below with `--merge` (so the probe's own
   start-up is allowed and its attacks fail for the profile's reasons, not
   because Python could not start);
3. runs the probe's attacks in ONE sandbox under the learned profile: read a
   planted ~/.ssh/id_rsa, read another project's file, ptrace, mount, keyctl,
   and a TCP connect to a listening port the workload never used. A control
   read of the workload's own file must succeed in the same run, so the probe
   demonstrably ran.

The sizes (binds, allowed syscalls against the kernel's count) are printed
for the issue's note; the allow-list must be under a third of the kernel's.
"""

from __future__ import annotations

import http.server
import json
import os
import platform
import re
import socket
import threading
import tomllib
from pathlib import Path

import pytest

from conftest import as_user_file, chown_tree

FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nplanted-by-the-test\n-----END OPENSSH PRIVATE KEY-----\n"
#: ptrace, mount, keyctl: also refused by the default base; msgget is allowed there, so
#: its refusal shows the learned allow-list itself at work.
SYSCALLS = {"x86_64": {"ptrace": 101, "mount": 165, "keyctl": 250, "msgget": 68},
            "aarch64": {"ptrace": 117, "mount": 40, "keyctl": 219, "msgget": 186}}
#: The probe: "benign" imports and resolves what the attacks use and touches
#: nothing; otherwise it tries each attack and prints one JSON object.
#: A script's attempts, each recorded in `out` as "ok" or the errno's name.
ATTEMPTS = r"""
out = {}
def attempt(name, action):
    try:
        action(); out[name] = "ok"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
"""
PROBE = r"""
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
numbers = json.loads(sys.argv[2])
if sys.argv[1] == "benign":
    print("ready"); sys.exit(0)
""" + ATTEMPTS + r"""
def read(path):
    with open(path, "rb") as f:
        f.read()
def call(name, *args):
    if libc.syscall(numbers[name], *args) == -1:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=3); s.close()
attempt("own_file", lambda: read(sys.argv[3]))
attempt("ssh_key", lambda: read(sys.argv[4]))
attempt("other_project", lambda: read(sys.argv[5]))
attempt("ptrace", lambda: call("ptrace", 0, 0, 0, 0))
attempt("mount", lambda: call("mount", b"none", b"/tmp", b"tmpfs", 0, None))
attempt("keyctl", lambda: call("keyctl", 0, -3, 0))
attempt("msgget", lambda: call("msgget", 0, 0o600))
attempt("unused_port", lambda: connect(int(sys.argv[6])))
print(json.dumps(out))
"""


class _Listener:
    """A TCP port on the host's 127.0.0.1 that accepts and closes (the unused port)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scene(test_user, user_tmp):
    home = user_tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    key = as_user_file(home / ".ssh" / "id_rsa", FAKE_KEY, test_user, 0o600)
    other = user_tmp / "other-project"
    other.mkdir()
    secret = as_user_file(other / "notes.txt", "another project's notes\n", test_user)
    listener = _Listener()
    chown_tree(user_tmp, test_user)
    yield {"home": home, "key": key, "secret": secret, "unused": listener.port}
    listener.close()


def _workload_c(root: Path) -> tuple[list[str], str]:
    (root / "Makefile").write_text("hello: hello.o\n\tgcc -o hello hello.o\n"
                                   "hello.o: hello.c\n\tgcc -c hello.c\n")
    (root / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    return ["make"], "hello.c"


def _workload_pytest(root: Path) -> tuple[list[str], str]:
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(
        "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    return ["/usr/bin/python3", "-m", "pytest", "-q"], "calc.py"


def _workload_git(root: Path) -> tuple[list[str], str]:
    (root / "README").write_text("a repository\n")
    (root / "src").mkdir()
    (root / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    return ["git", "status", "--short"], "README"


def _git_init(jailpy, root: Path) -> None:
    for argv in (["git", "init", "-q"], ["git", "add", "."],
                 ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", "commit",
                  "-qm", "init"]):
        assert jailpy.raw(argv, cwd=root).returncode == 0
    (root / "untracked.txt").write_text("new\n")


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: _Files(*a, directory=str(directory), **kw))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _sizes(profile: Path) -> tuple[int, int]:
    doc = tomllib.loads(profile.read_text())
    binds = sum(1 for m in doc["filesystem"]["mounts"] if {"bind", "ro-bind"} & set(m))
    return binds, len(doc["seccomp"]["allow"])


@pytest.mark.parametrize("workload", ["c-build", "pytest", "git-status", "http-client"])
def test_learned_profile_runs_the_workload_and_nothing_else(jailpy, test_user, user_tmp,
                                                           scene, workload):
    machine = platform.machine()
    if machine not in SYSCALLS:
        pytest.skip(f"the probe knows the syscall numbers of x86_64 and aarch64, not {machine}")
    project = user_tmp / "project"
    project.mkdir()
    env = {"HOME": str(scene["home"])}
    base: list[str] = []
    server = None
    if workload == "c-build":
        command, own = _workload_c(project)
    elif workload == "pytest":
        command, own = _workload_pytest(project)
    elif workload == "git-status":
        command, own = _workload_git(project)
    else:
        (project / "served.txt").write_text("fetched from the host\n")
        server, _ = _serve(project)
        port = server.server_address[1]
        command = ["/usr/bin/python3", "-c",
                   "import urllib.request; print(urllib.request.urlopen("
                   f"'http://127.0.0.1:{port}/served.txt', timeout=10).read().decode())"]
        own = "served.txt"
        net_base = as_user_file(user_tmp / "host-net.toml",
                                'extends = ["default"]\n[network]\nmode = "host"\n', test_user)
        base = ["-p", str(net_base)]
    chown_tree(user_tmp, test_user)
    if workload == "git-status":
        _git_init(jailpy, project)
    profile = user_tmp / "learned.toml"
    try:
        learned = jailpy.run(["learn", *base, "-o", str(profile), "--", *command],
                             cwd=project, env=env, timeout=120)
        assert learned.returncode == 0, learned.stderr
        assert "jailpy learn: verified: exit 0" in learned.stderr, learned.stderr
        expected = {"c-build": "gcc -o hello hello.o", "pytest": "1 passed",
                    "git-status": "?? untracked.txt", "http-client": "fetched from the host"}
        assert expected[workload] in learned.stdout, learned.stdout
        if workload == "http-client":  # both runs fetched: the learned one too
            assert learned.stdout.count("fetched from the host") == 2, learned.stdout
        binds, syscalls = _sizes(profile)
        if workload == "c-build":  # learn's own check found it built: build from clean
            for name in ("hello", "hello.o"):
                (project / name).unlink()
            again = jailpy.run(["run", "-p", str(profile), "--", *command], cwd=project,
                               env=env)
            assert again.returncode == 0 and (project / "hello").exists(), again.stderr

        numbers = json.dumps(SYSCALLS[machine])
        probe = ["/usr/bin/python3", "-c", PROBE]
        benign = jailpy.run(["learn", "--merge", str(profile), "--", *probe, "benign",
                             numbers], cwd=project, env=env, timeout=120)
        assert benign.returncode == 0, benign.stderr
        attacks = jailpy.run(["run", "-p", str(profile), "--", *probe, "attack", numbers,
                              str(project / own), str(scene["key"]), str(scene["secret"]),
                              str(scene["unused"])], cwd=project, env=env)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    assert attacks.returncode == 0, attacks.stderr
    result = json.loads(attacks.stdout.strip().splitlines()[-1])
    assert result["own_file"] == "ok", result
    for attack in ("ssh_key", "other_project", "ptrace", "mount", "keyctl", "msgget",
                   "unused_port"):
        assert result[attack] != "ok", (attack, result)
    assert result["ptrace"] == result["keyctl"] == result["msgget"] == "EPERM", result

    kernel = int(re.search(r"of this kernel's (\d+) syscalls", learned.stderr).group(1))
    assert syscalls < kernel / 3, (syscalls, kernel)
    print(f"\n{workload}: {binds} binds, {syscalls} of {kernel} syscalls allowed; "
          f"attacks: {result}")


def test_bad_input_is_one_line_and_125(jailpy, user_tmp, test_user):
    """No output file, a --merge file learn did not write, an unknown base, a directory
    that does not exist: one line naming the option, status 125, no traceback."""
    mine = as_user_file(user_tmp / "mine.toml", 'extends = ["default"]\n', test_user)
    marked = "# jailpy learn: a learned profile (docs/learn.md)\n"
    odd = as_user_file(user_tmp / "odd.toml", marked + '[seccomp]\nallow = "x"\n', test_user)
    cases = {("learn", "--", "true"): "-o OUT.toml or --merge OUT.toml",
             ("learn", "--merge", str(mine), "--", "true"): "was not written by jailpy learn",
             # learn's own marker over a malformed body: the key is named, nothing written
             ("learn", "--merge", str(odd), "--", "true"): f"{odd}: seccomp.allow: expected",
             ("learn", "-p", "no-such-profile", "-o", "x.toml", "--", "true"): "no-such-profile",
             ("learn", "--writable", str(user_tmp / "absent"), "-o", "x.toml", "--", "true"):
                 "--writable"}
    for argv, needle in cases.items():
        result = jailpy.run(list(argv))
        assert result.returncode == 125, (argv, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert odd.read_text() == marked + '[seccomp]\nallow = "x"\n'


def test_a_run_that_ends_differently_is_reported(jailpy, user_tmp):
    """The check compares exit statuses: a command that finds the learn run's own
    directory (strace's copy) exits 0 while learning and 1 under the learned profile."""
    result = jailpy.run(["learn", "-o", str(user_tmp / "odd.toml"), "--", "sh", "-c",
                         "test -e /tmp/.jailpy-learn"], cwd=user_tmp)
    assert result.returncode == 1, result.stderr
    assert "NOT verified: exit 1 under the learned profile, 0 while learning" in result.stderr
    assert (user_tmp / "odd.toml").exists()


def test_a_command_that_does_not_start_writes_nothing(jailpy, user_tmp):
    """The shell between strace and the command says why; learn says the command did
    not start, with the shell's status (127 not found), and writes no profile."""
    result = jailpy.run(["learn", "-o", str(user_tmp / "none.toml"), "--",
                         "no-such-command-here"], cwd=user_tmp, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 127, result.stderr
    assert "the command did not start (exit 127); no profile written" in result.stderr
    assert not (user_tmp / "none.toml").exists()
