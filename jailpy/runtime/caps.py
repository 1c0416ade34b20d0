"""Capability drop for the target, through python-prctl.

A process that created a user namespace holds every capability inside it.
Before execve the target gives all of them up except those the policy keeps,
and locks the securebits so that root inside cannot regain them through
execve of a setuid-root or file-capability binary.
"""

from __future__ import annotations

import ctypes

import prctl

from ..errors import ConfigError

_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4


def capability_numbers(names: tuple[str, ...]) -> list[int]:
    """Translate CAP_* names; unknown names are a configuration error."""
    numbers = []
    for name in names:
        value = getattr(prctl, name.upper(), None) if name.upper().startswith("CAP_") else None
        if not isinstance(value, int):
            raise ConfigError(f"unknown capability {name!r}", origin="capabilities.keep")
        numbers.append(value)
    return numbers


def drop_capabilities(keep: tuple[str, ...] = ()) -> None:
    """Leave exactly `keep` in the bounding, permitted, effective, inheritable and
    ambient sets, with securebits locked so execve cannot add anything back."""
    kept = set(capability_numbers(keep))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in prctl.ALL_CAPS:
        if cap not in kept:
            prctl.capbset_drop(cap)
    prctl.securebits.noroot = True
    prctl.securebits.noroot_locked = True
    prctl.securebits.no_setuid_fixup = True
    prctl.securebits.no_setuid_fixup_locked = True
    prctl.securebits.keep_caps_locked = True
    prctl.cap_inheritable.limit(*kept)
    for cap in kept:
        libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    prctl.cap_effective.limit(*kept)
    prctl.cap_permitted.limit(*kept)
