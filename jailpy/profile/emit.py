"""A small TOML writer for `jailpy profile show`, so jailpy needs no TOML-writing
dependency.

It writes what profiles contain (strings, booleans, integers, floats,
date/times, arrays, tables) in one fixed layout: top-level scalars, then one
[section] per table with its plain keys first and nested tables as
[section.key] sub-tables. Arrays with items are written one item per line, so
each item can carry a trailing comment; arrays of tables become inline
tables. An optional `comments` callback gives the comment for a key path
(`section.key`, `section.key[i]`, `section.key.name`), which is how origins
are shown. The output parses back (tomllib) to the same data; a property test
checks that.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

Comments = Callable[[str], "str | None"]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def key(name: str) -> str:
    """A key, bare when TOML allows it, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else string(name)


def string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def value(item: Any) -> str:
    """One value on one line (inline arrays and tables)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(x) for x in item) + "]"
    if isinstance(item, dict):
        if not item:
            return "{}"
        return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + " }"
    import datetime  # only profiles with date/time values pay for it

    if isinstance(item, (datetime.datetime, datetime.date, datetime.time)):
        return item.isoformat()
    raise TypeError(f"cannot write {type(item).__name__} as TOML")


def _comment(text: str | None) -> str:
    if not text:
        return ""
    if text.isprintable():  # the usual case, and a subset of what the loop keeps
        return "  # " + text
    safe = "".join(ch if ch == "\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F)
                   else f"\\u{ord(ch):04x}" for ch in text)
    return "  # " + safe


def _assignment(name: str, item: Any, path: str, comments: Comments | None) -> list[str]:
    note = comments or (lambda _: None)
    if isinstance(item, list) and item:
        lines = [f"{key(name)} = ["]
        lines += [f"  {value(x)},{_comment(note(f'{path}[{i}]'))}" for i, x in enumerate(item)]
        lines.append("]")
        return lines
    return [f"{key(name)} = {value(item)}{_comment(note(path))}"]


def _table(header: str, table: dict[str, Any], path: str,
           comments: Comments | None) -> list[str]:
    lines = [f"[{header}]"] if header else []
    nested = []
    for name, item in table.items():
        sub = f"{path}.{name}" if path else name
        if isinstance(item, dict):
            nested.append((name, item, sub))
        else:
            lines += _assignment(name, item, sub, comments)
    for name, item, sub in nested:
        lines.append("")
        lines += _table(f"{header}.{key(name)}" if header else key(name), item, sub, comments)
    return lines


def dumps(data: dict[str, Any], comments: Comments | None = None,
          header: list[str] | tuple[str, ...] = ()) -> str:
    """The TOML text for data; `header` lines are written first as comments."""
    lines = [f"# {line}" if line else "#" for line in header]
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if scalars:
        if lines:
            lines.append("")
        lines += _table("", scalars, "", comments)
    for name, table in data.items():
        if isinstance(table, dict):
            if lines:
                lines.append("")
            lines += _table(key(name), table, name, comments)
    return "\n".join(lines) + "\n"
