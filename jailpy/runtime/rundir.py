"""Per-run host directories that a killed jailpy cannot leave piling up.

What jailpy shares with its helpers on the host (the slirp4netns API socket,
pasta's readiness FIFO, the D-Bus proxy's sockets, the X cookie) lives in a
private directory per run, under one base per user (`session_base`:
$XDG_RUNTIME_DIR/jailpy, else /tmp/jailpy-UID). Beside each directory NAME
lies NAME.lock, flock()ed by the run that owns it. The lock belongs to the
open file, which every process of the run shares until it execs or exits, so
the kernel drops it when the last of them is gone, however the run ended
(SIGKILL included): a lock that can be taken marks a directory nobody owns.

    claim(path)       lock PATH.lock, then create PATH (0700); sweeps the base first
    release(path, fd) remove PATH and its lock (the normal end of a run)
    sweep(base)       remove every directory whose lock is free

The lock is taken before the directory exists and checked to still be the file
at PATH.lock afterwards, so a sweep running at the same moment in another
jailpy can never remove a directory that is in use.
"""

from __future__ import annotations

import fcntl
import os
import stat

from ..errors import SetupError

LOCK_SUFFIX = ".lock"


def private_base(base: str, origin: str) -> None:
    """Create `base` 0700, or check that the existing one is ours and private."""
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SetupError(f"cannot create {base}: {exc.strerror}", origin=origin) from exc
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise SetupError(f"{base} is not a private directory owned by uid {os.getuid()}",
                         origin=origin,
                         hint="remove it, or set XDG_RUNTIME_DIR to your own runtime directory")


def fresh_path(base: str, prefix: str) -> str:
    """An unused name under base, for claim(): PREFIXPID-RANDOM."""
    return os.path.join(base, f"{prefix}{os.getpid()}-{os.urandom(4).hex()}")


def claim(path: str, origin: str) -> int:
    """Create the private directory `path` (its parent must exist) and return the
    fd holding its lock; raises SetupError if it exists already."""
    sweep(os.path.dirname(path))
    lock_path = path + LOCK_SUFFIX
    try:
        lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SetupError(f"cannot create {lock_path}: {exc.strerror}", origin=origin) from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _same_file(lock, lock_path):  # a sweep took it in the instant before
            raise SetupError(f"{lock_path} was removed while jailpy created it",
                             origin=origin, hint="try again")
        os.mkdir(path, 0o700)
    except BlockingIOError:
        os.close(lock)
        raise SetupError(f"{lock_path} is locked by another process", origin=origin) from None
    except OSError as exc:
        os.close(lock)
        raise SetupError(f"cannot create {path}: {exc.strerror}", origin=origin) from exc
    except BaseException:
        os.close(lock)
        raise
    return lock


def release(path: str, lock: int) -> None:
    """Remove the directory, then its lock file; the lock goes with the last fd."""
    _remove(path)
    try:
        os.unlink(path + LOCK_SUFFIX)
    except OSError:
        pass
    os.close(lock)


def sweep(base: str) -> None:
    """Remove what runs that are gone left in base (see the module docstring)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if name.endswith(LOCK_SUFFIX):
            _sweep_locked(os.path.join(base, name))
        elif name + LOCK_SUFFIX not in names and _owner_gone(name):
            _remove(os.path.join(base, name))


def _sweep_locked(lock_path: str) -> None:
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its run is alive
        os.close(fd)
        return
    try:
        if _same_file(fd, lock_path):
            _remove(lock_path[:-len(LOCK_SUFFIX)])
            os.unlink(lock_path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _owner_gone(name: str) -> bool:
    """A directory without a lock (made by jailpy before locks, or a release cut
    short): its name starts with the pid that made it, after any prefix."""
    parts = name.split("-")
    pid = parts[-2] if len(parts) > 1 else ""
    if not (pid.isascii() and pid.isdigit()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _remove(path: str) -> None:
    """The directory and what is in it (helpers leave sockets and FIFOs, no trees)."""
    import shutil  # only when there is something to remove: start-up cost

    shutil.rmtree(path, ignore_errors=True)
