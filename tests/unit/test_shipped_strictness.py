"""Finding 4 of issue 11: no shipped profile is weaker than `default` in seccomp,
capabilities or namespaces, unless its description says why (and what)."""

from __future__ import annotations

import pytest

from jailpy.api import load_policy
from jailpy.plan.seccomp import resolve
from jailpy.policy import NAMESPACES, Caller
from jailpy.profile.loader import profile_names, shipped_profiles_dir

SHIPPED = sorted(p.stem for p in shipped_profiles_dir().glob("*.toml"))
#: What a description must mention to be weaker in that respect.
REASONS = {"allow_userns": "namespace", "nested": "nest"}


CALLER = Caller(1000, 1000, {"HOME": "/home/u", "USER": "u", "PATH": "/usr/bin"}, "/home/u/w")


def _policy(name: str):
    return load_policy(name, caller=CALLER)


def _description(name: str) -> str:
    """Every description along the extends chain: a weakening a base introduced (gui
    shares the uts namespace) is explained where it was introduced."""
    from jailpy.profile.expand import standard_variables
    from jailpy.profile.loader import load_layers

    layers = load_layers(name, CALLER.env, standard_variables(CALLER))
    return " ".join(str(layer.doc.get("description", "")) for layer in layers).lower()


def _denied(policy) -> set[str]:
    """The syscalls refused whatever their arguments."""
    rules = resolve(policy.seccomp)
    return set() if rules is None else {r.syscall for r in rules.main if r.action != "allow"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_is_at_least_as_strict_as_default(name):
    default, policy = _policy("default"), _policy(name)
    description = _description(name)
    weaker = []
    if policy.seccomp.allow_userns and not default.seccomp.allow_userns and \
            REASONS["allow_userns"] not in description:
        weaker.append("seccomp.allow_userns")
    if not policy.seccomp.enabled:
        weaker.append("seccomp.enabled")
    for flag in ("block_tty_injection",):
        if getattr(default.seccomp, flag) and not getattr(policy.seccomp, flag):
            weaker.append(f"seccomp.{flag}")
    if policy.seccomp.bad_arch_action != default.seccomp.bad_arch_action:
        weaker.append("seccomp.bad_arch_action")
    if policy.namespaces.nested and REASONS["nested"] not in description:
        weaker.append("namespaces.nested")
    missing = _denied(default) - _denied(policy)
    if policy.namespaces.nested and "namespaces.nested" not in weaker:
        # explained: the mount family nesting lets through (docs/security.md)
        missing -= _denied(default) - _denied(
            default.replace(seccomp=default.seccomp.replace(allow_nesting=True)))
    if policy.seccomp.allow_userns and "seccomp.allow_userns" not in weaker:
        # explained: what allowing namespaces lets through (clone3, unshare, setns)
        missing -= _denied(default) - _denied(
            default.replace(seccomp=default.seccomp.replace(allow_userns=True)))
    if missing:
        weaker.append(f"seccomp lets through {sorted(missing)[:5]}")
    if set(policy.capabilities.keep) - set(default.capabilities.keep):
        weaker.append(f"capabilities.keep {policy.capabilities.keep}")
    for namespace in NAMESPACES:
        if getattr(default.namespaces, namespace) and not getattr(policy.namespaces, namespace) \
                and namespace not in description:
            weaker.append(f"namespaces.{namespace}")
    assert not weaker, f"{name} is weaker than default: {weaker}"


def test_every_shipped_profile_is_compared():
    assert {"strict", "minimal", "default", "ci-build"} <= set(SHIPPED)
    assert set(SHIPPED) <= set(profile_names({"HOME": "/nonexistent"}))
