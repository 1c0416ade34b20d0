"""The [desktop] profile section: value checks and conversion to the Policy.

Types and the system bus mode are checked by profile/schema.py from its
SCHEMA table; this module checks what they cannot say (D-Bus name syntax,
rule syntax, user directories, optional pieces) on each file before
layering, so an error names the file and key, and turns the merged section
into a `Desktop` policy.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError
from ..policy import DBusRules, Desktop, Origins

#: XDG user directories a profile may select, by their ${VARIABLE} name in lower case.
USER_DIRS = ("desktop", "downloads", "documents", "music", "pictures", "videos", "templates",
             "publicshare")
USER_DIR_MODES = ("rw", "ro", "none")
#: Pieces that `optional` may name.
OPTIONAL_PIECES = ("x11", "wayland", "pulseaudio", "pipewire", "gpu", "dbus", "dbus_system")

_ELEMENT = r"[A-Za-z_-][A-Za-z0-9_-]*"
#: A well-known bus name, optionally ending in ".*" (that name and everything below it).
_BUS_NAME = re.compile(rf"^{_ELEMENT}(\.{_ELEMENT})+(\.\*)?$")
#: [METHOD][@PATH], METHOD being "*", an interface (optionally ".*") or interface.method.
_RULE = re.compile(rf"^(\*|{_ELEMENT}(\.{_ELEMENT})*(\.\*)?)?(@/([A-Za-z0-9_/]*)(/\*)?)?$")

_NAME_KEYS = ("dbus_see", "dbus_talk", "dbus_own", "dbus_system_see", "dbus_system_talk")
_RULE_KEYS = ("dbus_call", "dbus_broadcast", "dbus_system_call", "dbus_system_broadcast")
_BOOL_KEYS = ("x11", "x11_untrusted", "wayland", "pulseaudio", "pipewire", "dbus", "gpu",
              "fonts", "themes", "locale")


def _suggestion(value: str, choices: tuple[str, ...]) -> str:
    from ..errors import suggest

    return suggest(value, choices) or f"choose one of {', '.join(choices)}"


def check_bus_name(name: str, origin: str) -> None:
    if len(name) > 255 or not _BUS_NAME.match(name):
        raise ConfigError(f"not a D-Bus well-known name: {name!r}", origin=origin,
                          hint="use a dotted name like org.example.App, or org.example.* "
                          "for a name and everything below it")


def check_rule(entry: str, origin: str) -> None:
    name, sep, rule = entry.partition("=")
    if not sep:
        raise ConfigError(f"expected NAME=RULE, got {entry!r}", origin=origin,
                          hint="e.g. org.freedesktop.portal.*=* or "
                          "org.example.App=org.example.App.Ping@/org/example")
    check_bus_name(name, origin)
    if not rule or not _RULE.match(rule):
        raise ConfigError(f"bad D-Bus rule {rule!r} for {name}", origin=origin,
                          hint="a rule is [METHOD][@PATH]: '*', an interface (optionally "
                          "ending in .*) or interface.method, then @/object/path (optionally "
                          "ending in /*)")


def check_value(key: str, value: Any, origin: str) -> None:
    """Check one value of a [desktop] key (one list item, one user_dirs entry)."""
    if key in _NAME_KEYS:
        check_bus_name(value, origin)
    elif key in _RULE_KEYS:
        check_rule(value, origin)
    elif key == "user_dirs":
        name, mode = value
        if name not in USER_DIRS:
            raise ConfigError(f"unknown user directory {name!r}", origin=origin,
                              hint=_suggestion(name, USER_DIRS))
        if mode not in USER_DIR_MODES:
            raise ConfigError(f"expected rw, ro or none for {name}, got {mode!r}", origin=origin)
    elif key == "optional" and value not in OPTIONAL_PIECES:
        raise ConfigError(f"{value!r} cannot be optional", origin=origin,
                          hint=_suggestion(value, OPTIONAL_PIECES))
    elif key == "app_dirs" and not value.startswith(("/", "${")):
        raise ConfigError(f"path must be absolute: {value!r}", origin=origin)


def check_section(section: dict[str, Any], origin: str) -> None:
    """Value checks for one file's [desktop] table (types are already checked)."""
    for key, value in section.items():
        if isinstance(value, list):
            for i, item in enumerate(value):
                check_value(key, item, f"{origin}.{key}[{i}]")
        elif isinstance(value, dict):
            for name, mode in value.items():
                check_value(key, (name, mode), f"{origin}.{key}.{name}")
        else:
            check_value(key, value, f"{origin}.{key}")


def to_desktop(section: dict[str, Any], origins: dict[str, Any]) -> Desktop:
    """The merged [desktop] table -> Desktop policy.

    origins: the merged document's Origins (or a plain mapping of the same shape).
    """
    if not section:
        return Desktop()
    origins = Origins(origins)

    def rules(prefix: str, own: bool) -> DBusRules:
        get = lambda k: tuple(dict.fromkeys(section.get(f"{prefix}_{k}", ())))  # noqa: E731
        return DBusRules(see=get("see"), talk=get("talk"), own=get("own") if own else (),
                         call=get("call"), broadcast=get("broadcast"))

    home_like = {"/", ""}
    for i, path in enumerate(section.get("app_dirs", [])):
        if path.rstrip("/") in home_like:
            raise ConfigError(f"app_dirs[{i}] would expose the whole filesystem: {path!r}",
                              origin=origins.item("desktop.app_dirs", i))
    keys = [*_BOOL_KEYS, "dbus_system", "user_dirs", "app_dirs", "optional", *_NAME_KEYS,
            *_RULE_KEYS, "dbus_own"]
    user_dirs = tuple(sorted(section.get("user_dirs", {}).items()))
    app_dirs = tuple(dict.fromkeys(p.rstrip("/") or "/" for p in section.get("app_dirs", ())))
    # Each entry keeps its own origin (a user profile's additions are its own,
    # not the shipped file's); duplicates keep the first.
    first = {}
    for i, path in enumerate(section.get("app_dirs", ())):
        first.setdefault(path.rstrip("/") or "/", origins.item("desktop.app_dirs", i))
    return Desktop(
        **{key: bool(section.get(key, False)) for key in _BOOL_KEYS},
        dbus_rules=rules("dbus", own=True),
        dbus_system=section.get("dbus_system", "none"),
        dbus_system_rules=rules("dbus_system", own=False),
        user_dirs=tuple((k, v) for k, v in user_dirs if v != "none"),
        app_dirs=app_dirs,
        optional=tuple(dict.fromkeys(section.get("optional", ()))),
        origins=(*((key, origins.of(f"desktop.{key}")) for key in dict.fromkeys(keys)
                   if key in section),
                 *((f"app_dirs[{i}]", first[path]) for i, path in enumerate(app_dirs))),
    )
