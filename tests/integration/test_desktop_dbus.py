"""D-Bus through xdg-dbus-proxy against a real dbus-daemon started by the test.

Two python-dbus services own org.jailpytest.Allowed and org.jailpytest.Forbidden.
From inside, only what the rules grant is reachable; outside, both answer
(the counterpart). The proxy lives exactly as long as the sandbox, also when
jailpy is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import processes
from desktop_servers import SessionBus, child_of, wait_for

pytestmark = pytest.mark.integration

ALLOWED, FORBIDDEN = "org.jailpytest.Allowed", "org.jailpytest.Forbidden"


@pytest.fixture
def bus(test_user, user_tmp):
    server = SessionBus(test_user, user_tmp)
    server.serve(ALLOWED)
    server.serve(FORBIDDEN)
    yield server
    server.stop()


def call(name: str, method: str = "Ping", system: bool = False) -> str:
    flag = "--system" if system else "--session"
    return (f"dbus-send {flag} --print-reply --reply-timeout=5000 --dest={name} "
            f"/org/jailpytest org.jailpytest.Iface.{method}")


def has_owner(name: str) -> str:
    return ("dbus-send --session --print-reply --dest=org.freedesktop.DBus "
            f"/org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:{name}")


def request_name(name: str) -> str:
    return ("dbus-send --session --print-reply --dest=org.freedesktop.DBus "
            f"/org/freedesktop/DBus org.freedesktop.DBus.RequestName string:{name} uint32:4")


def session_env(bus: SessionBus) -> dict[str, str]:
    return {"DBUS_SESSION_BUS_ADDRESS": bus.address}


def proxies_for(bus: SessionBus) -> list[int]:
    """xdg-dbus-proxy processes whose upstream is this test's bus."""
    return [pid for pid, cmdline in processes()
            if (argv := cmdline.split(b"\0"))[0].endswith(b"xdg-dbus-proxy")
            and bus.address.encode() in argv]


def test_allowed_name_answers_and_forbidden_is_refused(jailpy, bus):
    for name in (ALLOWED, FORBIDDEN):  # counterpart: both answer outside
        outside = jailpy.raw(["sh", "-c", call(name)], env=session_env(bus))
        assert f"pong from {name}" in outside.stdout, outside.stderr
    allowed = jailpy.sandbox(call(ALLOWED), "--dbus-talk", ALLOWED, env=session_env(bus))
    assert allowed.returncode == 0 and f"pong from {ALLOWED}" in allowed.stdout, allowed.stderr
    forbidden = jailpy.sandbox(call(FORBIDDEN), "--dbus-talk", ALLOWED, env=session_env(bus))
    assert forbidden.returncode != 0 and "pong" not in forbidden.stdout
    # The proxy hides the name altogether: it does not exist as far as the sandbox knows.
    assert "ServiceUnknown" in forbidden.stderr


def test_names_are_invisible_unless_seen(jailpy, bus):
    hidden = jailpy.sandbox(has_owner(FORBIDDEN), "--dbus", env=session_env(bus))
    assert hidden.returncode == 0 and "boolean false" in hidden.stdout, hidden.stderr
    seen = jailpy.sandbox(f"{has_owner(FORBIDDEN)}; {call(FORBIDDEN)}", "--dbus-see", FORBIDDEN,
                          env=session_env(bus))
    assert "boolean true" in seen.stdout, seen.stderr
    # Seeing is not talking: the call is refused, now as access denied.
    assert "pong" not in seen.stdout and "AccessDenied" in seen.stderr


def test_call_rules_allow_one_method_only(jailpy, bus):
    rule = f"{FORBIDDEN}=org.jailpytest.Iface.Ping@/org/jailpytest"
    ping = jailpy.sandbox(call(FORBIDDEN, "Ping"), "--dbus-call", rule, env=session_env(bus))
    assert f"pong from {FORBIDDEN}" in ping.stdout, ping.stderr
    secret = jailpy.sandbox(call(FORBIDDEN, "Secret"), "--dbus-call", rule,
                            env=session_env(bus))
    assert "secret" not in secret.stdout and "AccessDenied" in secret.stderr
    outside = jailpy.raw(["sh", "-c", call(FORBIDDEN, "Secret")], env=session_env(bus))
    assert f"secret of {FORBIDDEN}" in outside.stdout  # counterpart


def test_own_rules(jailpy, bus):
    script = f"{request_name('org.jailpytest.Mine.App')}; {request_name('org.jailpytest.Other')}"
    result = jailpy.sandbox(script, "--dbus-own", "org.jailpytest.Mine.*", env=session_env(bus))
    assert "uint32 1" in result.stdout, result.stderr  # primary owner of the granted name
    # The second request is refused by the proxy (it answers as if the bus had no such name).
    assert result.stdout.count("uint32") == 1 and "Error" in result.stderr
    outside = jailpy.raw(["sh", "-c", request_name("org.jailpytest.Other")],
                         env=session_env(bus))
    assert "uint32 1" in outside.stdout  # counterpart


