"""Capability drop for pid 1 and the target, through python-prctl.

    prepare(keep)   supervisor, before fork: check the names, probe the
                    highest capability this kernel knows (inherited by the children)
    apply(keep)     pid 1 (keep nothing) and the target: drop, lock, verify

A process that created a user namespace holds every capability inside it.
Before execve the target gives all of them up except those the policy keeps,
and locks the securebits so that root inside cannot regain them through
execve of a setuid-root or file-capability binary. Kept capabilities are
raised in the ambient set so they survive execve for a non-root uid too.

The drop covers every capability the running kernel knows (probed with
PR_CAPBSET_READ), not only those python-prctl was built with, and is
verified with capget afterwards: a set that still holds more than was kept
is a set-up error, never a silent leak. The calls themselves are
linux/syscalls.py's (python-prctl, ctypes only where it has no call).
"""

from __future__ import annotations

from ..errors import SetupError
from ..linux import syscalls as sc
from ..linux.capabilities import CAPABILITIES, capability_numbers

#: SECBIT_NOROOT, NO_SETUID_FIXUP and KEEP_CAPS, each with its lock bit.
LOCKED_SECUREBITS = 0b101111


_last_capability: int | None = None


def prepare(keep: tuple[str, ...]) -> None:
    """Fail on an unknown capability name, a missing python-prctl or an unknown
    architecture before anything is forked."""
    sc.check_supported()
    capability_numbers(keep)
    last_capability()


def last_capability() -> int:
    """The highest capability number this kernel knows (probed once; the
    supervisor calls this before forking, so the children inherit the answer)."""
    global _last_capability
    if _last_capability is None:
        cap = max(CAPABILITIES.values())
        while cap < 63:
            try:
                sc.capbset_read(cap + 1)
            except OSError:
                break
            cap += 1
        _last_capability = cap
    return _last_capability


def apply(keep: tuple[str, ...] = ()) -> None:
    """Leave exactly `keep` in the bounding, permitted, effective, inheritable and
    ambient sets, with securebits locked so execve cannot add anything back."""
    kept = set(capability_numbers(keep))
    try:
        _drop(kept)
    except OSError as exc:
        raise SetupError(f"cannot drop capabilities: {exc.strerror or exc}",
                         origin="capabilities") from exc


def _drop(kept: set[int]) -> None:
    # A handful of syscalls in a fixed order: the bounding set and securebits need
    # CAP_SETPCAP, so they go before capset lowers the permitted set; ambient
    # capabilities need to be permitted and inheritable, so they go after.
    last = last_capability()
    sc.ambient_clear_all()
    for cap in range(last + 1):
        if cap not in kept:
            sc.capbset_drop(cap)
    sc.set_securebits(LOCKED_SECUREBITS)
    sc.set_capabilities(kept, last)
    for cap in sorted(kept):
        sc.ambient_raise(cap)
    _verify(kept, last)


def _verify(kept: set[int], last: int) -> None:
    mask = sum(1 << cap for cap in kept)
    effective, permitted, inheritable = sc.capget()
    leftover = (effective | permitted | inheritable) & ~mask
    leftover |= sum(1 << cap for cap in range(last + 1)
                    if cap not in kept and sc.capbset_read(cap))
    if leftover:
        raise SetupError(f"capabilities still held after the drop: {leftover:#x}",
                         origin="capabilities",
                         hint="this kernel knows capabilities python-prctl does not; "
                              "please report it")
