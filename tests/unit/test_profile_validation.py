"""Profile validation: every bad input is one ConfigError naming file and key."""

from __future__ import annotations

import pytest

from jailpy.errors import EXIT_JAILPY_FAILURE, ConfigError
from jailpy.profile import schema
from profile_env import profiles  # noqa: F401  (fixture)


def _err(profiles, text: str) -> ConfigError:
    path = profiles.write("p", text)
    err = profiles.error(str(path))
    assert err.exit_code == EXIT_JAILPY_FAILURE
    assert str(path) in str(err), err
    return err


@pytest.mark.parametrize("text, origin, hint", [
    ("[procss]\nhostname = 'x'\n", "procss", "did you mean 'process'?"),
    ("[process]\nhostnam = 'x'\n", "process.hostnam", "did you mean 'hostname'?"),
    ("hostname = 'x'\n", "hostname", "'hostname' belongs in the [process] section"),
    ("[environment]\nhostname = 'x'\n", "environment.hostname",
     "'hostname' belongs in the [process] section"),
    ("[filesystem]\nmounts = [{ro-bnd = '/usr'}]\n", "filesystem.mounts[0].ro-bnd",
     "did you mean 'ro-bind'?"),
    ("[filesystem]\nmounts = [{tmpfs = '/tmp', sise = '1M'}]\n", "filesystem.mounts[0].sise",
     "did you mean 'size'?"),
    ("[[filesystem.mounts]]\nbind = '/a'\nreadonly = true\n", "filesystem.mounts[0].readonly",
     None),
])
def test_unknown_keys_name_the_key_and_suggest(profiles, text, origin, hint):
    err = _err(profiles, text)
    assert err.message.startswith("unknown key"), err
    assert err.origin.endswith(f": {origin}"), err.origin
    assert err.hint == hint


@pytest.mark.parametrize("text, origin, expected", [
    ("[process]\nhostname = 1\n", "process.hostname", "expected hostname, got integer"),
    ("[namespaces]\nnet = 'no'\n", "namespaces.net", "expected boolean, got string"),
    ("[identity]\nuid = -1\n", "identity.uid", "expected integer id"),
    ("[identity]\nuid = 4294967295\n", "identity.uid", "expected integer id"),
    ("[environment]\nkeep = 'PATH'\n", "environment.keep", "expected array of variable names"),
    ("[environment]\nset = { A = 1 }\n", "environment.set", "expected table of strings"),
    ("extends = 'default'\n", "extends", "expected array of strings, got string"),
    ("process = 1\n", "process", "expected a table ([process]), got integer"),
    ("[filesystem]\nmounts = ['/usr']\n", "filesystem.mounts", "expected array of mount tables"),
    ("[filesystem]\nmounts = [{bind = 1}]\n", "filesystem.mounts[0].bind", "expected string"),
    ("[filesystem]\nmounts = [{tmpfs = '/t', size = true}]\n", "filesystem.mounts[0].size",
     "expected size"),
    ("[filesystem]\nmounts = [{bind = '/a', optional = 'yes'}]\n",
     "filesystem.mounts[0].optional", "expected boolean"),
])
def test_wrong_types(profiles, text, origin, expected):
    err = _err(profiles, text)
    assert err.origin.endswith(f": {origin}"), err.origin
    assert expected in err.message, err.message


@pytest.mark.parametrize("text, origin", [
    ("[process]\ncwd = 'work'\n", "process.cwd"),
    ("[filesystem]\nremove = ['tmp']\n", "filesystem.remove[0]"),
    ("[filesystem]\nmounts = [{bind = 'src', dest = '/dst'}]\n", "filesystem.mounts[0].bind"),
    ("[filesystem]\nmounts = [{ro-bind-try = '/src', dest = 'dst'}]\n",
     "filesystem.mounts[0].dest"),
    ("[filesystem]\nmounts = [{tmpfs = 'tmp'}]\n", "filesystem.mounts[0].tmpfs"),
    ("[filesystem]\nmounts = [{symlink = '/usr/bin', dest = 'bin'}]\n",
     "filesystem.mounts[0].dest"),
    # a variable that expands to a relative path is caught after expansion
    ("[filesystem]\nmounts = [{tmpfs = '${USER}/x'}]\n", "filesystem.mounts[0].tmpfs"),
])
def test_relative_paths_are_refused(profiles, text, origin):
    err = _err(profiles, text)
    assert err.origin.endswith(f": {origin}"), err.origin
    assert "must be absolute" in err.message


def test_symlink_target_may_be_relative_and_variables_make_paths_absolute(profiles):
    path = profiles.write("p", "[filesystem]\nmounts = [{symlink = 'usr/bin', dest = '/bin'},"
                          " {tmpfs = '${HOME}/x'}]\n[process]\ncwd = '${CWD}'\n")
    policy = profiles.policy(str(path))
    assert [op.dest for op in policy.filesystem.ops] == ["/bin", f"{profiles.env['HOME']}/x"]
    assert policy.process.cwd == "/work"


