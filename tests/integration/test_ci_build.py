"""The ci-build profile runs real untrusted builds, and keeps them in their box.

Each test builds a real project (make + gcc; pip wheel offline + pytest) as
the unprivileged test user in the shipped ci-build profile, and in the same
run the build's own code tries what a hostile pull request would: read a
planted SSH key, write outside the workspace, use the SSH agent, reach a
service on the host's 127.0.0.1. The same probe run outside the sandbox, as
the same user with the same environment, succeeds at all of it: that is what
shows the sandbox, not the probe, is what fails.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import as_user_file, chown_tree

PROJECTS = Path(__file__).parent / "ci_projects"
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nplanted-by-the-test\n-----END OPENSSH PRIVATE KEY-----\n"


class _Greeter:
    """A listening socket that greets every client (a stand-in agent / host service)."""

    def __init__(self, sock: socket.socket, greeting: bytes):
        self.sock = sock
        self.greeting = greeting
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(self.greeting)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def scene(jailpy, test_user, user_tmp):
    """A fake home with secrets, a workspace, an outside dir, an SSH agent socket in
    /tmp (where ssh-agent puts it) and a TCP service on the host's 127.0.0.1."""
    home = user_tmp / "home"
    as_user_file(home / ".ssh" / "id_rsa", FAKE_KEY, test_user, 0o600)
    as_user_file(home / ".bashrc", "# original\n", test_user)
    for secret in (".aws/credentials", ".netrc", ".config/gh/hosts.yml", ".docker/config.json",
                   ".kube/config", ".gnupg/private-keys-v1.d/key"):
        as_user_file(home / secret, "secret-token\n", test_user, 0o600)
    workspace = user_tmp / "ws"
    workspace.mkdir()
    (user_tmp / "outside").mkdir()
    chown_tree(user_tmp, test_user)
    agent_dir = Path(tempfile.mkdtemp(prefix="jailpy-ssh-", dir="/tmp"))
    agent_path = agent_dir / "agent.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(agent_path))
    chown_tree(agent_dir, test_user)
    agent = _Greeter(unix, b"AGENT")
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    service = _Greeter(tcp, b"HOST")
    env = {"HOME": str(home), "SSH_AUTH_SOCK": str(agent_path), "CI": "true",
           "GITHUB_TOKEN": "ghp_secret", "AWS_SECRET_ACCESS_KEY": "aws-secret"}
    probe_env = {"OUTSIDE": str(user_tmp / "outside" / "pwned"),
                 "BESIDE": str(user_tmp / "pwned-beside"), "AGENT_PATH": str(agent_path),
                 "HOST_PORT": str(tcp.getsockname()[1])}
    yield {"home": home, "ws": workspace, "outside": user_tmp / "outside", "env": env,
           "probe_env": probe_env}
    agent.close()
    service.close()
    shutil.rmtree(agent_dir, ignore_errors=True)


def _copy_project(name: str, workspace: Path, test_user) -> None:
    shutil.copytree(PROJECTS / name, workspace, dirs_exist_ok=True)
    shutil.copy(PROJECTS / "probe.py", workspace / "probe.py")
    chown_tree(workspace, test_user)


def _as_caller(jailpy, scene, args: list[str], cwd: Path, timeout: float = 120):
    """jailpy ARGS as the test user with the scene's environment (through env(1):
    runuser itself resets HOME to the passwd entry)."""
    env = [f"{name}={value}" for name, value in scene["env"].items()]
    return jailpy.raw(["env", *env, jailpy.binary, *args], cwd=cwd, timeout=timeout)


def _run_build(jailpy, scene, script: str):
    setenv = [arg for name, value in scene["probe_env"].items()
              for arg in ("--setenv", name, value)]
    return _as_caller(jailpy, scene, ["run", "-p", "ci-build", *setenv, "--json-status",
                                      "status.json", "--", "sh", "-c", script], scene["ws"])


