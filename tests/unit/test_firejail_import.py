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
    assert {"tmpfs": "/usr/bin"} in mounts and {"tmpfs": "/usr/sbin"} in mounts
    at = mounts.index({"tmpfs": "/usr/bin"})
    assert mounts[at + 1:at + 3] == [{"ro-bind-try": "/usr/bin/sh"},
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


def test_system_blacklists_become_hides_once_each(tmp_path):
    conversion = converted(tmp_path, "blacklist ${PATH}/su\nblacklist /etc/cron*\n"
                                     "blacklist /etc/cron.d/x\nblacklist /etc/ssh/*\n"
                                     "blacklist /etc/ssh\nblacklist /opt/.x\n"
                                     "blacklist /opt/*\nblacklist /sbin\n"
                                     "blacklist /etc/shadow\nnoblacklist /etc/shadow\n"
                                     "blacklist ${HOME}/.ssh\n")
    hides = [m["hide"] for m in conversion.data["filesystem"]["mounts"] if "hide" in m]
    # ${PATH}'s /bin and /sbin are the `default` root's links into /usr: hidden once
    # there; what another hide covers is dropped (/usr/sbin/su, /etc/cron.d/x,
    # /etc/ssh/*), but not a dotfile, which a `*` does not match
    assert hides == ["/usr/local/bin/su", "/usr/bin/su", "/usr/games/su",
                     "/usr/local/games/su", "/usr/local/sbin/su", "/etc/cron*", "/etc/ssh",
                     "/opt/.x", "/opt/*", "/usr/sbin"]
    assert not conversion.notes


def test_private_bin_and_private_lib_bind_the_programs_libraries(tmp_path):
    conversion = converted(tmp_path, "private-bin ls\nprivate-lib gconv,nonexistent-lib,"
                                     "../../../etc\nblacklist /usr/lib/python3*\n")
    mounts = conversion.data["filesystem"]["mounts"]
    assert {"tmpfs": "/usr/lib"} in mounts
    bound = {m.get("dest", m.get("ro-bind-try")) for m in mounts if "ro-bind-try" in m}
    assert {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/gconv", "/usr/lib/locale"} <= bound
    assert not any(p.startswith("/usr/lib/x86_64-linux-gnu/gconv/") for p in bound)
    assert not any("hide" in m for m in mounts)   # private-lib builds /usr/lib itself
    assert not any("etc" in p for p in bound)   # no way out of the library directories
    assert [n.reason for n in conversion.notes] == [
        "private-lib entry 'nonexistent-lib' is not on this machine",
        "private-lib entry '../../../etc' names a parent directory; skipped"]