def test_system_bus_is_absent_or_filtered(jailpy, bus):
    # The test's bus stands in for the system bus (this machine runs none).
    env = {**session_env(bus), "DBUS_SYSTEM_BUS_ADDRESS": bus.address}
    absent = jailpy.sandbox("ls /run/dbus; echo ${DBUS_SYSTEM_BUS_ADDRESS:-unset}; "
                            f"{call(ALLOWED, system=True)}", env=env)
    assert "unset" in absent.stdout and "pong" not in absent.stdout
    filtered = jailpy.sandbox(f"{call(ALLOWED, system=True)}; {call(FORBIDDEN, system=True)}",
                              "--dbus-system-talk", ALLOWED, env=env)
    assert f"pong from {ALLOWED}" in filtered.stdout, filtered.stderr
    assert FORBIDDEN not in filtered.stdout and "ServiceUnknown" in filtered.stderr
    # The session bus was not asked for: it is not there.
    assert "DBUS_SESSION" not in jailpy.sandbox("env", "--dbus-system", "filtered",
                                                env=env).stdout


@pytest.fixture
def runtime_env(bus, user_tmp, test_user) -> dict[str, str]:
    """A private XDG_RUNTIME_DIR, so this test's session directories are its own."""
    runtime = user_tmp / "runtime"
    runtime.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(runtime, test_user.uid, test_user.gid)
    return {**session_env(bus), "XDG_RUNTIME_DIR": str(runtime)}


def test_proxy_stops_with_the_sandbox(jailpy, bus, runtime_env):
    result = jailpy.sandbox(f"{call(ALLOWED)}; ls $XDG_RUNTIME_DIR", "--dbus-talk", ALLOWED,
                            env=runtime_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "bus"  # inside: only the proxy's socket
    assert proxies_for(bus) == []
    assert os.listdir(Path(runtime_env["XDG_RUNTIME_DIR"]) / "jailpy") == []


def test_proxy_stops_when_jailpy_is_killed(jailpy, bus, runtime_env):
    proc = jailpy.popen(["run", "--dbus", "--", "sleep", "37.25"], env=runtime_env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proxy = wait_for(lambda: proxies_for(bus), 15, "the proxy")[0]
        session_dir = _session_dir_of(proxy)
        os.kill(child_of(proc.pid), signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: not proxies_for(bus), 10, "the proxy to exit")
        wait_for(lambda: not _running("sleep\x0037.25"), 10, "the sandbox to die")
        # The killed run could not clean up; the next run removes its leftovers.
        assert os.path.isdir(session_dir)
        assert session_dir.startswith(runtime_env["XDG_RUNTIME_DIR"])
        again = jailpy.sandbox("true", "--dbus", env=runtime_env)
        assert again.returncode == 0, again.stderr
        assert not os.path.exists(session_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _session_dir_of(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")
    socket = next(a for a in argv if a.startswith("/") and a.endswith("/bus"))
    return os.path.dirname(socket)


def _running(cmdline: str) -> bool:
    return any(raw.decode(errors="replace").rstrip("\0") == cmdline for _, raw in processes())


def test_missing_session_bus_is_a_clear_error(jailpy):
    result = jailpy.run(["run", "--dbus", "--", "true"])
    assert result.returncode == 125
    assert "there is no session bus" in result.stderr and "hint:" in result.stderr


def test_missing_proxy_is_a_clear_error(jailpy, bus, jailpy_bin):
    # A PATH without xdg-dbus-proxy is what a machine without the package looks like.
    env = {**session_env(bus), "PATH": f"/usr/sbin:/sbin:{os.path.dirname(jailpy_bin)}"}
    result = jailpy.run(["run", "--dbus", "--", "true"], env=env)
    assert result.returncode == 125
    assert result.stderr.startswith("jailpy: --dbus: D-Bus filtering needs xdg-dbus-proxy")
    assert "install the 'xdg-dbus-proxy' package" in result.stderr


def test_bad_rules_name_their_origin(jailpy, user_tmp, test_user):
    from conftest import as_user_file

    bad = jailpy.run(["run", "--dbus-talk", "not a name", "--", "true"])
    assert bad.returncode == 125
    assert bad.stderr.startswith("jailpy: --dbus-talk not a name: not a D-Bus well-known name")
    profile = as_user_file(user_tmp / "bad.toml",
                           '[desktop]\ndbus_call = ["org.example.App=no rule"]\n', test_user)
    result = jailpy.run(["run", "--profile", str(profile), "--", "true"])
    assert result.returncode == 125
    assert result.stderr.startswith(f"jailpy: {profile}: desktop.dbus_call[0]: bad D-Bus rule")