def _assert_contained(jailpy, scene) -> None:
    inside = json.loads((scene["ws"] / "probe.json").read_text())
    # Writes may land in the sandbox's own tmpfs (its empty home, its /var/tmp): what
    # matters is that nothing reaches the host, checked on the host below.
    writes = ("write_outside", "write_beside_workspace", "write_home")
    for name, outcome in inside.items():
        if name not in writes:
            assert outcome.startswith("denied"), (name, outcome)
    assert not (scene["outside"] / "pwned").exists()
    assert not (scene["ws"].parent / "pwned-beside").exists()
    assert (scene["home"] / ".bashrc").read_text() == "# original\n"
    # Counterpart: the very same probe, same user, same environment, no sandbox.
    env = [f"{k}={v}" for k, v in {**scene["env"], **scene["probe_env"]}.items()]
    outside = jailpy.raw(["env", *env, "/usr/bin/python3", "probe.py", "probe-outside.json"],
                         cwd=scene["ws"])
    assert outside.returncode == 0, outside.stderr
    host = json.loads((scene["ws"] / "probe-outside.json").read_text())
    assert set(host.values()) == {"ALLOWED"}, host
    (scene["outside"] / "pwned").unlink()
    (scene["ws"].parent / "pwned-beside").unlink()


def test_c_project_builds_and_tests_but_cannot_escape(jailpy, test_user, scene):
    _copy_project("cproject", scene["ws"], test_user)
    result = _run_build(jailpy, scene, "make && make test && env > env.txt && "
                        "ls -A ~ > home.txt && python3 probe.py probe.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_calc: 0 failure(s)" in result.stdout
    assert (scene["ws"] / "calc").exists()  # the build's output is in the workspace
    status = json.loads((scene["ws"] / "status.json").read_text())
    assert status["exit_code"] == 0 and status["ended_by"] is None
    env = dict(line.split("=", 1) for line in (scene["ws"] / "env.txt").read_text().splitlines()
               if "=" in line)
    assert env["HOME"] == str(scene["home"]) and env["CI"] == "true"
    for secret in ("SSH_AUTH_SOCK", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        assert secret not in env
    assert (scene["ws"] / "home.txt").read_text() == ""  # an empty home: no dotfiles at all
    _assert_contained(jailpy, scene)


def test_python_wheel_offline_and_pytest(jailpy, test_user, scene):
    _copy_project("pyproject", scene["ws"], test_user)
    script = ("python3 -m pip wheel --no-index --no-build-isolation --no-deps -w dist . && "
              "python3 -m pip install --no-index --no-deps --target /tmp/site dist/*.whl && "
              "(cd /tmp && PYTHONPATH=/tmp/site python3 -m pytest -q -p no:cacheprovider "
              "\"$OLDPWD/tests/check_mini.py\") && "
              "python3 probe.py probe.json")
    result = _run_build(jailpy, scene, script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert [p.name for p in (scene["ws"] / "dist").iterdir()] == ["mini-1.0-py3-none-any.whl"]
    _assert_contained(jailpy, scene)


def test_workspace_may_not_be_the_home_directory(jailpy, scene):
    result = _as_caller(jailpy, scene, ["run", "-p", "ci-build", "--", "true"], scene["home"])
    assert result.returncode == 125
    assert "workspace" in result.stderr and "contains the home directory" in result.stderr
    assert "ci-build.toml: workspace.path" in result.stderr


@pytest.mark.parametrize("cwd,fragment", [
    ("/proc", "is in or contains /proc"),
    ("/tmp", "is or contains /tmp"),
    ("/var", "is or contains /var/tmp"),
    ("/dev/shm", "/dev"),
])
def test_workspace_may_not_expose_host_processes_or_shared_sockets(jailpy, cwd, fragment):
    """Binding /proc read-write would reach host processes (/proc/PID/mem);
    /tmp, /run and friends hold other programs' sockets (ssh-agent, X11)."""
    result = jailpy.run(["run", "-p", "ci-build", "--", "true"], cwd=cwd)
    assert result.returncode == 125, result.stderr
    assert fragment in result.stderr
    assert "workspace.path" in result.stderr
