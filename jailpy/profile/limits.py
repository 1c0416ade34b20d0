"""[limits] and [workspace] of a merged profile -> Limits and Workspace policy.

Values are parsed here, with the origin (profile file and key, or CLI
option) of each one, so `nofile = "lots"` is reported as exactly that line.
rlimit values take the forms of prlimit(1): one number for both the soft and
the hard limit, "SOFT:HARD", or "unlimited"; sizes take units ("2G"), the
cpu limit takes a duration ("10m", rounded up to whole seconds).
"""

from __future__ import annotations

import math
import resource

from ..errors import ConfigError, suggest
from ..policy import DEFAULT_QUOTAS, USER_QUOTAS, Limits, Workspace
from .values import parse_duration, parse_size

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any

    from .merge import Merged

#: rlimit names (RLIMIT_<NAME>) and how their values are written.
RLIMIT_UNITS: dict[str, str] = {
    "as": "size", "data": "size", "fsize": "size", "core": "size", "stack": "size",
    "memlock": "size", "nofile": "count", "nproc": "count", "cpu": "seconds",
}
_UNLIMITED = ("unlimited", "infinity")
INFINITY = resource.RLIM_INFINITY


def _one_value(name: str, text: Any, origin: str) -> int:
    value = _unchecked_value(name, text, origin)
    if value != INFINITY and not 0 <= value <= _LARGEST:
        raise ConfigError(f"{name} limit {text!r} is out of range", origin=origin,
                          hint=f'the largest finite value is {_LARGEST}; or use "unlimited"')
    return value


#: setrlimit(2) through Python takes a C long; RLIM_INFINITY is -1 there.
_LARGEST = 2**63 - 1


def _unchecked_value(name: str, text: Any, origin: str) -> int:
    if isinstance(text, str) and text.strip().lower() in _UNLIMITED:
        return INFINITY
    unit = RLIMIT_UNITS[name]
    if unit == "size":
        return parse_size(text, origin)
    if unit == "seconds":
        return math.ceil(parse_duration(text, origin))
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    if isinstance(text, str) and text.strip().isascii() and text.strip().isdigit():
        return int(text.strip())
    raise ConfigError(f"bad {name} limit {text!r}: expected a count", origin=origin,
                      hint='use a whole number or "unlimited"')


def parse_rlimit(name: str, value: Any, origin: str) -> tuple[int, int]:
    """(soft, hard) from 1024, "1024", "512:1024", "2G", "1G:2G", "unlimited", [soft, hard]."""
    if name not in RLIMIT_UNITS:
        from ..errors import suggest

        raise ConfigError(f"unknown rlimit {name!r}", origin=origin,
                          hint=suggest(name, tuple(RLIMIT_UNITS)) or
                          f"choose one of {', '.join(RLIMIT_UNITS)}")
    if isinstance(value, list):
        if len(value) != 2:
            raise ConfigError(f"expected [soft, hard], got {len(value)} items", origin=origin)
        soft, hard = (_one_value(name, v, origin) for v in value)
    elif isinstance(value, str) and ":" in value:
        left, _, right = value.partition(":")
        soft, hard = _one_value(name, left, origin), _one_value(name, right, origin)
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        soft = hard = _one_value(name, value, origin)
    else:
        raise ConfigError(f"bad {name} limit {value!r}", origin=origin,
                          hint='write SOFT, "SOFT:HARD" or "unlimited"')
    if hard != INFINITY and (soft == INFINITY or soft > hard):
        raise ConfigError(f"soft limit above the hard limit in {value!r}", origin=origin)
    return soft, hard


def limits_policy(merged: "Merged") -> Limits:
    """The [limits] section of a merged profile, parsed."""
    data = merged.data.get("limits", {})
    origins: dict[str, str] = {}

    def origin(key: str) -> str:
        origins[key] = merged.origins.of(f"limits.{key}")
        return origins[key]

    rlimits = []
    for name, value in data.get("rlimits", {}).items():
        where = origin(f"rlimits.{name}")
        if where.startswith(("--rlimit", "command line")):
            where = origins[f"rlimits.{name}"] = f"--rlimit {name}={value}"
        soft, hard = parse_rlimit(name, value, where)
        rlimits.append((name, soft, hard))
    pids = data.get("pids_max")
    if pids is not None and pids < 1:
        raise ConfigError("pids_max must be at least 1", origin=origin("pids_max"))
    cpus = data.get("cpus")
    if cpus is not None and not 0 < cpus <= 4096:
        raise ConfigError(f"cpus must be a positive number of CPUs, got {cpus}",
                          origin=origin("cpus"))
    size = lambda key: None if key not in data else parse_size(data[key], origin(key))  # noqa
    duration = lambda key: None if key not in data else parse_duration(data[key], origin(key))  # noqa
    for key in ("pids_max", "cpus", "cgroup_parent", "best_effort"):
        if key in data:
            origin(key)  # remembered for runtime errors about this key
    if "memory_swap_max" in data and "memory_max" not in data:
        raise ConfigError("memory_swap_max needs memory_max (the swap limit is on top of it)",
                          origin=origin("memory_swap_max"))
    period = duration("cpu_period")
    if period is not None and not 0.001 <= period <= 1.0:
        raise ConfigError("cpu_period must be between 1ms and 1s", origin=origin("cpu_period"))
    parent = data.get("cgroup_parent")
    if parent is not None and not parent.startswith("/"):
        raise ConfigError(f"cgroup_parent must be an absolute cgroup path like "
                          f"\"/jailpy/alice\", got {parent!r}", origin=origin("cgroup_parent"))
    grace = duration("kill_grace")
    quotas = dict(DEFAULT_QUOTAS)
    for name, value in data.get("quotas", {}).items():
        where = origin(f"quotas.{name}")
        if name not in USER_QUOTAS:
            raise ConfigError(f"unknown quota {name!r}", origin=where,
                              hint=suggest(name, USER_QUOTAS) or
                              f"known: {', '.join(USER_QUOTAS)}")
        if value == "inherit":  # nothing of its own: the namespaces above still count it
            quotas.pop(name, None)
            continue
        if not 0 <= value <= 2**31 - 1:
            raise ConfigError(f"{name} must be between 0 and 2147483647, got {value}",
                              origin=where)
        quotas[name] = value
    return Limits(
        quotas=tuple(quotas.items()),
        rlimits=tuple(rlimits), timeout=duration("timeout"),
        kill_grace=5.0 if grace is None else grace,
        memory_max=size("memory_max"), memory_swap_max=size("memory_swap_max"),
        pids_max=pids, cpus=None if cpus is None else float(cpus),
        cpu_period=0.1 if period is None else period, cgroup_parent=parent,
        best_effort=bool(data.get("best_effort", False)), origins=tuple(origins.items()))


def workspace_policy(merged: "Merged") -> Workspace:
    """The [workspace] section: which directory a build may write."""
    path = merged.data.get("workspace", {}).get("path")
    if path is None:
        return Workspace()
    where = merged.origins.of("workspace.path")
    if not path.startswith("/"):
        raise ConfigError(f"workspace must be an absolute path, got {path!r}", origin=where)
    return Workspace(path=path, origin=where)
