"""A pool's checks on its profile and on each request, before anything runs."""

from __future__ import annotations

import pytest

from jailpy.api import Sandbox, load_policy
from jailpy.errors import ConfigError
from jailpy.runtime.pool import MAX_OUTPUT, check_plan, check_request


def _plan(**limits):
    policy = load_policy("default")
    if limits:
        policy = policy.replace(limits=policy.limits.replace(**limits))
    return Sandbox(policy).plan(["true"])


def _request(plan, argv=("true",), **fields):
    base = dict(env=None, stdin=b"", files=None, cwd=None, timeout=None, memory=None,
                pids=None, output_limit=1 << 20)
    base.update(fields)
    return check_request(plan, list(argv), **base)


def test_a_request_within_the_profile_becomes_one_frame():
    plan = _plan(memory_max=256 << 20, pids_max=64, timeout=10.0)
    frame = _request(plan, ["sh", "-c", "x"], env={"A": "1"}, stdin=b"in",
                     files={"d/f.py": "print(1)"}, cwd="/tmp", timeout=2, memory=64 << 20,
                     pids=8, output_limit=10)
    assert frame == {"argv": ["sh", "-c", "x"], "env": {"A": "1"}, "stdin": b"in",
                     "files": {"d/f.py": b"print(1)"}, "cwd": "/tmp", "timeout": 2.0,
                     "memory": 64 << 20, "pids": 8, "output_limit": 10}


@pytest.mark.parametrize("fields, origin, words", [
    (dict(memory=1 << 20), "Pool.run(memory)", "sets no limits.memory_max"),
    (dict(pids=5), "Pool.run(pids)", "sets no limits.pids_max"),
    (dict(memory=-1), "Pool.run(memory)", "positive"),
    (dict(timeout=0), "Pool.run(timeout)", "positive"),
    (dict(output_limit=MAX_OUTPUT + 1), "Pool.run(output_limit)", "between"),
    (dict(output_limit=True), "Pool.run(output_limit)", "positive"),
    (dict(files={"../x": b""}), "Pool.run(files)", "relative"),
    (dict(files={"/etc/x": b""}), "Pool.run(files)", "relative"),
    (dict(files={"a//b": b""}), "Pool.run(files)", "relative"),
    (dict(files={"a": 3}), "Pool.run(files)", "bytes or str"),
    (dict(env={"A=B": "x"}), "Pool.run(env)", "environment"),
    (dict(env={"A": "x\0"}), "Pool.run(env)", "environment"),
    (dict(stdin="text"), "Pool.run(stdin)", "bytes"),
    (dict(cwd="relative"), "Pool.run(cwd)", "absolute"),
])
def test_a_bad_field_is_refused_by_name(fields, origin, words):
    with pytest.raises(ConfigError) as err:
        _request(_plan(), **fields)
    assert err.value.origin == origin and words in err.value.message


def test_limits_above_the_profile_are_refused():
    plan = _plan(memory_max=256 << 20, pids_max=64, timeout=10.0)
    for fields, origin in ((dict(memory=512 << 20), "Pool.run(memory)"),
                           (dict(pids=65), "Pool.run(pids)"),
                           (dict(timeout=11), "Pool.run(timeout)")):
        with pytest.raises(ConfigError) as err:
            _request(plan, **fields)
        assert err.value.origin == origin and "profile" in err.value.message
    # pid 1 counts: with one process allowed, the command could not even start
    with pytest.raises(ConfigError) as err:
        _request(plan, pids=1)
    assert err.value.origin == "Pool.run(pids)" and "at least 2" in err.value.message
    assert _request(plan, pids=2)["pids"] == 2


@pytest.mark.parametrize("argv", [[], [""], ["a\0b"], ["ok", "b\0"]])
def test_a_bad_command_is_refused(argv):
    with pytest.raises(ConfigError) as err:
        _request(_plan(), argv)
    assert err.value.origin == "Pool.run(argv)"


def test_profiles_a_pool_cannot_serve_are_refused():
    policy = load_policy("default")
    no_pid = policy.replace(namespaces=policy.namespaces.replace(pid=False))
    with pytest.raises(ConfigError) as err:
        check_plan(Sandbox(no_pid).plan(["true"]))
    assert err.value.origin == "namespaces.pid"
    waits = policy.replace(process=policy.process.replace(wait_all=True))
    with pytest.raises(ConfigError) as err:
        check_plan(Sandbox(waits).plan(["true"]))
    assert err.value.origin == "process.wait_all"
    # Nothing in a pool would write the id maps (no on_unshared step).
    mapped = policy.replace(process=policy.process.replace(ids_mapped_by_caller=True))
    with pytest.raises(ConfigError) as err:
        check_plan(Sandbox(mapped).plan(["true"]))
    assert err.value.origin == "process.ids_mapped_by_caller"
    check_plan(Sandbox(policy).plan(["true"]))  # the default profile is fine


def _spawns(rlimits=(), **seccomp) -> bool:
    from jailpy.runtime import target

    policy = load_policy("default")
    policy = policy.replace(seccomp=policy.seccomp.replace(**seccomp),
                            limits=policy.limits.replace(rlimits=rlimits))
    return target.can_spawn(Sandbox(policy).plan(["true"]))


def test_pid1_spawns_the_command_only_under_restrictions_it_can_live_with():
    """pid 1 takes on the command's restrictions itself only when they leave what
    it still calls (reaping, reporting, the request's files, posix_spawn) alone."""
    assert _spawns()  # the shipped default: @default, @ptrace, @io-uring, @namespaces
    assert _spawns(enabled=False)
    assert not _spawns(deny=("wait4",))
    assert not _spawns(deny=("@memory-deny-write-execute",))  # an argument filter on mmap
    assert not _spawns(default_action="deny", allow=("@system-service",))
    assert _spawns(actions=(("ptrace", "kill-process"),))  # another action, same calls
    assert not _spawns(rlimits=(("nofile", 64, 64),))  # pid 1 keeps the caller's rlimits
    # posix_spawn's clone3: glibc falls back to clone on ENOSYS (jailpy's own rule
    # for it), but on nothing else
    assert _spawns(allow_userns=True)  # no clone3 rule at all
    assert not _spawns(allow_userns=True, deny=("clone3",))  # EPERM
    assert _spawns(allow_userns=True, deny=("clone3",),
                   actions=(("clone3", "errno:ENOSYS"),))
