"""`jailpy run` desktop switches -> one [desktop] profile layer.

The switches themselves are rows of the option table in runopts.py (dest
`desktop_<key>`), read by both the fast parser and click. This module is
imported only when one of them was given.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Repeatable switches whose [desktop] key is spelled differently.
_KEY = {"app_dir": "app_dirs", "desktop_optional": "optional"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def desktop_layer(opts: "dict[str, Any]") -> "tuple[dict[str, Any], dict[str, list[str]]]":
    """The [desktop] table the switches ask for, and each key's origin (the flag)."""
    from ..errors import ConfigError

    section: dict[str, Any] = {}
    origins: dict[str, list[str]] = {}
    for dest, value in opts.items():
        if not dest.startswith("desktop_") or value in (None, ()):
            continue
        name = dest[len("desktop_"):]
        if name == "user_dir":
            continue
        if isinstance(value, bool):
            section[name] = value
            origins[f"desktop.{name}"] = [_flag(name) if value else f"--no-{_flag(name)[2:]}"]
        elif isinstance(value, tuple):
            key = _KEY.get(name, name)
            section[key] = list(value)
            origins[f"desktop.{key}"] = [f"{_flag(name)} {v}" for v in value]
        else:
            section[name] = value
            origins[f"desktop.{name}"] = [_flag(name)]
    user_dirs: dict[str, str] = {}
    for entry in opts.get("desktop_user_dir") or ():
        name, sep, mode = entry.partition("=")
        if not sep:
            raise ConfigError(f"expected NAME=MODE, got {entry!r}", origin="--user-dir",
                              hint="e.g. --user-dir downloads=rw")
        user_dirs[name] = mode
        origins[f"desktop.user_dirs.{name}"] = [f"--user-dir {entry}"]
    if user_dirs:
        section["user_dirs"] = user_dirs
    _check(section, origins)
    # A rule means the bus is wanted, unless the opposite was said explicitly.
    _implied(section, origins, "dbus", True,
             [k for k in section if k.startswith("dbus_") and not k.startswith("dbus_system")])
    _implied(section, origins, "dbus_system", "filtered",
             [k for k in section if k.startswith("dbus_system_")])
    return section, origins


def _implied(section: dict, origins: dict, key: str, value: object, because: list[str]) -> None:
    if because and key not in section:
        section[key] = value
        origins[f"desktop.{key}"] = [origins[f"desktop.{because[0]}"][0]]


def _check(section: "dict[str, Any]", origins: dict[str, list[str]]) -> None:
    """Validate each value with its flag as the origin (not 'command line: desktop...')."""
    from ..profile.desktop import check_value

    for key, value in section.items():
        if isinstance(value, list):
            for item, origin in zip(value, origins[f"desktop.{key}"]):
                check_value(key, item, origin)
        elif isinstance(value, dict):
            for name, mode in value.items():
                check_value(key, (name, mode), origins[f"desktop.{key}.{name}"][0])
        else:
            check_value(key, value, origins[f"desktop.{key}"][0])
