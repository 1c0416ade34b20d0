"""`jailpy wrap` / `unwrap` round trip in a temporary home, as the test user.

A small app (a shell script in its own directory, with a .desktop entry in a
private XDG_DATA_DIRS) is wrapped; starting it through PATH, or through the
Exec line of the rewritten .desktop copy, runs it in its own pid namespace;
unwrapping leaves the home exactly as it was.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from conftest import as_user_file, chown_tree

pytestmark = pytest.mark.integration

APP = "jailpytestapp"
APP_SCRIPT = """#!/bin/sh
echo "pid=$$"
echo "pidns=$(readlink /proc/self/ns/pid)"
echo "home=$(ls -A "$HOME" | tr '\\n' ' ')"
echo "args=$*"
"""
DESKTOP = f"""[Desktop Entry]
Type=Application
Name=Jailpy test app
TryExec={APP}
Exec={APP} %U
DBusActivatable=true

[Desktop Action new-window]
Name=New window
Exec=env LANG=C {APP} --new-window
"""


@pytest.fixture
def world(user_tmp, test_user):
    """A temporary home, an app outside it, and a profile for the app."""
    home = user_tmp / "home"
    apps = user_tmp / "apps"
    share = user_tmp / "share"
    as_user_file(apps / APP, APP_SCRIPT, test_user, 0o755)
    as_user_file(share / "applications" / f"{APP}.desktop", DESKTOP, test_user)
    as_user_file(home / "secret.txt", "not for the app\n", test_user)
    as_user_file(home / ".config" / "jailpy" / "profiles" / f"{APP}.toml",
                 f'extends = ["default"]\n[filesystem]\nmounts = [{{ ro-bind = "{apps}" }}]\n',
                 test_user)
    chown_tree(user_tmp, test_user)
    env = {"HOME": str(home), "XDG_DATA_DIRS": str(share),
           "PATH": f"{home}/.local/bin:{apps}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
    return home, apps, env


class InHome:
    """jailpy and other commands with HOME set to the temporary home (runuser resets it)."""

    def __init__(self, jailpy, home: Path, env: dict[str, str]):
        self.jailpy, self.home, self.env = jailpy, home, env

    def run(self, args: list[str]):
        return self.raw([self.jailpy.binary, *args])

    def raw(self, argv: list[str]):
        return self.jailpy.raw(["env", f"HOME={self.home}", *argv], env=self.env)


def snapshot(root: Path) -> set[str]:
    # Compiled seccomp filters are cached in ~/.cache/jailpy by any run: not wrap's.
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if str(p.relative_to(root)) not in (".cache", ".cache/jailpy")
            and not str(p.relative_to(root)).startswith(".cache/jailpy/")}


def parse(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_wrap_runs_the_app_sandboxed_and_unwrap_leaves_nothing(jailpy, world):
    home, apps, env = world
    h = InHome(jailpy, home, env)
    before = snapshot(home)
    host_ns = os.readlink("/proc/self/ns/pid")

    wrapped = h.run(["wrap", APP])
    assert wrapped.returncode == 0, wrapped.stderr
    wrapper = home / ".local" / "bin" / APP
    desktop = home / ".local" / "share" / "applications" / f"{APP}.desktop"
    assert wrapper.is_file() and os.access(wrapper, os.X_OK)

    # Typing the app's name now finds the wrapper first.
    inside = parse(h.raw(["sh", "-c", f"{APP} a b"]).stdout)
    assert inside["pid"] == "2"  # pid 1 is the sandbox's init
    assert inside["pidns"] != host_ns
    assert inside["home"].split() == []  # secret.txt and the rest of home are hidden
    assert inside["args"] == "a b"
    plain = parse(h.raw([str(apps / APP)]).stdout)  # counterpart, unwrapped
    assert plain["pidns"] == host_ns and "secret.txt" in plain["home"]

    # The desktop copy starts the wrapper, for the main entry and for its action.
    text = desktop.read_text()
    execs = [line[5:] for line in text.splitlines() if line.startswith("Exec=")]
    assert execs == [f"{wrapper} %U", f"env LANG=C {wrapper} --new-window"]
    assert f"TryExec={wrapper}" in text and "DBusActivatable=false" in text
    argv = [a for a in shlex.split(execs[0]) if a != "%U"]
    via_menu = parse(h.raw(argv).stdout)
    assert via_menu["pid"] == "2" and via_menu["pidns"] != host_ns

    listed = h.run(["wrap", "--list"])
    assert listed.stdout.startswith(f"{APP}\t{apps / APP}\tprofile={APP}\twrapper={wrapper}")

    # Wrapping again never makes the wrapper call itself, even with it first in PATH.
    again = h.run(["wrap", APP])
    assert again.returncode == 0, again.stderr
    assert f"-- {apps / APP}" in again.stdout
    assert parse(h.raw(["sh", "-c", APP]).stdout)["pid"] == "2"

    unwrapped = h.run(["unwrap", APP])
    assert unwrapped.returncode == 0, unwrapped.stderr
    assert snapshot(home) == before
    assert h.run(["wrap", "--list"]).stdout == ""


def test_wrap_errors(jailpy, world, test_user):
    home, apps, env = world
    h = InHome(jailpy, home, env)
    missing = h.run(["wrap", "no-such-app-here", "--profile", "default"])
    assert missing.returncode == 127
    assert "no-such-app-here: command not found" in missing.stderr
    no_profile = h.run(["wrap", "sh"])
    assert no_profile.returncode == 125 and "no profile named 'sh'" in no_profile.stderr
    # A file of the user's own is never overwritten.
    as_user_file(home / ".local" / "bin" / APP, "#!/bin/sh\necho mine\n", test_user, 0o755)
    taken = h.run(["wrap", APP])
    assert taken.returncode == 125 and "is not a jailpy wrapper" in taken.stderr
    assert (home / ".local" / "bin" / APP).read_text() == "#!/bin/sh\necho mine\n"
    not_wrapped = h.run(["unwrap", APP])
    assert not_wrapped.returncode == 125 and "is not wrapped" in not_wrapped.stderr
    assert (home / ".local" / "bin" / APP).exists()
