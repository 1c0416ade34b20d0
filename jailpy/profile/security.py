"""Profile sections for the privilege layers: [capabilities], [seccomp], [landlock].

check_values() runs per file during validation, so a bad capability name,
seccomp group or action names the file and key. Syscall names are checked
against libseccomp when the filter is compiled (runtime/seccomp.py), which
keeps libseccomp out of profile loading. The converters build the Policy
parts and remember, for each value, which file or option set it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..policy import Origins

from ..errors import ConfigError
from ..linux.capabilities import CAPABILITIES, canonical
from ..policy import LandlockPolicy, SeccompPolicy

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _syscall_shaped(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and set(name) <= _NAME_CHARS


def check_values(doc: dict[str, Any], source: str) -> None:
    from ..errors import suggest

    for i, name in enumerate(doc.get("capabilities", {}).get("keep", [])):
        if canonical(name) not in CAPABILITIES:
            raise ConfigError(f"unknown capability {name!r}",
                              origin=f"{source}: capabilities.keep[{i}]",
                              hint=suggest(canonical(name), list(CAPABILITIES)))
    sec = doc.get("seccomp", {})
    if "action" in sec:
        _parse_action(sec["action"], f"{source}: seccomp.action")
    if "bad_arch_action" in sec:
        _parse_action(sec["bad_arch_action"], f"{source}: seccomp.bad_arch_action",
                      bad_arch=True)
    if sec.get("default_action", "allow") not in ("allow", "deny"):
        raise ConfigError(f"expected \"allow\" (deny-list) or \"deny\" (allow-list), got "
                          f"{sec['default_action']!r}", origin=f"{source}: seccomp.default_action")
    for key in ("deny", "allow"):
        for i, entry in enumerate(sec.get(key, [])):
            check_entry(entry, f"{source}: seccomp.{key}[{i}]")
    for name, action in sec.get("actions", {}).items():
        check_entry(name, f"{source}: seccomp.actions.{name}")
        _parse_action(action, f"{source}: seccomp.actions.{name}")
    for key in ("read", "write", "execute"):
        for i, path in enumerate(doc.get("landlock", {}).get(key, [])):
            if not path.startswith("/"):
                raise ConfigError(f"path must be absolute: {path!r}",
                                  origin=f"{source}: landlock.{key}[{i}]")


def _parse_action(text: str, origin: str, bad_arch: bool = False) -> str:
    """plan/seccomp.parse_action, imported only when a profile names an action: the
    rule tables cost ~1 ms to import and the run path needs them only to compile."""
    from ..plan.seccomp import ACTIONS, BAD_ARCH_ACTIONS, parse_action

    return parse_action(text, origin, BAD_ARCH_ACTIONS if bad_arch else ACTIONS)


def check_entry(entry: str, origin: str) -> None:
    """A seccomp list entry: a known @group or something shaped like a syscall name."""
    if entry.startswith("@"):
        from ..plan.seccomp import GROUPS, group_hint

        if entry not in GROUPS:
            raise ConfigError(f"unknown seccomp group {entry!r}", origin=origin,
                              hint=group_hint(entry))
    elif not _syscall_shaped(entry):
        raise ConfigError(f"not a syscall name: {entry!r}", origin=origin,
                          hint="use a name like \"ptrace\" or a group like \"@mount\"")


def seccomp_policy(data: dict[str, Any], origins: Origins) -> SeccompPolicy:
    sec = data.get("seccomp", {})
    defaults = SeccompPolicy()
    return SeccompPolicy(
        enabled=sec.get("enabled", defaults.enabled),
        default_action=sec.get("default_action", defaults.default_action),
        deny=tuple(sec.get("deny", ())),
        allow=tuple(sec.get("allow", ())),
        action=sec.get("action", defaults.action),
        actions=tuple(sec.get("actions", {}).items()),
        allow_userns=sec.get("allow_userns", defaults.allow_userns),
        allow_nesting=data.get("namespaces", {}).get("nested", False),
        block_tty_injection=sec.get("block_tty_injection", defaults.block_tty_injection),
        bad_arch_action=sec.get("bad_arch_action", defaults.bad_arch_action),
        origins=origins.within("seccomp", sec),
    )


def landlock_policy(data: dict[str, Any], origins: Origins) -> LandlockPolicy:
    ll = data.get("landlock", {})
    defaults = LandlockPolicy()
    ports = lambda key: tuple(ll[key]) if key in ll else None  # noqa: E731
    return LandlockPolicy(
        enabled=ll.get("enabled", defaults.enabled),
        best_effort=ll.get("best_effort", defaults.best_effort),
        from_mounts=ll.get("from_mounts", defaults.from_mounts),
        read=tuple(ll.get("read", ())), write=tuple(ll.get("write", ())),
        execute=tuple(ll.get("execute", ())),
        connect_tcp=ports("connect_tcp"), bind_tcp=ports("bind_tcp"),
        scope_signals=ll.get("scope_signals", defaults.scope_signals),
        scope_abstract_unix=ll.get("scope_abstract_unix", defaults.scope_abstract_unix),
        origins=origins.within("landlock", ll),
    )


def capability_names(data: dict[str, Any]) -> tuple[str, ...]:
    """Kept capabilities, canonical and without duplicates, in order."""
    names: list[str] = []
    for name in data.get("capabilities", {}).get("keep", ()):
        if canonical(name) not in names:
            names.append(canonical(name))
    return tuple(names)
