"""The trust boundary in the Plan (issue 11): jailpy's own state is hidden or
read-only after every other op, wherever a bind makes it visible; and the input
limits that keep validation fast."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jailpy import usercache
from jailpy.api import load_policy
from jailpy.errors import ConfigError
from jailpy.plan import Caller, build_plan
from jailpy.policy import Filesystem, MountOp, Namespaces, Policy, Workspace
from jailpy.profile import schema

HOME = "/nonexistent-home/u"


@pytest.fixture(autouse=True)
def no_passwd_home(monkeypatch):
    """Only the environment names the home here (the passwd entry is the host's)."""
    monkeypatch.setattr(usercache, "passwd_home", lambda uid=None: None)


def _plan(*ops: MountOp, env: dict[str, str] | None = None, written=(), **policy):
    caller = Caller(uid=1000, gid=1000, env={"HOME": HOME, **(env or {})}, cwd="/ws",
                    cwd_identity=None)
    return build_plan(Policy(filesystem=Filesystem(ops=ops), **policy), ["true"], caller,
                      written)


def _guards(plan) -> list[tuple[str, str]]:
    return [(op.kind, op.dest) for op in plan.mount_ops if op.kind in ("hide", "protect")]


def test_a_bind_of_the_home_gets_its_config_and_cache_hidden_after_every_op():
    plan = _plan(MountOp(kind="bind", dest=HOME, source=HOME),
                 MountOp(kind="tmpfs", dest="/tmp"))
    assert _guards(plan) == [("hide", f"{HOME}/.config/jailpy"),
                             ("hide", f"{HOME}/.cache/jailpy")]
    assert [op.kind for op in plan.mount_ops[-2:]] == ["hide", "hide"]
    assert "jailpy's own state" in plan.mount_ops[-1].origin


def test_the_state_follows_a_bind_to_another_destination():
    plan = _plan(MountOp(kind="ro-bind", dest="/mnt/h", source=HOME),
                 MountOp(kind="bind", dest="/x", source=f"{HOME}/.cache/jailpy/sub"))
    assert ("hide", "/mnt/h/.cache/jailpy") in _guards(plan)
    assert ("hide", "/x") in _guards(plan)


def test_a_workspace_holding_the_xdg_dirs_gets_them_hidden():
    env = {"XDG_CACHE_HOME": "/ws/.cache", "XDG_CONFIG_HOME": "/ws/.config"}
    plan = _plan(env=env, workspace=Workspace(path="/ws"))
    assert _guards(plan) == [("hide", "/ws/.config/jailpy"), ("hide", "/ws/.cache/jailpy")]


def test_a_status_file_and_written_wrappers_are_read_only(tmp_path, monkeypatch):
    config = tmp_path / "config"
    monkeypatch.setattr(usercache, "written_files", lambda env: ["/ws/bin/app"])
    plan = _plan(MountOp(kind="bind", dest="/ws", source="/ws"), written=("/ws/.s.json.1.tmp",),
                 env={"XDG_CONFIG_HOME": str(config)})
    assert ("protect", "/ws/bin/app") in _guards(plan)
    assert ("protect", "/ws/.s.json.1.tmp") in _guards(plan)


def test_nothing_the_sandbox_cannot_see_is_guarded():
    assert _guards(_plan(MountOp(kind="ro-bind", dest="/usr", source="/usr"))) == []


def test_without_a_mount_namespace_there_is_nothing_to_mount_over():
    plan = _plan(namespaces=Namespaces(mount=False))
    assert _guards(plan) == []


def test_wrap_records_what_it_wrote(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    usercache.record_written(env, ["/a/wrapper", "/a/app.desktop"])
    usercache.record_written(env, ["/a/wrapper", "/b\nnewline"])
    assert usercache.written_files(env) == ["/a/wrapper", "/a/app.desktop"]


def test_mount_op_limit():
    schema.check_mount_count(schema.MAX_MOUNT_OPS, "here")
    with pytest.raises(ConfigError, match=f"at most {schema.MAX_MOUNT_OPS}"):
        schema.check_mount_count(schema.MAX_MOUNT_OPS + 1, "here")


def test_a_10000_op_profile_over_default_loads_and_plans(tmp_path):
    """Issue 11 asks for a 10,000-op profile to validate well under a second (measured
    in docs/benchmarks.md; no timing here): it must at least be valid."""
    ops = "".join(f'  {{ tmpfs = "/t/{i}" }},\n' for i in range(10_000))
    path = tmp_path / "big.toml"
    path.write_text(f'extends = ["default"]\n[filesystem]\nmounts = [\n{ops}]\n')
    caller = Caller(uid=1000, gid=1000, env={"HOME": HOME}, cwd="/", cwd_identity=None)
    policy = load_policy(str(path), caller=caller)
    assert len(build_plan(policy, ["true"], caller).mount_ops) > 10_000


@given(st.text(min_size=1, max_size=20).filter(
    lambda s: any(ord(c) < 0x20 or ord(c) == 0x7F for c in s)))
def test_hostnames_with_control_characters_are_refused(name):
    with pytest.raises(ConfigError, match="not a valid hostname"):
        schema.check_values({"process": {"hostname": name}}, "p.toml")
