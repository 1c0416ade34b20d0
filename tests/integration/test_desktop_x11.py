"""X11 through jailpy against a real Xvfb started by the test (as the test user).

What is checked: a window from inside appears on the display (seen by
xwininfo outside, screenshot saved under artifacts/); only that display's
socket and one cookie reach the sandbox; without x11 the display is
unreachable even with DISPLAY and XAUTHORITY kept; an untrusted cookie
(X SECURITY extension) cannot read the screen, while a trusted one can.
"""

from __future__ import annotations

import os
import signal
import subprocess
import pytest

from conftest import REPO, as_user_file
from desktop_servers import Xvfb, child_of, wait_for

pytestmark = pytest.mark.integration
ARTIFACTS = REPO / "artifacts"


@pytest.fixture
def xvfb(test_user, user_tmp):
    server = Xvfb(test_user, user_tmp, "x")
    yield server
    server.stop()


def _tree(jailpy, xvfb) -> str:
    return jailpy.raw(["xwininfo", "-root", "-tree"], env=xvfb.env()).stdout


def test_window_from_the_sandbox_appears_on_the_display(jailpy, xvfb, user_tmp, test_user):
    profile = as_user_file(user_tmp / "x11.toml",
                           'extends = ["default"]\n[desktop]\nx11 = true\n', test_user)
    proc = jailpy.popen(["run", "--profile", str(profile), "--", "xmessage", "-name",
                         "jailpyx11test", "-geometry", "+20+20", "hello from the sandbox"],
                        env=xvfb.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        start_new_session=True)
    try:
        wait_for(lambda: "jailpyx11test" in _tree(jailpy, xvfb) or proc.poll() is not None,
                 15, "the xmessage window")
        assert proc.poll() is None, proc.communicate()[1]
        shot = subprocess.run(test_user.command(["sh", "-c",
                                                 "xwd -root -silent | convert xwd:- png:-"]),
                              env=jailpy.env(xvfb.env()), capture_output=True, timeout=30,
                              cwd=user_tmp)
        assert shot.returncode == 0 and shot.stdout.startswith(b"\x89PNG"), shot.stderr
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "x11-xmessage.png").write_bytes(shot.stdout)
    finally:
        # SIGTERM to jailpy itself (runuser's child), which forwards it into the sandbox.
        os.kill(child_of(proc.pid), signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    # jailpy forwarded SIGTERM to xmessage, which died of it: 128 + 15.
    assert proc.returncode == 143, err


def test_only_that_display_and_only_its_cookie(jailpy, xvfb, user_tmp, test_user):
    other = Xvfb(test_user, user_tmp, "other")
    try:
        # One Xauthority file with cookies for both displays, as a real session has.
        Xvfb.add_cookie(test_user, xvfb.xauthority, other.display, other.cookie)
        outside = jailpy.raw(["xdpyinfo", "-display", other.display], env=xvfb.env())
        assert outside.returncode == 0, outside.stderr  # counterpart: reachable outside
        script = ("ls /tmp/.X11-unix; xauth -f \"$XAUTHORITY\" nlist 2>/dev/null; "
                  "xdpyinfo >/dev/null && echo main-ok; "
                  f"xdpyinfo -display {other.display} >/dev/null 2>&1 || echo other-refused")
        result = jailpy.sandbox(script, "--x11", env=xvfb.env())
        assert result.returncode == 0, result.stderr
        lines = result.stdout.split("\n")
        assert lines[0] == f"X{xvfb.number}"  # the other display's socket is not there
        cookies = [line for line in lines if line.startswith("ffff")]
        assert len(cookies) == 1 and cookies[0].split()[-1] == xvfb.cookie
        assert "main-ok" in lines and "other-refused" in lines
    finally:
        other.stop()


def test_without_x11_the_display_is_unreachable(jailpy, xvfb):
    # Even with DISPLAY and XAUTHORITY kept, there is no socket inside.
    result = jailpy.run(["run", "--keep-env", "DISPLAY", "--keep-env", "XAUTHORITY", "--",
                         "xmessage", "-name", "jailpyx11none", "should not show"],
                        env=xvfb.env(), timeout=30)
    assert result.returncode != 0
    assert "Can't open display" in result.stderr
    assert "jailpyx11none" not in _tree(jailpy, xvfb)


def test_x11_without_display_is_a_clear_error(jailpy):
    result = jailpy.run(["run", "--x11", "--", "true"])
    assert result.returncode == 125
    assert result.stderr.startswith("jailpy: --x11: x11 is on but DISPLAY is not set\n")
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("display, message", [
    ("otherhost:10.0", "is not a local display"),
    (":4071", "no X11 socket /tmp/.X11-unix/X4071"),
])
def test_unusable_display_is_a_clear_error(jailpy, display, message):
    result = jailpy.run(["run", "--x11", "--", "true"], env={"DISPLAY": display})
    assert result.returncode == 125
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 2


def test_untrusted_cookie_cannot_read_the_screen(jailpy, xvfb):
    grab = "xwd -root -silent | wc -c"
    outside = jailpy.raw(["sh", "-c", grab], env=xvfb.env())
    assert int(outside.stdout) > 100000  # counterpart: a screenshot works outside
    trusted = jailpy.sandbox(grab, "--x11", env=xvfb.env())
    assert int(trusted.stdout) > 100000, trusted.stderr
    untrusted = jailpy.sandbox(f"xdpyinfo >/dev/null && echo connected; {grab}",
                               "--x11-untrusted", env=xvfb.env())
    assert untrusted.stdout.split() == ["connected", "0"], untrusted.stderr
    assert "unable to get image" in untrusted.stderr


def test_untrusted_cookie_needs_the_security_extension(jailpy, user_tmp, test_user):
    # An X server without the SECURITY extension: untrusted must fail, never fall back.
    plain = Xvfb(test_user, user_tmp, "nosec", extra_args=("-extension", "SECURITY"))
    try:
        result = jailpy.run(["run", "--x11-untrusted", "--", "true"], env=plain.env())
        assert result.returncode == 125, result.stderr
        assert "does not support untrusted cookies" in result.stderr
    finally:
        plain.stop()
