"""Desktop configuration, planning and file formats, without a kernel.

Checks what the planner decides (ops, env, problems) and the pure helpers
(Xauthority entries, .desktop Exec rewriting); the integration tests check
that those decisions work against real servers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jailpy.profile.desktop import to_desktop
from jailpy.plan.desktop import parse_display, plan_desktop
from jailpy.runtime.x11 import FAMILY_LOCAL, FAMILY_WILD, AuthEntry, cookie_for, read_entries, write_entries
from jailpy.errors import ConfigError, SetupError
from jailpy.policy import Caller, Desktop, MountOp
from jailpy.profile.schema import validate_document
from jailpy.cli.wrap import rewrite_desktop_entry

ENV = {"HOME": "/home/u", "PATH": "/usr/bin:/bin"}


def plan(desktop: Desktop, env: dict[str, str] | None = None, prior=()):
    return plan_desktop(desktop, Caller(1000, 1000, env or ENV, "/"), 1000, tuple(prior))


@pytest.mark.parametrize("doc, origin, message", [
    ({"desktop": {"dbus_talk": ["org.ok.Name", "bad name"]}}, "f.toml: desktop.dbus_talk[1]",
     "not a D-Bus well-known name"),
    ({"desktop": {"dbus_own": ["single"]}}, "f.toml: desktop.dbus_own[0]",
     "not a D-Bus well-known name"),
    ({"desktop": {"dbus_call": ["org.a.B"]}}, "f.toml: desktop.dbus_call[0]", "NAME=RULE"),
    ({"desktop": {"dbus_call": ["org.a.B=x y"]}}, "f.toml: desktop.dbus_call[0]",
     "bad D-Bus rule"),
    ({"desktop": {"dbus_system": "open"}}, "f.toml: desktop.dbus_system",
     "unknown system bus mode"),
    ({"desktop": {"user_dirs": {"download": "rw"}}}, "f.toml: desktop.user_dirs.download",
     "unknown user directory"),
    ({"desktop": {"user_dirs": {"music": "write"}}}, "f.toml: desktop.user_dirs.music",
     "expected rw, ro or none"),
    ({"desktop": {"optional": ["fonts"]}}, "f.toml: desktop.optional[0]", "cannot be optional"),
    ({"desktop": {"app_dirs": ["relative"]}}, "f.toml: desktop.app_dirs[0]", "absolute"),
    ({"desktop": {"x11": "yes"}}, "f.toml: desktop.x11", "expected boolean"),
])
def test_bad_values_name_file_and_key(doc, origin, message):
    with pytest.raises(ConfigError) as info:
        validate_document(doc, "f.toml")
    assert info.value.origin == origin and message in info.value.message


def test_unknown_key_suggests():
    with pytest.raises(ConfigError) as info:
        validate_document({"desktop": {"wayladn": True}}, "f.toml")
    assert info.value.hint == "did you mean 'wayland'?"
    with pytest.raises(ConfigError) as info:
        validate_document({"desktop": {"user_dirs": {"downlaods": "rw"}}}, "f.toml")
    assert info.value.hint == "did you mean 'downloads'?"


def test_good_rules_pass():
    validate_document({"desktop": {
        "dbus_talk": ["org.freedesktop.portal.*"],
        "dbus_call": ["org.freedesktop.portal.*=*", "org.a.B=org.a.B.Ping@/org/a",
                      "org.a.B=@/org/a/*", "org.a.B=org.a.*"]}}, "f.toml")


def test_nothing_is_on_by_default():
    assert not Desktop().enabled
    assert not to_desktop({}, {}).enabled


def test_missing_display_is_a_problem_unless_optional():
    desktop = to_desktop({"x11": True}, {"desktop.x11": "/p/gui.toml"})
    result = plan(desktop)
    assert [(p.piece, p.origin) for p in result.problems] == [("x11", "/p/gui.toml: desktop.x11")]
    assert "DISPLAY is not set" in result.problems[0].message
    optional = plan(to_desktop({"x11": True, "optional": ["x11"]}, {}))
    assert optional.problems == () and optional.skipped[0].piece == "x11"
    assert any(n.startswith("SKIPPED       x11") for n in optional.notes)


@pytest.mark.parametrize("display, message", [
    ("remote:10.0", "not a local display"), ("garbage", "not a local display"),
    (":4093", "no X11 socket /tmp/.X11-unix/X4093"),
])
def test_unusable_displays(display, message):
    result = plan(to_desktop({"x11": True}, {}), {**ENV, "DISPLAY": display})
    assert message in result.problems[0].message


def test_runtime_dir_is_private_and_set():
    result = plan(to_desktop({"fonts": True}, {}))
    assert result.mount_ops[0] == MountOp(kind="tmpfs", dest="/run/user/1000", mode=0o700,
                                          origin="desktop")
    assert dict(result.env)["XDG_RUNTIME_DIR"] == "/run/user/1000"
    assert result.session_dir is None and result.proxies == ()


def test_assets_already_visible_are_not_bound_again():
    prior = [MountOp("ro-bind", "/usr", "/usr"), MountOp("tmpfs", "/home/u")]
    dests = [op.dest for op in plan(to_desktop({"fonts": True}, {}), prior=prior).mount_ops]
    assert "/usr/share/fonts" not in dests  # under the read-only /usr already
    assert "/home/u/.fonts" in dests  # hidden by the home tmpfs: bound (optional)
    later_tmpfs = [*prior, MountOp("tmpfs", "/usr/share")]
    dests = [op.dest for op in plan(to_desktop({"fonts": True}, {}),
                                    prior=later_tmpfs).mount_ops]
    assert "/usr/share/fonts" in dests


def test_user_and_app_dirs():
    desktop = to_desktop({"user_dirs": {"downloads": "rw", "music": "ro", "videos": "none"},
                          "app_dirs": ["/home/u/.mozilla"]}, {})
    result = plan(desktop)
    ops = {op.dest: op for op in result.mount_ops}
    assert ops["/home/u/Downloads"].kind == "bind" and not ops["/home/u/Downloads"].optional
    assert ops["/home/u/Music"].kind == "ro-bind" and ops["/home/u/Music"].optional
    assert "/home/u/Videos" not in ops
    assert ops["/home/u/.mozilla"].kind == "bind"
    assert result.create_dirs == ("/home/u/Downloads", "/home/u/.mozilla")


def test_app_dirs_may_not_expose_home():
    with pytest.raises(ConfigError):
        plan(to_desktop({"app_dirs": ["/home"]}, {}))
    with pytest.raises(ConfigError):
        to_desktop({"app_dirs": ["/"]}, {})


def test_dbus_needs_a_bus_and_a_proxy():
    desktop = to_desktop({"dbus": True, "dbus_talk": ["org.a.B"]}, {})
    no_bus = plan(desktop)
    assert "no session bus" in no_bus.problems[0].message
    no_proxy = plan(desktop, {**ENV, "PATH": "/nonexistent",
                              "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"})
    assert "needs xdg-dbus-proxy" in no_proxy.problems[0].message
    gone = plan(desktop, {**ENV, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    if gone.proxy_binary is not None:
        assert gone.problems[0].message.startswith("no session bus at /nonexistent/bus")


def test_proxy_rules_deny_by_default():
    desktop = to_desktop({"dbus": True, "dbus_talk": ["org.a.B"], "dbus_own": ["org.c.*"],
                          "dbus_call": ["org.d.E=org.d.E.Ping@/d"]}, {})
    result = plan(desktop, {**ENV, "DBUS_SESSION_BUS_ADDRESS": "unix:abstract=/tmp/dbus-x"})
    if result.proxy_binary is None:
        pytest.skip("xdg-dbus-proxy is not installed")
    (proxy,) = result.proxies
    assert proxy.upstream == "unix:abstract=/tmp/dbus-x"
    assert proxy.args == ("--filter", "--talk=org.a.B", "--own=org.c.*",
                          "--call=org.d.E=org.d.E.Ping@/d")
    assert dict(result.env)["DBUS_SESSION_BUS_ADDRESS"] == "unix:path=/run/user/1000/bus"


# -- Xauthority ---------------------------------------------------------------------


def test_cookie_is_filtered_and_made_host_independent():
    entries = [AuthEntry(FAMILY_LOCAL, b"myhost", b"0", b"MIT-MAGIC-COOKIE-1", b"A" * 16),
               AuthEntry(FAMILY_LOCAL, b"myhost", b"1", b"MIT-MAGIC-COOKIE-1", b"B" * 16),
               AuthEntry(0, b"\x7f\x00\x00\x01", b"1", b"MIT-MAGIC-COOKIE-1", b"C" * 16)]
    blob = write_entries(entries)
    assert read_entries(blob) == entries
    chosen = cookie_for(read_entries(blob), "1", "myhost")
    assert chosen == AuthEntry(FAMILY_WILD, b"", b"1", b"MIT-MAGIC-COOKIE-1", b"B" * 16)
    assert cookie_for(entries, "7", "myhost") is None
    assert read_entries(blob[:-3]) == entries[:2]  # a truncated tail is ignored


def test_parse_display():
    assert parse_display(":0").name == ":0"
    assert parse_display("unix:3.1").name == ":3.1" and not parse_display("unix:3").tcp
    assert parse_display("localhost:10.0").tcp
    assert parse_display("/tmp/launch-x/org.xquartz:0") is None


# -- desktop entries ------------------------------------------------------------------


def test_exec_lines_are_routed_through_the_wrapper():
    text = ("[Desktop Entry]\nExec=\"/opt/My App/app\" --x %U\nTryExec=/opt/My App/app\n"
            "DBusActivatable=true\n[Desktop Action a]\nExec=env A=1 app --new\n")
    route = {"/opt/My App/app": Path("/h/bin/app"), "app": Path("/h/bin/app")}.get
    out = rewrite_desktop_entry(text, "app", route, Path("/h/bin/app"), Path("app.desktop"))
    assert out.splitlines() == [
        "[Desktop Entry]", "X-Jailpy-Wrapper=/h/bin/app", "Exec=/h/bin/app --x %U",
        "TryExec=/h/bin/app", "DBusActivatable=false", "[Desktop Action a]",
        "Exec=env A=1 /h/bin/app --new"]


def test_foreign_exec_is_refused():
    text = "[Desktop Entry]\nExec=app\n[Desktop Action b]\nExec=other-tool --x\n"
    with pytest.raises(SetupError, match="cannot route"):
        rewrite_desktop_entry(text, "app", {"app": Path("/h/bin/app")}.get, Path("/h/bin/app"),
                              Path("x"))


def test_system_bus_none_hides_a_bound_run():
    prior = [MountOp("ro-bind", "/run", "/run")]
    result = plan(to_desktop({"fonts": True}, {}), prior=prior)
    assert MountOp("tmpfs", "/run/dbus", mode=0o755, origin="desktop.dbus_system") \
        in result.mount_ops
    untouched = plan(to_desktop({"fonts": True}, {}), prior=[MountOp("tmpfs", "/run")])
    assert all(op.dest != "/run/dbus" for op in untouched.mount_ops)
