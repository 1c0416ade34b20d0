"""Parsers for the value syntaxes profiles share: sizes, durations, modes, paths.

They live apart from the schema and from the Policy conversion because both
use them: the schema checks a value's syntax per file (so the error names the
file it is in), the conversion turns the same text into numbers. Every parser
raises ConfigError, never ValueError or OverflowError, whatever the input.
"""

from __future__ import annotations

import math

from ..errors import ConfigError

_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_SUFFIXES = ("", "b", "ib")
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DIGITS = frozenset("0123456789")
_OCTAL = frozenset("01234567")
#: Sizes beyond this are typos, and would overflow the kernel's 64-bit fields.
MAX_SIZE = 2**62
#: One year: anything longer is not a meaningful sandbox limit.
MAX_DURATION = 365 * 86400.0

SIZE_HINT = 'use bytes or a number with K, M, G or T (e.g. "64M")'
DURATION_HINT = 'use seconds or a number with ms, s, m, h or d (e.g. "10m")'


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _split_number(text: str) -> tuple[str, str] | None:
    """"1.5 GiB" -> ("1.5", "GiB"); None unless it starts with digits[.digits].

    Hand-written rather than a regular expression: `re` is not otherwise
    imported when `jailpy run` starts."""
    end = 0
    while end < len(text) and (text[end] in _DIGITS or text[end] == "."):
        end += 1
    number = text[:end]
    whole, dot, fraction = number.partition(".")
    if not whole or not set(whole) <= _DIGITS or (dot and not fraction) or \
            not set(fraction) <= _DIGITS:
        return None
    return number, text[end:].strip()


def _size_scale(unit: str) -> int | None:
    """Bytes per unit for "", "B", "K", "KB", "KiB", ... (case-insensitive)."""
    unit = unit.lower()
    if unit in ("", "b"):
        return 1
    if unit[:1] in _SIZE_UNITS and unit[1:] in _SIZE_SUFFIXES:
        return _SIZE_UNITS[unit[:1]]
    return None


def parse_size(value: object, origin: str) -> int:
    """Bytes from 123, "64M", "2G", "512k", "1.5GiB" (binary units)."""
    split = _split_number(value.strip()) if isinstance(value, str) and value.isascii() else None
    scale = _size_scale(split[1]) if split is not None else None
    if _is_int(value):
        number = value
    elif split is not None and scale is not None:
        digits = split[0]
        number = int(digits) * scale if "." not in digits else int(float(digits) * scale)
    else:
        raise ConfigError(f"bad size {value!r}", origin=origin, hint=SIZE_HINT)
    if number < 0:  # type: ignore[operator]
        raise ConfigError(f"size must not be negative: {value!r}", origin=origin)
    if number > MAX_SIZE:  # type: ignore[operator]
        raise ConfigError(f"size too large: {value!r}", origin=origin, hint=SIZE_HINT)
    return number  # type: ignore[return-value]


def parse_duration(value: object, origin: str) -> float:
    """Seconds from 30, 1.5, "10m", "250ms", "2h"; must be positive and finite."""
    if _is_int(value) or isinstance(value, float):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str) and value.isascii() and \
            (split := _split_number(value.strip())) is not None and split[1] in _DURATION_UNITS:
        number, unit = split
        seconds = float(number) * _DURATION_UNITS[unit]
    else:
        raise ConfigError(f"bad duration {value!r}", origin=origin, hint=DURATION_HINT)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"duration must be positive: {value!r}", origin=origin,
                          hint=DURATION_HINT)
    if seconds > MAX_DURATION:
        raise ConfigError(f"duration too long: {value!r}", origin=origin,
                          hint="the longest accepted duration is 365d")
    return seconds


def parse_mode(value: object, origin: str) -> int:
    """File mode from an octal string ("0755", "1777") or an integer (0o755 = 493).

    An integer whose decimal digits are all octal digits (`mode = 755`) was almost
    certainly meant as octal; TOML reads it as decimal (755 = 0o1363, a sticky,
    setgid mode), so it is refused rather than applied."""
    if _is_int(value):
        mode = value
        if mode > 7 and set(str(mode)) <= _OCTAL:  # type: ignore[operator]
            raise ConfigError(f"mode {value} is a decimal number in TOML "
                              f"(= {oct(mode)})", origin=origin,  # type: ignore[arg-type]
                              hint=f'write the mode as a string, "0{value}", or as 0o{value}')
    elif isinstance(value, str) and 0 < len(value.strip()) <= 5 and \
            set(value.strip()) <= _OCTAL and (len(value.strip()) < 5 or value.strip()[0] == "0"):
        mode = int(value, 8)
    else:
        raise ConfigError(f'bad mode {value!r}: expected an octal string like "0755"',
                          origin=origin)
    if not 0 <= mode <= 0o7777:  # type: ignore[operator]
        raise ConfigError(f"mode out of range: {value!r}", origin=origin)
    return mode  # type: ignore[return-value]


def require_absolute(path: object, origin: str) -> str:
    """An absolute path, without NUL bytes; returned unchanged."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"path must be absolute: {path!r}", origin=origin,
                          hint="start it with / or a variable such as ${HOME}")
    if "\0" in path:
        raise ConfigError("path contains a NUL byte", origin=origin)
    return path


def normalize_path(path: str) -> str:
    """'/a//b/./c/' -> '/a/b/c' (no '..' resolution: that is the kernel's job)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)
