"""`jailpy profile ...`, `--profile` resolution, `--explain`, `jailpy check` and
error reporting, through the real CLI as the unprivileged test user."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from tests.conftest import as_user_file

pytestmark = pytest.mark.integration


def _one_error_line(result, *needles: str) -> str:
    """jailpy's own failure: exit 125, one 'jailpy: ...' line (plus a hint), no traceback."""
    assert result.returncode == 125, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("jailpy: "), result.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def config(jailpy, test_user, user_tmp) -> Path:
    """XDG_CONFIG_HOME for the test user, with an empty profiles directory."""
    root = user_tmp / "config"
    as_user_file(root / "jailpy" / "profiles" / ".keep", "", test_user)
    for path in (root, root / "jailpy", root / "jailpy" / "profiles"):
        shutil.chown(path, test_user.uid, test_user.gid) if hasattr(shutil, "chown") else None
    return root


def test_profile_list_plain(jailpy, config, test_user):
    as_user_file(config / "jailpy/profiles/default.toml",
                 'description = "my default"\nextends = ["default"]\n', test_user)
    as_user_file(config / "jailpy/profiles/broken.toml", "x = [\n", test_user)
    result = jailpy.run(["profile", "list"], env={"XDG_CONFIG_HOME": str(config)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "FILE", "DESCRIPTION"]
    rows = {}
    for line in lines[1:]:
        rows.setdefault(line.split()[0], []).append(line.split(None, 3))
    assert {"default", "minimal", "strict", "broken"} <= set(rows)
    mine = config / "jailpy/profiles/default.toml"
    assert rows["default"][0] == ["default", "user", str(mine), "my default"]
    assert rows["default"][1][1] == "shipped"
    assert rows["default"][1][3].startswith(f"[shadowed by {mine}] Host system")
    assert rows["broken"][0][3].startswith("(broken: TOML syntax error")
    assert "─" not in result.stdout and "\x1b[" not in result.stdout  # plain when piped


def test_profile_list_rich_on_a_terminal(jailpy):
    """On a tty the same command draws a table (script(1) gives it a pty)."""
    if shutil.which("script") is None:
        pytest.skip("script(1) from util-linux is needed to run jailpy on a pty")
    result = jailpy.raw(["script", "-qec", f"{jailpy.binary} profile list", "/dev/null"],
                        env={"TERM": "xterm", "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "─" in result.stdout and "minimal" in result.stdout, result.stdout


def test_profile_show_is_valid_toml_with_origins(jailpy, test_user):
    plain = jailpy.run(["profile", "show", "minimal"])
    assert plain.returncode == 0, plain.stderr
    data = tomllib.loads(plain.stdout)
    assert {"ro-bind": "/usr"} in data["filesystem"]["mounts"]
    assert "#  " not in plain.stdout.split("\n\n", 1)[1]  # no origin comments by default
    annotated = jailpy.run(["profile", "show", "--origins", "minimal"])
    assert tomllib.loads(annotated.stdout) == data
    assert 'hostname = "jailpy"  # ' in annotated.stdout
    assert "minimal.toml: filesystem.mounts[0]" in annotated.stdout


def test_profile_show_expands_variables_of_the_caller(jailpy, test_user):
    data = tomllib.loads(jailpy.run(["profile", "show", "default"]).stdout)
    assert {"tmpfs": test_user.home, "mode": "0700"} in data["filesystem"]["mounts"]


def test_profile_check_reports_each_file(jailpy, user_tmp, test_user):
    good = as_user_file(user_tmp / "good.toml", 'extends = ["minimal"]\n', test_user)
    syntax = as_user_file(user_tmp / "syntax.toml", '[process]\nhostname = "a\n', test_user)
    typo = as_user_file(user_tmp / "typo.toml", '[proces]\nhostname = "a"\n', test_user)
    result = jailpy.run(["profile", "check", str(good), str(syntax), str(typo)])
    assert result.returncode == 125
    assert result.stdout == f"{good}: ok\n"
    assert f"jailpy: {syntax}:2:" in result.stderr
    assert f"jailpy: {typo}: proces: unknown key 'proces'" in result.stderr
    assert "hint: did you mean 'process'?" in result.stderr
    assert "Traceback" not in result.stderr
    ok = jailpy.run(["profile", "check", "good.toml", "default", "strict"])
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("text, needles", [
    ("[process]\nhostname = 'a'\ncwd = relative\n", [":3:7: TOML syntax error"]),
    ("[filesystem]\nmounts = [{ tmpfs = '${HOMEE}' }]\n",
     ["filesystem.mounts[0].tmpfs: unknown variable ${HOMEE}"]),
    ("[filesystem]\nmounts = [{ tmpfs = 'tmp' }]\n", ["filesystem.mounts[0].tmpfs",
                                                      "path must be absolute"]),
    ("[filesystem]\nmounts = [{ tmpfs = '/t', size = '12Q' }]\n", ["bad size '12Q'"]),
    ("extends = ['./bad.toml']\n", ["cycle", "bad.toml -> "]),
])
def test_bad_profiles_fail_with_one_line(jailpy, user_tmp, test_user, text, needles):
    as_user_file(user_tmp / "bad.toml", text, test_user)
    result = jailpy.run(["run", "--profile", "./bad.toml", "--", "true"])
    line = _one_error_line(result, *needles)
    assert str(user_tmp / "bad.toml") in line or "./bad.toml" in line


def test_cli_override_conflict_names_the_option(jailpy):
    result = jailpy.run(["run", "--net", "none", "--share-net", "--", "true"])
    _one_error_line(result, "--net: mode 'none'", "(from --share-net)")


def test_share_net_alone_means_the_hosts_network(jailpy):
    result = jailpy.sandbox("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
                            "--share-net")
    assert result.returncode == 0, result.stderr
    with open("/proc/net/dev") as f:
        host = {line.split(":")[0].strip() for line in f.readlines()[2:]}
    assert set(result.stdout.split()) == host


def test_user_profile_extending_the_shipped_one_of_the_same_name(jailpy, config, test_user):
    as_user_file(config / "jailpy/profiles/default.toml",
                 'extends = ["default"]\n[process]\nhostname = "mine"\n', test_user)
    result = jailpy.sandbox("hostname; test -d /usr/bin", env={"XDG_CONFIG_HOME": str(config)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "mine\n"
    shown = jailpy.run(["profile", "show", "--origins", "default"],
                       env={"XDG_CONFIG_HOME": str(config)})
    assert f'hostname = "mine"  # {config}/jailpy/profiles/default.toml' in shown.stdout


def test_explain_prints_the_plan_and_runs_nothing(jailpy, user_tmp):
    marker = user_tmp / "ran"
    result = jailpy.run(["run", "--explain", "--bind", str(user_tmp), str(user_tmp),
                         "--hostname", "box", "--", "touch", str(marker)])
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    out = result.stdout
    for heading in ("[namespaces]", "[identity]", "[filesystem]", "[environment]",
                    "[process]", "[cannot apply on this machine]"):
        assert heading in out, heading
    assert f"bind       {user_tmp} -> {user_tmp}    [--bind {user_tmp} {user_tmp}]" in out
    assert "hostname    box" in out
    assert "\x1b[" not in out


def test_explain_on_a_terminal_highlights(jailpy):
    if shutil.which("script") is None:
        pytest.skip("script(1) from util-linux is needed to run jailpy on a pty")
    result = jailpy.raw(["script", "-qec", f"{jailpy.binary} run --explain --share-pid -- true",
                         "/dev/null"], env={"TERM": "xterm", "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout
    assert "\x1b[" in result.stdout and "SHARED with the host" in result.stdout


def test_check_lists_machine_support(jailpy):
    result = jailpy.run(["check"])
    assert result.returncode == 0, result.stderr
    assert "user namespaces" in result.stdout
    assert all(line.split()[0] in ("ok", "MISSING", "not", "fix:") for line in
               result.stdout.splitlines() if line.strip()), result.stdout


def test_shell_completion_of_profile_names(jailpy):
    env = {"_JAILPY_COMPLETE": "bash_complete", "COMP_WORDS": "jailpy run --profile mi",
           "COMP_CWORD": "3"}
    result = jailpy.run([], env=env)
    assert result.returncode == 0, result.stderr
    assert "plain,minimal" in result.stdout.splitlines(), result.stdout
    env = {"_JAILPY_COMPLETE": "bash_complete", "COMP_WORDS": "jailpy profile sh",
           "COMP_CWORD": "2"}
    assert "plain,show" in jailpy.run([], env=env).stdout.splitlines()
    script = jailpy.run([], env={"_JAILPY_COMPLETE": "bash_source"})
    assert "complete -o nosort -F" in script.stdout
