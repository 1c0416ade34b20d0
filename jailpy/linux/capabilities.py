"""Capability names and numbers (linux/capability.h), as plain data.

Kept apart from runtime/caps.py so profile validation can check names
without importing python-prctl.
"""

from __future__ import annotations

from ..errors import ConfigError

#: Capability names and numbers (linux/capability.h); validated at profile load.
CAPABILITIES: dict[str, int] = {name: number for number, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"))}


def canonical(name: str) -> str:
    """'net_bind_service', 'CAP_NET_BIND_SERVICE' -> 'CAP_NET_BIND_SERVICE'."""
    upper = name.strip().upper()
    return upper if upper.startswith("CAP_") else "CAP_" + upper


def capability_numbers(names: tuple[str, ...], origin: str = "capabilities.keep") -> list[int]:
    """Translate CAP_* names (case-insensitive, CAP_ prefix optional)."""
    numbers = []
    for name in names:
        full = canonical(name)
        if full not in CAPABILITIES:
            raise ConfigError(f"unknown capability {name!r}", origin=origin,
                              hint=_suggestion(full))
        numbers.append(CAPABILITIES[full])
    return numbers


def _suggestion(full: str) -> str | None:
    """A name that starts with what was typed (NET_BIND -> CAP_NET_BIND_SERVICE) beats
    the closest spelling (which would be CAP_NET_ADMIN)."""
    from ..errors import suggest

    started = [name for name in CAPABILITIES if name.startswith(full)]
    if len(started) == 1:
        return f"did you mean '{started[0]}'?"
    return suggest(full, list(CAPABILITIES))
