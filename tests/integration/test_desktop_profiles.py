"""The shipped desktop app profiles: they resolve, explain, run, and hide home.

`--explain` needs no app and no display; a command missing inside ends with
a clear 127. The apps themselves run in test_desktop_apps.py.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, as_user_file, chown_tree, without_cwd_note
from desktop_servers import Xvfb

pytestmark = pytest.mark.integration

APPS = {"firefox": "firefox", "chromium": "chromium", "evince": "evince", "mpv": "mpv",
        "libreoffice": "libreoffice"}
SHIPPED = ["gui", *APPS]


@pytest.fixture
def xvfb(test_user, user_tmp):
    server = Xvfb(test_user, user_tmp, "x")
    yield server
    server.stop()


@pytest.fixture
def home(user_tmp, test_user) -> Path:
    path = user_tmp / "home"
    as_user_file(path / "secret.txt", "private\n", test_user)
    chown_tree(path, test_user)
    return path


def in_home(jailpy, home: Path, args: list[str], env: dict[str, str] | None = None):
    """jailpy ARGS with HOME set to `home` (runuser resets HOME to the user's own)."""
    return jailpy.raw(["env", f"HOME={home}", jailpy.binary, *args], env=env)


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_resolves_and_explains_without_the_app(jailpy, home, name):
    result = in_home(jailpy, home, ["run", "--profile", name, "--explain", "--", name])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"profile: {name}" in out and "\n[desktop]\n" in out
    assert f"tmpfs      {home} (mode=0700)" in out  # everything else of home is hidden
    assert "tmpfs      /run/user/" in out  # private runtime dir


@pytest.mark.parametrize("name", APPS)
def test_app_profile_extends_gui_and_keeps_its_own_dirs(name):
    doc = tomllib.loads((REPO / "profiles" / f"{name}.toml").read_text())
    assert doc["extends"] == ["gui"]
    assert doc["desktop"]["app_dirs"], "each app keeps its own config dir writable"


@pytest.mark.parametrize("name", APPS)
def test_missing_command_is_127(jailpy, home, xvfb, name):
    result = in_home(jailpy, home, ["run", "--profile", name, "--", "jailpy-no-such-app"],
                     env=xvfb.env())
    assert result.returncode == 127, result.stderr
    assert without_cwd_note(result.stderr).strip() == "jailpy: jailpy-no-such-app: command not found"


def test_explain_credits_each_app_dir_to_its_own_file(jailpy, home):
    """A user profile's app_dirs are its own, each with its own index (not all
    `[0]` of the shipped file)."""
    as_user_file(home / ".config" / "jailpy" / "profiles" / "mychrome.toml",
                 'extends = ["chromium"]\n[desktop]\napp_dirs = ["${HOME}/.config/extra"]\n',
                 jailpy.user)
    chown_tree(home, jailpy.user)
    result = in_home(jailpy, home, ["run", "--profile", "mychrome", "--explain", "--", "true"])
    assert result.returncode == 0, result.stderr
    binds = {line.split()[1]: line.split("    [", 1)[1][:-1]
             for line in result.stdout.splitlines() if line.strip().startswith("bind ")}
    assert binds[f"{home}/.config/chromium"] == "(shipped) chromium.toml: desktop.app_dirs[0]"
    assert binds[f"{home}/.cache/chromium"] == "(shipped) chromium.toml: desktop.app_dirs[1]"
    assert binds[f"{home}/.config/extra"] == \
        "~/.config/jailpy/profiles/mychrome.toml: desktop.app_dirs[0]"


def test_desktop_profiles_keep_the_hosts_hostname_and_wait_for_all(jailpy, home, xvfb):
    result = in_home(jailpy, home, ["run", "--profile", "evince", "--", "hostname"],
                     env=xvfb.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == os.uname().nodename
    explained = in_home(jailpy, home, ["run", "--profile", "evince", "--explain", "--", "true"])
    assert "runs until  the last process exits" in explained.stdout


def test_app_dirs_writable_rest_of_home_hidden(jailpy, home, xvfb):
    script = ("ls -A $HOME; touch $HOME/.mozilla/written; touch $HOME/.bashrc; xdpyinfo >/dev/null; "
              "echo netdevs=$(tail -n +3 /proc/net/dev | wc -l)")
    result = in_home(jailpy, home, ["run", "--profile", "firefox", "--", "sh", "-c", script],
                     env=xvfb.env())
    listed = result.stdout.split()
    assert "secret.txt" not in listed and ".mozilla" in listed and "Downloads" in listed
    assert (home / ".mozilla" / "written").exists()  # the app's own dir persists
    assert not (home / ".bashrc").exists()  # the rest went to a tmpfs
    assert result.returncode == 0, result.stderr  # and the display works
    assert "netdevs=2" in listed  # its own network namespace: lo and slirp4netns' tap0


def test_profile_without_display_names_the_profile_key(jailpy, home):
    result = in_home(jailpy, home, ["run", "--profile", "evince", "--", "evince"])
    assert result.returncode == 125
    first = result.stderr.splitlines()[0]
    assert first.endswith("gui.toml: desktop.x11: x11 is on but DISPLAY is not set")


def test_check_reports_desktop_pieces(jailpy):
    result = jailpy.run(["check"])
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if " desktop " in line]
    assert any("xdg-dbus-proxy" in row and row.startswith("ok") for row in rows)
    assert any(row.startswith("not needed") and "X11 display" in row for row in rows)
    asked = [line for line in jailpy.run(["check", "--all"]).stdout.splitlines()
             if " desktop " in line]
    assert any(row.startswith("MISSING") and "X11 display" in row for row in asked)