@pytest.mark.parametrize("value", ["'64Q'", "'-1M'", "'M'", "'1.2.3G'", "'9999999999T'",
                                   "-5", "''"])
def test_bad_sizes(profiles, value):
    err = _err(profiles, f"[filesystem]\nmounts = [{{tmpfs = '/t', size = {value}}}]\n")
    assert err.origin.endswith(": filesystem.mounts[0].size"), err.origin
    assert "size" in err.message


@pytest.mark.parametrize("value", ["'0755x'", "'8'", "'99999'", "70000", "'rwx'"])
def test_bad_modes(profiles, value):
    err = _err(profiles, f"[filesystem]\nmounts = [{{dir = '/d', mode = {value}}}]\n")
    assert err.origin.endswith(": filesystem.mounts[0].mode"), err.origin


@pytest.mark.parametrize("text, seconds", [("30", 30.0), ("1.5", 1.5), ('"10m"', 600.0),
                                           ('"250ms"', 0.25), ('"2h"', 7200.0), ('"1d"', 86400.0)])
def test_durations(text, seconds):
    from jailpy.profile.values import parse_duration

    import tomllib

    assert parse_duration(tomllib.loads(f"v = {text}")["v"], "x") == seconds


@pytest.mark.parametrize("value", ["10x", "m", "-1s", "0", "inf", "nan", "1e999", "", "400d"])
def test_bad_durations(value):
    from jailpy.profile.values import parse_duration

    with pytest.raises(ConfigError) as info:
        parse_duration(value, "limits.timeout")
    assert info.value.origin == "limits.timeout"
    with pytest.raises(ConfigError):
        parse_duration(float("inf"), "x")


@pytest.mark.parametrize("text, size", [("'64M'", 64 << 20), ("'512k'", 512 << 10),
                                        ("'1.5G'", 3 << 29), ("'2GiB'", 2 << 30), ("4096", 4096),
                                        ("'10 MB'", 10 << 20)])
def test_sizes(profiles, text, size):
    path = profiles.write("p", f"[filesystem]\nmounts = [{{tmpfs = '/t', size = {text}}}]\n")
    assert profiles.policy(str(path)).filesystem.ops[0].size == size


def test_toml_syntax_error_has_line_and_column(profiles):
    path = profiles.write("p", "[process]\nhostname = 'a'\ncwd = /x\n")
    err = profiles.error(str(path))
    assert err.origin == f"{path}:3:7", err.origin
    assert err.message.startswith("TOML syntax error: "), err.message
    assert "line" not in err.message


def test_duplicate_key_and_bad_encoding_and_deep_nesting(profiles):
    err = profiles.error(str(profiles.write("dup", "a = 1\na = 2\n")))
    assert "TOML syntax error" in err.message
    path = profiles.user_dir / "latin1.toml"
    path.write_bytes(b"description = 'caf\xe9'\n")
    assert "not UTF-8" in profiles.error(str(path)).message
    err = profiles.error(str(profiles.write("deep", "a = " + "[" * 5000)))
    assert "nested too deeply" in err.message


def test_unknown_variable_is_an_error_not_empty(profiles):
    path = profiles.write("p", "[filesystem]\nmounts = [{tmpfs = '${HOMEE}/x'}]\n")
    err = profiles.error(str(path))
    assert err.message == "unknown variable ${HOMEE}"
    assert err.origin == f"{path}: filesystem.mounts[0].tmpfs"
    assert "HOME" in err.hint


@pytest.mark.parametrize("text", ["'$HOME'", "'${HOME'", "'x$'"])
def test_bad_dollar_syntax(profiles, text):
    err = profiles.error(str(profiles.write("p", f"[process]\nargv0 = {text}\n")))
    assert err.origin.endswith(": process.argv0")


def test_dollar_escape_and_literal_keys(profiles):
    path = profiles.write("p", "description = 'costs ${HOME}'\n[process]\nargv0 = 'a$$b'\n"
                          "[filesystem]\nmounts = [{file = '/f', content = '${NOT_EXPANDED}'}]\n")
    policy = profiles.policy(str(path))
    assert policy.process.argv0 == "a$b"
    assert policy.filesystem.ops[0].content == "${NOT_EXPANDED}"


def test_all_documented_variables_expand(profiles):
    from jailpy.policy import Caller
    from jailpy.profile.expand import standard_variables

    names = ["HOME", "USER", "UID", "GID", "CWD", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME",
             "XDG_DATA_HOME", "XDG_CACHE_HOME", "TMPDIR", "PROFILE_DIR", "DESKTOP", "DOWNLOADS",
             "DOCUMENTS", "MUSIC", "PICTURES", "VIDEOS", "TEMPLATES", "PUBLICSHARE"]
    text = "[environment]\nset = { " + ", ".join(f"{n} = '${{{n}}}'" for n in names) + " }\n"
    path = profiles.write("p", text)
    env = dict(profiles.policy(str(path)).environment.set)
    assert env["HOME"] == profiles.env["HOME"]
    assert env["UID"] == "1000" and env["USER"] == "alice" and env["CWD"] == "/work"
    assert env["PROFILE_DIR"] == str(profiles.user_dir)
    assert env["DOWNLOADS"] == profiles.env["HOME"] + "/Downloads"
    assert env["XDG_CONFIG_HOME"] == profiles.env["XDG_CONFIG_HOME"]
    caller = Caller(1000, 1000, profiles.env, "/")
    assert set(names) - {"PROFILE_DIR"} <= set(standard_variables(caller))


