"""`jailpy run` options of the privilege layers -> one profile layer.

The option rows live in runopts.py with the others; this module checks their
values (so an error names the option, not a key of the synthetic command-line
layer) and turns them into profile sections. No click here: it runs on the
fast path of `jailpy run`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LIST_OPTIONS = {
    # option dest: (section, key, flag)
    "cap_keep": ("capabilities", "keep", "--cap-keep"),
    "seccomp_deny": ("seccomp", "deny", "--seccomp-deny"),
    "seccomp_allow": ("seccomp", "allow", "--seccomp-allow"),
    "landlock_read": ("landlock", "read", "--landlock-read"),
    "landlock_write": ("landlock", "write", "--landlock-write"),
    "landlock_exec": ("landlock", "execute", "--landlock-exec"),
}
_SCALAR_OPTIONS = {
    "seccomp_enabled": ("seccomp", "enabled", "--seccomp/--no-seccomp"),
    "seccomp_action": ("seccomp", "action", "--seccomp-action"),
    "allow_userns": ("seccomp", "allow_userns", "--allow-userns"),
    "landlock_enabled": ("landlock", "enabled", "--landlock/--no-landlock"),
}


def security_layer(opts: dict[str, Any]) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """The options' profile sections and the origin of each value."""
    if not any(opts.get(dest) not in (None, (), []) for dest in (*_LIST_OPTIONS,
                                                                  *_SCALAR_OPTIONS)):
        return {}, {}
    from ..linux.capabilities import capability_numbers
    from ..profile.security import check_entry
    from ..plan.seccomp import parse_action

    doc: dict[str, dict] = {}
    origins: dict[str, list[str]] = {}
    for dest, (section, key, flag) in _LIST_OPTIONS.items():
        values = list(opts.get(dest) or ())
        for value in values:  # checked here so errors name the option, not a key
            if section == "seccomp":
                check_entry(value, f"{flag} {value}")
            elif section == "capabilities":
                capability_numbers((value,), f"{flag} {value}")
        if values:
            doc.setdefault(section, {})[key] = values
            origins[f"{section}.{key}"] = [f"{flag} {v}" for v in values]
    for dest, (section, key, flag) in _SCALAR_OPTIONS.items():
        value = opts.get(dest)
        if dest == "seccomp_action" and value is not None:
            parse_action(value, flag)
        if value is not None:
            doc.setdefault(section, {})[key] = value
            origins[f"{section}.{key}"] = [flag]
    return doc, origins
