"""Policy -> Plan without a kernel."""

from __future__ import annotations

from jailpy.linux import syscalls as sc
from jailpy.plan import Caller, build_plan, sandbox_environment
from jailpy.policy import Environment, Identity, Namespaces, Policy, Process


def _caller(**env: str) -> Caller:
    return Caller(uid=1000, gid=1000, env=dict(env), cwd="/home/u", cwd_identity=(1, 2))


def test_default_policy_unshares_every_namespace():
    plan = build_plan(Policy(), ["true"], _caller())
    for flag in (sc.CLONE_NEWUSER, sc.CLONE_NEWNS, sc.CLONE_NEWPID, sc.CLONE_NEWIPC,
                 sc.CLONE_NEWUTS, sc.CLONE_NEWNET, sc.CLONE_NEWCGROUP):
        assert plan.unshare_flags & flag


def test_shared_namespaces_are_left_out():
    plan = build_plan(Policy(namespaces=Namespaces(net=False, pid=False)), ["true"], _caller())
    assert not plan.unshare_flags & sc.CLONE_NEWNET
    assert not plan.new_pid_ns


def test_identity_defaults_to_the_caller_and_can_be_overridden():
    plan = build_plan(Policy(), ["true"], _caller())
    assert (plan.uid_inside, plan.gid_inside) == (1000, 1000)
    plan = build_plan(Policy(identity=Identity(uid=0, gid=0)), ["true"], _caller())
    assert (plan.uid_inside, plan.gid_inside, plan.uid_outside) == (0, 0, 1000)


def test_environment_clear_keep_glob_unset_set_order():
    policy = Policy(environment=Environment(clear=True, keep=("PATH", "LC_*", "A"),
                                            set=(("A", "override"), ("NEW", "1")),
                                            unset=("PATH",)))
    env = sandbox_environment(policy, {"PATH": "/bin", "LC_ALL": "C", "A": "a", "SECRET": "s"})
    assert env == {"LC_ALL": "C", "A": "override", "NEW": "1"}


def test_inherit_environment_keeps_everything_not_unset():
    policy = Policy(environment=Environment(clear=False, unset=("SECRET",)))
    env = sandbox_environment(policy, {"X": "1", "SECRET": "s"})
    assert env == {"X": "1"}


def test_explicit_cwd_is_required_inside_while_caller_cwd_is_checked_by_identity():
    plan = build_plan(Policy(), ["true"], _caller())
    assert plan.cwd == "/home/u" and plan.cwd_identity == (1, 2)
    plan = build_plan(Policy(process=Process(cwd="/srv")), ["true"], _caller())
    assert plan.cwd == "/srv" and plan.cwd_identity is None


def test_records_are_immutable_and_comparable():
    a = Policy()
    b = a.replace(name="other")
    assert a != b and b.name == "other" and a.name == "custom"
    try:
        a.name = "x"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Policy must be immutable")


def test_a_pty_of_its_own_when_stdin_is_a_terminal_unless_refused():
    at_terminal = _caller().replace(terminal=True)
    assert build_plan(Policy(), ["bash"], at_terminal).tty
    assert not build_plan(Policy(), ["bash"], _caller()).tty  # pipes, CI
    assert not build_plan(Policy(process=Process(tty=False)), ["bash"], at_terminal).tty
    # --no-new-session keeps its meaning: the host terminal itself
    assert not build_plan(Policy(process=Process(new_session=False)), ["bash"], at_terminal).tty


def test_forcing_a_pty_that_cannot_be_is_a_config_error():
    import pytest

    from jailpy.errors import ConfigError

    with pytest.raises(ConfigError, match="not jailpy.s controlling terminal") as err:
        build_plan(Policy(process=Process(tty=True)), ["bash"], _caller())
    assert "--tty" in err.value.origin
    with pytest.raises(ConfigError, match="new session"):
        build_plan(Policy(process=Process(tty=True, new_session=False)), ["bash"],
                   _caller().replace(terminal=True))