def test_user_dirs_file_is_honoured(profiles):
    (profiles.root / "config" / "user-dirs.dirs").write_text(
        '# comment\nXDG_DOWNLOAD_DIR="$HOME/Incoming"\n')
    path = profiles.write("p", "[environment]\nset = { D = '${DOWNLOADS}' }\n")
    assert dict(profiles.policy(str(path)).environment.set)["D"] == \
        profiles.env["HOME"] + "/Incoming"


def test_contradiction_network_mode_without_netns_names_both_origins(profiles):
    base = profiles.write("base", "[network]\nmode = 'none'\n")
    path = profiles.write("p", "extends = ['base']\n[namespaces]\nnet = false\n")
    err = profiles.error(str(path))
    assert err.origin == f"{base}: network.mode"
    assert f"namespaces.net = false (from {path}: namespaces.net)" in err.message
    assert "host" in err.hint
    # sharing the host network is what mode "host" means: no contradiction
    profiles.write("host", "[network]\nmode = 'host'\n[namespaces]\nnet = false\n")
    assert not profiles.policy("host").namespaces.net


def test_contradiction_mounts_without_mount_namespace(profiles):
    path = profiles.write("p", "[namespaces]\nmount = false\n"
                          "[filesystem]\nmounts = [{tmpfs = '/tmp'}]\n")
    err = profiles.error(str(path))
    assert err.origin == f"{path}: filesystem.mounts[0]"
    assert f"(from {path}: namespaces.mount)" in err.message


def test_unknown_network_mode_suggests(profiles):
    err = profiles.error(str(profiles.write("p", "[network]\nmode = 'hots'\n")))
    assert err.origin.endswith(": network.mode") and err.hint == "did you mean 'host'?"


def test_mount_table_shape_errors(profiles):
    cases = {
        "[filesystem]\nmounts = [{dest = '/x'}]\n": "exactly one op key",
        "[filesystem]\nmounts = [{bind = '/a', tmpfs = '/b'}]\n": "exactly one op key",
        "[filesystem]\nmounts = [{tmpfs = '/a', dest = '/b'}]\n": "'dest' does not apply",
        "[filesystem]\nmounts = [{symlink = 'x'}]\n": "needs 'dest'",
        "[filesystem]\nmounts = [{chmod = '/x'}]\n": "needs 'mode'",
    }
    for text, expected in cases.items():
        err = profiles.error(str(profiles.write("p", text)))
        assert expected in err.message, (text, err)
        assert ": filesystem.mounts[0]" in err.origin


def test_reset_keys_are_validated(profiles):
    err = profiles.error(str(profiles.write("p", "reset = ['environment.kep']\n")))
    assert err.origin.endswith(": reset[0]") and err.hint == "did you mean 'environment.keep'?"


def test_environment_names_and_hostname_values(profiles):
    err = profiles.error(str(profiles.write("p", "[environment]\nset = { 'A=B' = 'x' }\n")))
    assert err.origin.endswith(": environment.set.\"A=B\"")
    err = profiles.error(str(profiles.write("p", f"[process]\nhostname = '{'h' * 65}'\n")))
    assert err.origin.endswith(": process.hostname")
    err = profiles.error(str(profiles.write("p", '[process]\nargv0 = "a\\u0000b"\n')))
    assert "NUL" in err.message


def test_cli_layer_is_validated_like_a_file():
    from jailpy.profile.schema import validate_document

    with pytest.raises(ConfigError) as info:
        validate_document({"process": {"cwd": "relative"}}, "command line")
    assert info.value.origin == "command line: process.cwd"


def test_relative_xdg_variables_are_ignored_and_bad_user_dirs_file_is_harmless(profiles):
    from jailpy.policy import Caller
    from jailpy.profile.expand import standard_variables

    env = {"HOME": "/home/a/", "USER": "a", "XDG_CONFIG_HOME": "rel", "XDG_CACHE_HOME": "x",
           "TMPDIR": "tmp"}
    variables = standard_variables(Caller(1000, 1000, env, "/"))
    assert variables["HOME"] == "/home/a"
    assert variables["XDG_CONFIG_HOME"] == "/home/a/.config"
    assert variables["XDG_CACHE_HOME"] == "/home/a/.cache" and variables["TMPDIR"] == "/tmp"
    (profiles.root / "config").mkdir(exist_ok=True)
    (profiles.root / "config" / "user-dirs.dirs").write_bytes(
        b'XDG_MUSIC_DIR="rel/Music"\nXDG_VIDEOS_DIR="\xff"\n')
    variables = standard_variables(Caller(1000, 1000, profiles.env, "/"))
    assert variables["MUSIC"] == profiles.env["HOME"] + "/Music"
