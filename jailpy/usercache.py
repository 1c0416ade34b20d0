"""jailpy's own per-user state: where it lives, and the trust rules for reading it.

The state is the profile directories, the cache directory (parsed profiles,
compiled seccomp filters), the wrappers and .desktop files `jailpy wrap`
wrote, and status files. Whatever a sandbox can write must never decide how
a later sandbox is built, and a sandbox runs as the same uid as its caller,
so ownership and mode prove nothing against it. Two layers stop it
(docs/security.md, "Trust boundary"):

  - `own_state()` names every such place; the planner hides them (or makes
    them read-only) in every sandbox, after every profile op;
  - every cache entry carries an HMAC-SHA256 under a per-user key kept in
    the cache directory of the passwd home (`key_dir`), which no sandbox
    can see: an entry written by anyone without the key is ignored, wherever
    $XDG_CACHE_HOME points.

The directory is opened with O_NOFOLLOW and files relative to its fd, so a
link planted by someone else is never followed. Any problem is "no cache",
never an error: a cache only saves time. Writes are atomic (a temporary file
created with O_EXCL, renamed into place), so a reader never sees half an
entry.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Mapping


def passwd_home(uid: int | None = None) -> str | None:
    """The user's home from the passwd entry: $HOME is the caller's to change."""
    import pwd

    try:
        home = pwd.getpwuid(os.geteuid() if uid is None else uid).pw_dir
    except KeyError:
        return None
    return home if home.startswith("/") else None


def _xdg_dir(env: Mapping[str, str], variable: str, default: str) -> str | None:
    """$VARIABLE/jailpy, else $HOME/DEFAULT/jailpy; a relative value is ignored (XDG spec)."""
    root = env.get(variable) or ""
    if not root.startswith("/"):
        root = os.path.join(env.get("HOME") or "", default)
    return os.path.join(root, "jailpy") if root.startswith("/") else None


def cache_dir(env: Mapping[str, str] | None = None) -> str | None:
    """$XDG_CACHE_HOME/jailpy, else ~/.cache/jailpy; None without an absolute base."""
    return _xdg_dir(os.environ if env is None else env, "XDG_CACHE_HOME", ".cache")


def config_dir(env: Mapping[str, str] | None = None) -> str:
    """$XDG_CONFIG_HOME/jailpy, else ~/.config/jailpy (/.config/jailpy without a home)."""
    env = os.environ if env is None else env
    return _xdg_dir(env, "XDG_CONFIG_HOME", ".config") or "/.config/jailpy"


def state_dir(env: Mapping[str, str], uid: int | None = None) -> str | None:
    """$XDG_STATE_HOME/jailpy when absolute, else ~/.local/state/jailpy of the passwd
    home: the run directories of `jailpy run --changes` live here."""
    state = env.get("XDG_STATE_HOME") or ""
    if state.startswith("/"):
        return os.path.join(state, "jailpy")
    home = passwd_home(uid)
    return None if home is None else os.path.join(home, ".local", "state", "jailpy")


def key_dir(uid: int | None = None) -> str | None:
    """Where the cache key lives: the passwd home's ~/.cache/jailpy, whatever the
    environment says, so a cache directory moved into a workspace is still checked
    against a key the sandbox never saw."""
    home = passwd_home(uid)
    return None if home is None else os.path.join(home, ".cache", "jailpy")


#: The list of files `jailpy wrap` wrote, one absolute path a line, in config_dir().
WRITTEN = "written"


def written_files(env: Mapping[str, str]) -> list[str]:
    """The wrappers and .desktop files jailpy wrote (see record_written)."""
    try:
        with open(os.path.join(config_dir(env), WRITTEN), "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.split("\n") if line.startswith("/")]


def record_written(env: Mapping[str, str], paths: list[str], forget: bool = False) -> None:
    """Add paths to (or, with `forget`, remove them from) the list of files every
    sandbox gets read-only (own_state); an empty list is removed."""
    known = written_files(env)
    if forget:
        kept = [p for p in known if p not in paths]
    else:
        kept = known + [p for p in paths if p not in known and "\n" not in p]
    if kept == known:
        return
    directory = config_dir(env)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if kept:
            write_file(fd, WRITTEN, "".join(p + "\n" for p in kept).encode(), 0o644)
        else:
            os.unlink(WRITTEN, dir_fd=fd)
    finally:
        os.close(fd)


def own_state(env: Mapping[str, str], uid: int, extra: tuple[str, ...] = ()
              ) -> list[tuple[str, str]]:
    """(path, "hide" | "read-only") for every piece of jailpy's state a sandbox
    could otherwise change: the profile, cache and state (--changes runs)
    directories by the environment and by the passwd home, the files jailpy wrote, and `extra` (a status file)."""
    home = passwd_home(uid)
    dirs = [config_dir(env), cache_dir(env), state_dir(env, uid)]
    if home is not None:
        dirs += [os.path.join(home, sub, "jailpy") for sub in (".config", ".cache", ".local/state")]
    state = [(d, "hide") for d in dirs if d]
    state += [(f, "read-only") for f in (*written_files(env), *extra)]
    package = os.path.dirname(os.path.abspath(__file__))
    if os.access(package, os.W_OK):  # jailpy itself, installed where this user may write
        state.append((package, "read-only"))
    return state


_sha256_type = None


def sha256(data: bytes = b""):
    """hashlib.sha256 without importing hashlib (and OpenSSL) on every run.

    The constructor is found once: Python does not remember a failed import,
    so trying _sha2 on 3.11 again would search sys.path on every call.
    """
    global _sha256_type
    if _sha256_type is None:
        try:
            from _sha2 import sha256  # Python 3.12+
        except ImportError:
            try:
                from _sha256 import sha256  # Python 3.11
            except ImportError:  # pragma: no cover - a build without the builtin module
                from hashlib import sha256
        _sha256_type = sha256
    return _sha256_type(data)


def _hmac(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) on the builtin hash: the hmac module imports hashlib."""
    block = key.ljust(64, b"\0")
    inner = sha256(bytes(b ^ 0x36 for b in block) + message).digest()
    return sha256(bytes(b ^ 0x5C for b in block) + inner).digest()


