"""The firejail importer on small made-up profiles: the language (includes,
ignore, conditionals, macros), the mapping, origins and notes. The corpus and
the comparisons with firejail itself are in tests/integration/test_firejail.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from jailpy.errors import ConfigError
from jailpy.plan.seccomp import resolve
from jailpy.profile import firejail


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def converted(tmp_path: Path, text: str, **files: str) -> firejail.Conversion:
    for name, body in files.items():
        write(tmp_path, name.replace("_", "-").replace("-inc", ".inc"), body)
    return firejail.convert(str(write(tmp_path, "app.profile", text)), str(tmp_path / "home"))


def test_includes_ignore_conditionals_and_local_files(tmp_path):
    conversion = converted(tmp_path, "include app.local\n"
                                     "ignore net none\n"
                                     "include common.inc\n"
                                     "?BROWSER_DISABLE_U2F: nou2f\n"
                                     "?ALLOW_TRAY: dbus-user.talk org.kde.StatusNotifierWatcher\n"
                                     "net none\n", common_inc="nosound\n# comment\nno3d\n")
    desktop = conversion.data["desktop"]
    assert desktop["pulseaudio"] is False and desktop["gpu"] is False
    assert conversion.data["network"]["mode"] == "host"       # `net none` was ignored
    assert "dbus_talk" not in desktop                          # ALLOW_TRAY is off
    assert conversion.origins["desktop.gpu"] == f"{tmp_path}/common.inc:3"


def test_missing_include_is_an_error_naming_the_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        converted(tmp_path, "nosound\ninclude nowhere.inc\n")
    assert err.value.origin == f"{tmp_path}/app.profile:2"
    assert "nowhere.inc" in err.value.message


def test_include_loop_is_an_error(tmp_path):
    write(tmp_path, "a.inc", "include b.inc\n")
    write(tmp_path, "b.inc", "include a.inc\n")
    with pytest.raises(ConfigError, match="nested too deep"):
        converted(tmp_path, "include a.inc\n")


def test_home_whitelist_becomes_binds_of_exactly_those_paths(tmp_path):
    conversion = converted(tmp_path, "noblacklist ${HOME}/.config/app\n"
                                     "blacklist ${HOME}/.ssh\n"
                                     "mkdir ${HOME}/.config/app\n"
                                     "whitelist ${HOME}/.config/app\n"
                                     "whitelist ${HOME}/.app.conf\n"
                                     "read-only ${HOME}/.app.conf\n"
                                     "whitelist ${DOWNLOADS}\n"
                                     "whitelist ${HOME}/.ssh\n")
    data = conversion.data
    assert data["desktop"]["app_dirs"] == ["${HOME}/.config/app"]
    assert data["filesystem"]["mounts"] == [{"ro-bind-try": "${HOME}/.app.conf"}]
    assert data["desktop"]["user_dirs"] == {"downloads": "rw"}
    # whitelisted but still blacklisted: firejail hides it, so does the conversion
    assert any(n.text == "whitelist ${HOME}/.ssh" for n in conversion.notes)


def test_blacklist_only_profile_binds_what_it_unhides(tmp_path):
    conversion = converted(tmp_path, "noblacklist ${HOME}/.config/app\n"
                                     "noblacklist ${DOCUMENTS}\n"
                                     "blacklist ${HOME}/.config/app\n"
                                     "blacklist ${HOME}/.gnupg\n")
    assert conversion.data["filesystem"]["mounts"] == [{"bind-try": "${HOME}/.config/app"}]
    assert conversion.data["desktop"]["user_dirs"] == {"documents": "rw"}


def test_private_bin_and_private_etc_are_resolved_now(tmp_path):
    conversion = converted(tmp_path, "private-bin sh,nonexistent-tool\n"
                                     "private-etc fonts,../shadow\n")
    mounts = conversion.data["filesystem"]["mounts"]
    assert mounts[:3] == [{"tmpfs": "/usr/bin"}, {"ro-bind-try": "/usr/bin/sh"},
                          {"ro-bind-try": "/usr/bin/nonexistent-tool"}]
    assert {"ro-bind-try": "/etc/fonts"} in mounts and {"tmpfs": "/etc"} in mounts
    assert not any("shadow" in str(m) for m in mounts)
    assert any("../shadow" in n.reason for n in conversion.notes)


def test_security_directives_map_to_seccomp_groups(tmp_path):
    conversion = converted(tmp_path, "seccomp\nseccomp.drop kcmp,@clock\n"
                                     "memory-deny-write-execute\nprotocol unix,inet,inet6\n"
                                     "caps.keep net_bind_service\nnet none\n")
    data = conversion.data
    assert data["seccomp"]["deny"] == ["kcmp", "@clock", "@memory-deny-write-execute",
                                       "@socket-other", "@socket-netlink", "@socket-packet",
                                       "@socket-bluetooth"]
    assert data["capabilities"]["keep"] == ["CAP_NET_BIND_SERVICE"]
    assert data["network"] == {"mode": "none"}


def test_unsupported_directives_are_noted_with_their_line(tmp_path):
    conversion = converted(tmp_path, "apparmor\nnetfilter\ntracelog\ncaps.drop all\n")
    assert [(n.keyword, n.origin) for n in conversion.notes] == [
        ("apparmor", f"{tmp_path}/app.profile:1"), ("netfilter", f"{tmp_path}/app.profile:2"),
        ("tracelog", f"{tmp_path}/app.profile:3")]
    text = firejail.render(conversion)
    assert f"#   {tmp_path}/app.profile:2: netfilter" in text
    assert firejail.stderr_lines(conversion)[0].startswith(
        f"note: {tmp_path}/app.profile:1: apparmor not converted: ")


def test_rendered_profile_parses_with_origins_as_comments(tmp_path):
    conversion = converted(tmp_path, "dbus-user filter\ndbus-user.own org.example.App\n"
                                     "dbus-system none\nhostname box\nenv FOO=bar\n")
    text = firejail.render(conversion)
    assert tomllib.loads(text) == conversion.data
    assert f'"org.example.App",  # {tmp_path}/app.profile:2' in text
    assert conversion.data["extends"] == ["gui"]


def test_socket_and_write_execute_groups_are_argument_filters():
    class Spec:
        enabled, action, bad_arch_action, actions = True, "errno:EPERM", "kill-process", ()
        default_action, allow, allow_userns, block_tty_injection = "allow", (), False, False
        allow_nesting = False
        deny = ("@socket-other", "@socket-packet", "@memory-deny-write-execute")

        @staticmethod
        def origin_of(key):
            return key

    rules = resolve(Spec())
    sockets = {m.value for r in rules.guard if r.syscall == "socket" for m in r.match}
    assert 17 in sockets and 1 not in sockets and 2 not in sockets and 10 not in sockets
    assert len(sockets) == 46 - 6 + 1
    mmap = [r for r in rules.guard if r.syscall == "mmap"]
    assert [(m.arg, m.mask, m.value) for r in mmap for m in r.match] == [(2, 6, 6)]
    assert not any(r.syscall in ("socket", "mmap") for r in rules.main)
