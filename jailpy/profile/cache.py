"""A per-user cache of parsed profile files for `jailpy run`.

Parsing TOML means importing tomllib (and datetime, which it pulls in): a few
milliseconds of every `jailpy run`, for files that rarely change. This cache
keeps the parser's output (plain dicts, lists, strings, numbers) in one
marshal file, keyed on each profile's path and (device, inode, size,
mtime_ns, ctime_ns). Everything after parsing (validation, expansion,
merging) still runs every time, so the cache cannot make a profile mean
something else than its text, and it does not depend on jailpy's version.

Trust: the cache lives in $XDG_CACHE_HOME/jailpy (default ~/.cache/jailpy),
and is used only when that directory and the file are owned by the
effective user and writable by nobody else (jailpy/usercache.py). A file
changed within the last two seconds is not cached (its mtime might not
change again on the next edit, as with git's "racy clean" files). Any problem reading or writing the cache just means no cache.
JAILPY_NO_CACHE=1 turns it off.
"""

from __future__ import annotations

import marshal
import os
import time

from ..usercache import cache_dir, open_dir, read_entry, write_entry

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any

#: v2: entries are signed (usercache.py); a v1 file is never read.
_FILE = "profiles-v2.marshal"
_FORMAT = 1
_MAX_ENTRIES = 64
_RACY_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ParseCache:
    """Parsed documents by path; load lazily, save once at the end if changed."""

    def __init__(self, env: dict[str, str]):
        self.directory = cache_dir(env)
        self.entries: dict[str, tuple[StatKey, dict[str, Any]]] | None = None
        self.dirty = False

    def _open_dir(self, create: bool) -> int | None:
        return None if self.directory is None else open_dir(self.directory, create)

    def _load(self) -> dict[str, tuple[StatKey, dict[str, Any]]]:
        if self.entries is not None:
            return self.entries
        self.entries = {}
        dir_fd = self._open_dir(create=False)
        if dir_fd is None:
            return self.entries
        try:
            raw = read_entry(dir_fd, _FILE)
            data = marshal.loads(raw) if raw is not None else None
            if isinstance(data, dict) and data.get("format") == _FORMAT and \
                    isinstance(data.get("entries"), dict):
                self.entries = data["entries"]
        except (ValueError, EOFError, TypeError):
            self.entries = {}
        finally:
            os.close(dir_fd)
        return self.entries

    def get(self, path: str, key: StatKey) -> dict[str, Any] | None:
        entry = self._load().get(path)
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == key and \
                isinstance(entry[1], dict):
            return entry[1]
        return None

    def put(self, path: str, key: StatKey, doc: dict[str, Any]) -> None:
        if time.time_ns() - max(key[3], key[4]) < _RACY_NS:
            return
        try:
            marshal.dumps(doc)  # date/time values cannot be stored: skip such files
        except ValueError:
            return
        entries = self._load()
        entries.pop(path, None)
        while len(entries) >= _MAX_ENTRIES:
            entries.pop(next(iter(entries)))
        entries[path] = (key, doc)
        self.dirty = True

    def save(self) -> None:
        if not self.dirty or self.entries is None:
            return
        self.dirty = False
        dir_fd = self._open_dir(create=True)
        if dir_fd is None:
            return
        try:
            write_entry(dir_fd, _FILE, marshal.dumps({"format": _FORMAT,
                                                      "entries": self.entries}))
        except ValueError:
            pass  # something marshal cannot store: no cache rather than a broken one
        finally:
            os.close(dir_fd)


def enabled(env: dict[str, str]) -> bool:
    return env.get("JAILPY_NO_CACHE", "") in ("", "0")