_KEY_FILE = "key"
_KEY: list[bytes | None] = []


def cache_key() -> bytes | None:
    """The per-user secret entries are signed with, created on first use; None when
    it cannot be kept privately (then there is no cache)."""
    if _KEY:
        return _KEY[0]
    key = None
    directory = key_dir()
    fd = open_dir(directory, create=True) if directory else None
    if fd is not None:
        try:
            key = _read_private(fd, _KEY_FILE, 64)
            if key is None:
                try:
                    write_file(fd, _KEY_FILE, os.urandom(32), 0o600, replace=False)
                except OSError:
                    pass  # another run made it first (EEXIST): read that one
                key = _read_private(fd, _KEY_FILE, 64)
        finally:
            os.close(fd)
    _KEY.append(key if key is not None and len(key) == 32 else None)
    return _KEY[0]


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
    """The content of cache entry `name` (at most `limit` bytes), or None when it is
    missing, not private, or not signed with this user's key for this name."""
    key = cache_key()
    if key is None:
        return None
    data = _read_private(dir_fd, name, None if limit is None else limit + 32)
    if data is None or len(data) < 32 or \
            _hmac(key, name.encode() + b"\0" + data[32:]) != data[:32]:
        return None
    return data[32:]


def _read_private(dir_fd: int, name: str, limit: int | None = None) -> bytes | None:
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
    """Replace cache entry `name` with `data`, signed; on any failure leave things as
    they were."""
    key = cache_key()
    if key is not None:
        try:
            write_file(dir_fd, name, _hmac(key, name.encode() + b"\0" + data) + data, 0o600)
        except OSError:
            pass


def write_file(dir_fd: int, name: str, data: bytes, mode: int, replace: bool = True) -> None:
    """Write `name` in dir_fd atomically and never through a link: a temporary file
    created with O_EXCL|O_NOFOLLOW, renamed over `name` (or linked to it when
    `replace` is false, which fails if `name` exists). OSError on failure."""
    tmp = f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dir_fd)
    try:
        with open(fd, "wb") as f:
            f.write(data)
        if replace:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
