"""Parse a well-formed `jailpy run` command line without importing click.

Anything this parser is not sure about (--help, an unknown option, a missing
or malformed value) makes it step aside: the click command then parses the
same argv and produces its usual help or error message. Both parsers read
the one option table in runopts.py.
"""

from __future__ import annotations

from .options import RUN_OPTIONS, defaults

_BY_FLAG = {flag: opt for opt in RUN_OPTIONS for flag in opt.flags}
_OFF_FLAGS = {opt.off: opt for opt in RUN_OPTIONS if opt.off}


def parse_run(args: list[str]) -> tuple[dict, list[str], list[str]] | None:
    """(values by dest, order of dests as seen, command) or None to defer to click."""
    values = defaults()
    order: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if "=" in arg and arg.startswith("--"):
            return None  # --opt=value spelling: rare, let click handle it
        if arg in _OFF_FLAGS:
            values[_OFF_FLAGS[arg].dest] = False
            order.append(_OFF_FLAGS[arg].dest)
            i += 1
            continue
        opt = _BY_FLAG.get(arg)
        if opt is None:
            return None
        order.append(opt.dest)
        if opt.kind in ("flag", "switch"):
            values[opt.dest] = True
            i += 1
            continue
        raw = args[i + 1:i + 1 + opt.nargs]
        if len(raw) != opt.nargs:
            return None
        try:
            converted = tuple(opt.type(v) for v in raw)
        except ValueError:
            return None
        value = converted[0] if opt.nargs == 1 else converted
        if opt.kind == "multi":
            values[opt.dest] = (*values[opt.dest], value)
        else:
            values[opt.dest] = value
        i += 1 + opt.nargs
    command = args[i:]
    if not command:
        return None
    return values, order, command
