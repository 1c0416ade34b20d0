"""The per-user cache directory, shared by the profile parse cache and the
compiled seccomp filters, and the trust rules for everything read from it.

What comes out of the cache decides what a sandbox enforces, so it is used
only when the directory and the file belong to the effective user and
nobody else can write them. The directory is opened with O_NOFOLLOW and the
file relative to its fd, so a link planted by someone else is never
followed. Any problem is "no cache", never an error: a cache only saves
time. Writes are atomic (a temporary file renamed into place), so a reader
never sees half an entry.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Mapping


def cache_dir(env: Mapping[str, str] | None = None) -> str | None:
    """$XDG_CACHE_HOME/jailpy, else ~/.cache/jailpy; None without an absolute base.

    As the XDG spec says, a relative $XDG_CACHE_HOME is ignored.
    """
    env = os.environ if env is None else env
    root = env.get("XDG_CACHE_HOME") or ""
    if not root.startswith("/"):
        root = os.path.join(env.get("HOME") or "", ".cache")
    return os.path.join(root, "jailpy") if root.startswith("/") else None


def _private(st: os.stat_result, kind: int) -> bool:
    return (stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def open_dir(path: str, create: bool) -> int | None:
    """An fd for the cache directory, if only its owner, this user, can write it."""
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError:
            return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if not _private(os.fstat(fd), stat.S_IFDIR):
        os.close(fd)
        return None
    return fd


def read_entry(dir_fd: int, name: str, limit: int | None = None) -> bytes | None:
    """The content of a private regular file `name` of at most `limit` bytes, or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _private(st, stat.S_IFREG) or (limit is not None and st.st_size > limit):
            return None
        return os.pread(fd, st.st_size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_entry(dir_fd: int, name: str, data: bytes) -> None:
    """Replace `name` with `data` atomically; on any failure leave things as they were."""
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
    except OSError:
        return
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
