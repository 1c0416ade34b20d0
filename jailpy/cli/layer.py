"""Parsed `jailpy run` options -> one profile layer, generically over the option table.

Each row of options.RUN_OPTIONS names the profile key it sets and how; this
module applies the rows in command-line order (mount ops keep their order,
as in bubblewrap; `--size`/`--perms` modify the next op). The result is one
more layer over the chosen profile, merged by the same rules as a profile
that `extends` it, and every value keeps its option as its origin so any
later error names the option to fix.
"""

from __future__ import annotations

from ..errors import ConfigError
from .options import RUN_OPTIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..profile.merge import Layer

SOURCE = "command line"
_BY_DEST = {opt.dest: opt for opt in RUN_OPTIONS}


def command_line_layer(order: list[str], values: "dict[str, Any]") -> "Layer":
    """The profile layer the options ask for; `order` lists their dests as given."""
    from ..profile.merge import Layer
    from ..profile.schema import validate_document

    doc: dict[str, dict[str, Any]] = {}
    origins: dict[str, list[str]] = {}
    consumed: dict[str, int] = {}  # occurrences of each repeatable option applied so far
    modifiers: dict[str, Any] = {}  # fields waiting for the next mount op
    modifier_flag = ""
    for dest in order:
        opt = _BY_DEST.get(dest)
        if opt is None or opt.key is None:
            continue
        if opt.kind == "multi":
            raw = values[dest][consumed.get(dest, 0)]
            consumed[dest] = consumed.get(dest, 0) + 1
            origin = opt.item_origin(raw)
        else:
            raw = values[dest]
            origin = opt.spelling(raw)
        if raw == "--" or (isinstance(raw, tuple) and "--" in raw):
            raise ConfigError(f"expected {opt.metavar} but got '--', the end of the options",
                              origin=opt.name,
                              hint=f"give {opt.name} its {opt.nargs} value(s) before '--': "
                                   f"{opt.name} {opt.metavar} -- CMD")
        value = opt.convert(raw, origin) if opt.convert else raw
        section, _, key = opt.key.partition(".")
        if opt.into == "modifier":  # key "mounts[].size": the field is the last part
            field = key.rpartition(".")[2]
            if field.endswith("[]"):  # "mounts[].lower[]": each occurrence adds one item
                modifiers.setdefault(field[:-2], []).append(value)
            else:
                modifiers[field] = value
            modifier_flag = modifier_flag or opt.name
            continue
        table = doc.setdefault(section, {})
        if opt.into == "set":
            table[key] = value
            origins[opt.key] = [origin]
        elif opt.into == "table":
            name, entry = value
            table.setdefault(key, {})[name] = entry
            origins[opt.key] = [opt.name]
        else:  # append, mount
            if opt.into == "mount":
                value, modifiers, modifier_flag = {**value, **modifiers}, {}, ""
            table.setdefault(key, []).append(value)
            origins.setdefault(opt.key, []).append(origin)
    if modifiers:
        raise ConfigError("must be followed by the op it modifies", origin=modifier_flag)
    _apply_implied(order, doc, origins)
    try:
        validate_document(doc, SOURCE)
    except ConfigError as err:
        err.origin = _option_of(err.origin or "", origins)
        raise
    return Layer(doc, SOURCE, origins)


def _apply_implied(order: list[str], doc: "dict[str, dict[str, Any]]",
                   origins: dict[str, list[str]]) -> None:
    """Keys an option implies (`--dbus-talk` -> desktop.dbus = true), unless an option
    set them; the origin is the first option, in command-line order, that implied it."""
    for dest in order:
        opt = _BY_DEST.get(dest)
        for path, value in (opt.implies.items() if opt else ()):
            if path not in origins:
                section, _, key = path.partition(".")
                doc.setdefault(section, {})[key] = value
                origins[path] = [origins[opt.key][0]]


def _option_of(origin: str, origins: dict[str, list[str]]) -> str:
    """'command line: filesystem.mounts[2].bind' -> '--bind SRC DEST', the option to fix."""
    path = origin.removeprefix(f"{SOURCE}: ")
    key, _, rest = path.partition("[")
    for name in (key, key.rsplit(".", 1)[0]):
        found = origins.get(name)
        if found:
            index = int(rest.split("]")[0]) if rest[:1].isdigit() else 0
            return found[index] if index < len(found) else found[0]
    return origin
