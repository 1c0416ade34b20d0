"""Overlay ops and `--changes` as data: profile keys, options, the plan (no kernel)."""

from __future__ import annotations

import pwd

import pytest

from profile_env import profiles  # noqa: F401  (fixture)

from jailpy.cli.layer import command_line_layer
from jailpy.cli.options import parse_run
from jailpy.errors import ConfigError
from jailpy.plan import Caller, build_plan
from jailpy.plan.changes import state_dirs
from jailpy.plan.landlock import derive
from jailpy.policy import Changes, Filesystem, MountOp, Policy, READ, WRITE, EXECUTE


def _caller(cwd: str = "/srv/project", **env: str) -> Caller:
    return Caller(uid=1000, gid=1000, env={"HOME": "/home/u", **env}, cwd=cwd,
                  cwd_identity=(1, 2))


def _ops(args: list[str]) -> list[dict]:
    values, order, _ = parse_run([*args, "--", "true"])
    return command_line_layer(order, values).doc["filesystem"]["mounts"]


def test_lower_options_fill_the_next_overlay_in_order():
    assert _ops(["--lower", "/b", "--lower", "/c", "--ro-overlay", "/a", "/w"]) == [
        {"ro-overlay": "/a", "dest": "/w", "lower": ["/b", "/c"]}]
    assert _ops(["--overlay", "/a", "/up", "/wk", "/w"]) == [
        {"overlay": "/a", "upper": "/up", "work": "/wk", "dest": "/w"}]


def test_a_lower_with_no_overlay_after_it_names_the_option():
    values, order, _ = parse_run(["--lower", "/b", "--", "true"])
    with pytest.raises(ConfigError) as info:
        command_line_layer(order, values)
    assert info.value.origin == "--lower"


@pytest.mark.parametrize("table, message", [
    ('{ overlay = "/a", work = "/w" }', "needs 'upper'"),
    ('{ ro-overlay = "/a" }', "needs 'lower'"),
    ('{ overlay = "/a", upper = "up", work = "/w" }', "path must be absolute"),
    ('{ tmp-overlay = "/a", lower = "/b" }', "expected array of absolute paths"),
    ('{ tmp-overlay = "/a", upper = "/u" }', "'upper' does not apply to a tmp-overlay op"),
])
def test_bad_overlay_tables_are_one_clear_error(profiles, table, message):
    path = profiles.write("p", f"[filesystem]\nmounts = [{table}]\n")
    err = profiles.error(str(path))
    assert message in err.message and "filesystem.mounts[0]" in err.origin


def test_overlay_tables_become_ops(profiles):
    path = profiles.write("p", '[filesystem]\nmounts = [{ tmp-overlay = "/a", dest = "/w", '
                               'lower = ["/b"], size = "1M" }]\n')
    op = profiles.policy(str(path)).filesystem.ops[-1]
    assert (op.kind, op.source, op.dest, op.lower, op.size) == ("tmp-overlay", "/a", "/w",
                                                                ("/b",), 1 << 20)


def test_landlock_treats_overlays_like_binds():
    ops = (MountOp(kind="overlay", source="/a", dest="/w", upper="/u", work="/k"),
           MountOp(kind="ro-overlay", source="/a", dest="/r", lower=("/b",)))
    rules = {r.path: r.access for r in derive(Policy(filesystem=Filesystem(ops=ops))).paths}
    assert rules["/w"] == {READ, WRITE, EXECUTE} and rules["/r"] == {READ, EXECUTE}


def test_changes_overlay_the_cwd_and_hide_the_changes_dir():
    caller = _caller(XDG_STATE_HOME="/state")
    plan = build_plan(Policy(changes=Changes(enabled=True)), ["true"], caller)
    overlay, hide, readonly = plan.mount_ops[-3:]
    run_dir = plan.changes.run_dir
    assert run_dir.startswith("/state/jailpy/changes/")
    assert (overlay.kind, overlay.source, overlay.dest, overlay.upper, overlay.work) == (
        "overlay", "/srv/project", "/srv/project", f"{run_dir}/upper/0", f"{run_dir}/work/0")
    assert (hide.kind, hide.dest, readonly.kind, readonly.dest) == (
        "tmpfs", "/state/jailpy/changes", "remount-ro", "/state/jailpy/changes")
    assert plan.cwd == "/srv/project" and plan.cwd_identity is None


def test_the_state_dir_comes_from_the_passwd_home_not_home():
    home = pwd.getpwuid(0).pw_dir
    caller = Caller(uid=0, gid=0, env={"HOME": "/tmp/fake"}, cwd="/srv")
    assert state_dirs(caller) == (f"{home}/.local/state/jailpy/changes",)
    relative = Caller(uid=0, gid=0, env={"XDG_STATE_HOME": "rel"}, cwd="/srv")
    assert state_dirs(relative) == (f"{home}/.local/state/jailpy/changes",)


@pytest.mark.parametrize("cwd, paths, directory, message", [
    ("/", (), None, "is /"),
    ("/home/u", (), None, "contains the home directory"),
    ("/srv/p", ("/srv/p",), "/srv/p/.changes", "holds or lies in the changes directory"),
    ("/srv/p", ("/srv/p/sub",), "/srv/p", "holds or lies in the changes directory"),
])
def test_unsafe_changes_paths_are_refused(cwd, paths, directory, message):
    policy = Policy(changes=Changes(enabled=True, paths=paths, dir=directory))
    with pytest.raises(ConfigError) as info:
        build_plan(policy, ["true"], _caller(cwd))
    assert message in info.value.message


def test_a_custom_changes_dir_still_hides_the_default_one(tmp_path):
    default = tmp_path / "jailpy" / "changes"
    default.mkdir(parents=True)
    caller = _caller(XDG_STATE_HOME=str(tmp_path))
    plan = build_plan(Policy(changes=Changes(enabled=True, dir="/other")), ["true"], caller)
    hidden = [op.dest for op in plan.mount_ops if op.kind == "tmpfs"]
    assert hidden[-2:] == ["/other", str(default)]
