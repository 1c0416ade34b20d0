"""Learn mode, pure half: a strace log in, observations; observations in, a profile.

`jailpy learn` (cli/learn.py) runs the command under strace inside a
permissive sandbox; this module reads strace's log and turns what the
process tree did into a profile that `extends` the base (docs/learn.md).

Everything in the log came from inside a sandbox and is untrusted. strace
runs with `-xx` (every string as \\xHH escapes) and `-y` (file descriptors
and AT_FDCWD decorated with their path, escaped the same way), so a path can
hold quotes, newlines or "= 0" without ending a line, a string or a call: a
line that does not parse is counted and skipped, never guessed at. The only
host access here is lstat/readlink/listdir on the host paths the log names,
to find the symlinks a path went through and to count a directory's entries
for the collapse rule; nothing is opened for reading.
"""

from __future__ import annotations

import os
import re

from ..errors import ConfigError

#: Collapse rule: a directory is bound whole when at least this many of its
#: entries were used and they are at least COLLAPSE_SHARE of its entries.
COLLAPSE_MIN = 8
COLLAPSE_SHARE = 0.5
#: Mount kinds under which a path comes from the host at the same path.
_HOST_KINDS = ("bind", "ro-bind", "dev-bind")
#: Mount kinds that give the sandbox its own fresh filesystem.
_FRESH_KINDS = ("tmpfs", "proc", "dev", "mqueue")
#: Unix socket paths that are desktop services (reported as such).
_DESKTOP_SOCKETS = (("/tmp/.X11-unix/", "X11"), ("/wayland-", "Wayland"), ("/bus", "D-Bus"),
                    ("/pulse/", "PulseAudio"), ("/pipewire-", "PipeWire"))

#: strace -xx text: only \xHH escapes, so a quote or bracket inside never ends it.
_ESCAPED = r"((?:\\x[0-9a-f]{2})*)"
_LINE, _RESUMED, _CALL, _NAME, _HEX, _DECORATED, _RETURN, _PORT, _FAMILY, _SUN_PATH, \
    _INET_ADDR = (re.compile(pattern) for pattern in (
        r"(\d+) +(.*)",                                        # PID  rest
        r"<\.\.\. ([a-z0-9_]+) resumed>(.*)",
        r"([a-z_][a-z0-9_]*)\((.*)\) += (.*)",                   # name(args) = result
        r"([a-z_][a-z0-9_]*)\(",
        '"' + _ESCAPED + r'"(\.\.\.)?',                          # a string, maybe cut short
        r"(AT_FDCWD|-?\d+)<" + _ESCAPED + ">",                   # fd<path>
        r"(-?\d+|0x[0-9a-f]+|\?)(?:<" + _ESCAPED + r">)?(?: ([A-Z][A-Z0-9_]*))?",
        r"sin6?_port=htons\((\d+)\)",
        r"sa_family=(AF_[A-Z0-9]+)",
        r'sun_path=(@?)"' + _ESCAPED + '"',
        r'(?:inet_addr\(|inet_pton\(AF_INET6, )"' + _ESCAPED + '"'))
_SOCKET_INODE = re.compile(r"socket:\[(\d+)\]")
_SUPERSEDED = re.compile(r"\+\+\+ superseded by execve in pid (\d+) \+\+\+")
#: An execve that succeeded, whole or as the end of an unfinished one.
_EXECVE_DONE = re.compile(r"(?:execve\(.*|<\.\.\. execve resumed>.*)\) += 0")

# How each path-taking syscall is read: (path argument, dirfd argument or None, access).
# Access: read (must be visible), write (changed in place), create (entries of the
# parent directory change), exec, nofollow-read (the link itself, not its target).
_PATH_CALLS: dict[str, tuple[tuple[int, int | None, str], ...]] = {
    **{name: ((0, None, "read"),) for name in (
        "stat", "stat64", "statfs", "statfs64", "access", "chdir", "getxattr", "listxattr",
        "inotify_add_watch", "uselib")},
    **{name: ((0, None, "nofollow"),) for name in (
        "lstat", "lstat64", "readlink", "lgetxattr", "llistxattr")},
    **{name: ((1, 0, "read"),) for name in (
        "newfstatat", "fstatat64", "statx", "faccessat", "faccessat2", "name_to_handle_at")},
    "readlinkat": ((1, 0, "nofollow"),),
    **{name: ((0, None, "write"),) for name in (
        "truncate", "truncate64", "chmod", "chown", "lchown", "utime", "utimes", "setxattr",
        "lsetxattr", "removexattr", "lremovexattr")},
    **{name: ((1, 0, "write"),) for name in ("fchmodat", "fchmodat2", "fchownat", "utimensat",
                                             "futimesat")},
    **{name: ((0, None, "create"),) for name in ("mkdir", "rmdir", "unlink", "mknod", "creat")},
    **{name: ((1, 0, "create"),) for name in ("mkdirat", "unlinkat", "mknodat")},
    "rename": ((0, None, "create"), (1, None, "create")),
    "renameat": ((1, 0, "create"), (3, 2, "create")),
    "renameat2": ((1, 0, "create"), (3, 2, "create")),
    "link": ((0, None, "read"), (1, None, "create")),
    "linkat": ((1, 0, "read"), (3, 2, "create")),
    "symlink": ((1, None, "create"),),
    "symlinkat": ((2, 1, "create"),),
    "execve": ((0, None, "exec"),),
    "execveat": ((1, 0, "exec"),),
    "open": ((0, None, "open"),),
    "openat": ((1, 0, "open"),),
    "openat2": ((1, 0, "open"),),
}
_OPEN_FLAGS = {"open": 1, "openat": 2, "openat2": 2}
_ACCESS_MODE = {"access": 1, "faccessat": 2, "faccessat2": 2}
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_TRUNC", "O_APPEND")


def unhex(text: str) -> bytes:
    """The bytes of strace's \\xHH-escaped text (the only form -xx prints)."""
    return bytes.fromhex(text.replace("\\x", ""))


def split_arguments(text: str) -> list[str]:
    """Top-level arguments of a call; strings hold only \\xHH, so no quoting rules."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


class Observations:
    """What a traced process tree did; merged across runs with `update`.

    paths: host path -> set of accesses ("read", "write", "create", "exec",
    "list"); symlinks: link path -> its target; syscalls: names (this
    architecture's); tcp_connect/tcp_bind: ports; addresses: (family, address,
    port, what) as seen; unix: socket paths connected to; tried_write: paths
    a write to failed (read-only while learning); skipped: why lines or paths
    were left out, with counts.
    """

    def __init__(self) -> None:
        self.paths: dict[bytes, set[str]] = {}
        self.syscalls: set[str] = set()
        self.tcp_connect: set[int] = set()
        self.tcp_bind: set[int] = set()
        self.addresses: set[tuple[str, str, int, str]] = set()
        self.unix: set[bytes] = set()
        self.tried_write: set[bytes] = set()
        self.skipped: dict[str, int] = {}

    def use(self, path: bytes, access: str) -> None:
        self.paths.setdefault(path, set()).add(access)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


class TraceReader:
    """Reads one strace log (strace -f -q -xx -y -s 128 -o FILE) line by line.

    With `wrapped`, the first process is jailpy's own closer (cli/learn.py: a
    shell that closes the log's descriptor, then execs the command): its
    lines up to its exec of the command are the wrapper's, not the command's,
    and are left out.

    `unended` is the set of processes the log shows starting but not ending
    ("+++ exited with N +++", "+++ killed by SIG +++"): strace prints an end
    for every process and thread it traced, so a record with any left was
    cut short (strace killed) and says nothing about what they did next.
    """

    def __init__(self, cwd: str, wrapped: bool = False) -> None:
        self.seen = Observations()
        self.unended: set[str] = set()
        self.lines = 0
        self._pending: dict[str, str] = {}
        self._cwd: dict[str, bytes] = {}
        self._root_cwd = os.fsencode(cwd)
        self._sockets: dict[str, tuple[str, str]] = {}  # inode -> (family, type)
        self._wrapper: str | None = None
        self._wrapper_execs = 0 if wrapped else 2

    def feed(self, line: str) -> None:
        self.lines += 1
        match = _LINE.fullmatch(line.rstrip("\n"))
        if match is None:
            if line.strip():
                self.seen.skip("log lines that are not strace's")
            return
        pid, rest = match.groups()
        if rest.startswith("+++"):
            self.unended.discard(pid)
            superseded = _SUPERSEDED.fullmatch(rest)
            if superseded is not None:  # a thread's execve: it goes on as this pid
                self.unended.discard(superseded.group(1))
            return
        self.unended.add(pid)
        if self._in_wrapper(pid, rest):
            return
        resumed = _RESUMED.match(rest)
        if resumed is not None:
            name, tail = resumed.groups()
            rest = self._pending.pop(pid, name + "(") + tail
        elif rest.endswith(" <unfinished ...>"):
            self._pending[pid] = rest[:-len(" <unfinished ...>")]
            name = _NAME.match(rest)
            if name is not None:
                self.seen.syscalls.add(name.group(1))
            return
        if rest.startswith("---"):
            return
        call = _CALL.fullmatch(rest)
        if call is None:
            name = _NAME.match(rest)
            if name is not None:  # a call that never returned (exit, execve of a dying tree)
                self.seen.syscalls.add(name.group(1))
            else:
                self.seen.skip("log lines that are not strace's")
            return
        name, arguments, result = call.groups()
        self.seen.syscalls.add(name)
        returned = _RETURN.match(result)
        if returned is None:
            self.seen.skip("calls with an unreadable result")
            return
        value, decoration, error = returned.groups()
        ok = not value.startswith("-") and value != "?"
        try:
            self._call(pid, name, split_arguments(arguments), ok, decoration, error)
        except (ValueError, IndexError):
            self.seen.skip("calls with unreadable arguments")

    @property
    def started(self) -> bool:
        """Whether the command itself was executed (the closer got that far)."""
        return self._wrapper_execs >= 2

    def _in_wrapper(self, pid: str, rest: str) -> bool:
        """Whether this line is the closer's own: the first process's, before the
        second execve that succeeded (its own exec, then the command's)."""
        if self._wrapper_execs >= 2:
            return False
        if self._wrapper is None:
            self._wrapper = pid
        if pid != self._wrapper:  # not the closer (which forks nothing): strace traced it
            return False
        if _EXECVE_DONE.fullmatch(rest) is not None:
            self._wrapper_execs += 1
        return self._wrapper_execs < 2

    def _call(self, pid: str, name: str, args: list[str], ok: bool, decoration: str | None,
              error: str | None) -> None:
        for arg in args:  # every AT_FDCWD<...> tells this process's cwd
            fd = _DECORATED.match(arg)
            if fd is not None and fd.group(1) == "AT_FDCWD":
                self._cwd[pid] = unhex(fd.group(2))
                break
        if name in _PATH_CALLS:
            self._paths(pid, name, args, ok, decoration, error)
        elif name == "getdents64" or name == "getdents":
            fd = _DECORATED.match(args[0])
            if ok and fd is not None:
                self.seen.use(unhex(fd.group(2)), "list")
        elif name == "fchdir" and ok:
            fd = _DECORATED.match(args[0])
            if fd is not None:
                self._cwd[pid] = unhex(fd.group(2))
        elif name == "socket" and ok and decoration is not None:
            inode = _SOCKET_INODE.search(unhex(decoration).decode("ascii", "replace"))
            if inode is not None and len(args) >= 2:
                self._sockets[inode.group(1)] = (args[0], args[1].split("|")[0])
        elif name in ("connect", "bind", "sendto", "sendmsg") and len(args) >= 2:
            self._address(name, args, ok or error == "EINPROGRESS")

    def _absolute(self, pid: str, args: list[str], path_arg: int, dirfd_arg: int | None
                  ) -> bytes | None:
        string = _HEX.fullmatch(args[path_arg])
        if string is None or string.group(2):  # not a string, or truncated
            return None
        path = unhex(string.group(1))
        if path.startswith(b"/"):
            return path
        base = self._cwd.get(pid, self._root_cwd)
        if dirfd_arg is not None:
            fd = _DECORATED.match(args[dirfd_arg])
            if fd is None:
                return None
            base = unhex(fd.group(2))
        return os.path.join(base, path) if path else base  # "" + AT_EMPTY_PATH: the fd

    def _paths(self, pid: str, name: str, args: list[str], ok: bool, decoration: str | None,
               error: str | None) -> None:
        for path_arg, dirfd_arg, access in _PATH_CALLS[name]:
            path = self._absolute(pid, args, path_arg, dirfd_arg)
            if path is None:
                self.seen.skip("paths strace could not show in full")
                continue
            if not path.startswith(b"/"):  # an fd that is no file (pipe:[...], socket:[...])
                continue
            if name in _ACCESS_MODE and "W_OK" in args[_ACCESS_MODE[name]]:
                access = "write"  # asks whether it may write: the answer must stay yes
            if access == "open":
                flags = args[_OPEN_FLAGS.get(name, 1)] if name != "creat" else "O_CREAT"
                access = ("create" if "O_CREAT" in flags else
                          "write" if any(f in flags for f in _WRITE_FLAGS) else "read")
            if ok:
                self.seen.use(path, access)
                if name in ("open", "openat", "openat2") and decoration is not None:
                    real = unhex(decoration)  # the resolved path of the new fd
                    if real.startswith(b"/") and real != path:
                        self.seen.use(real, access)
                if name == "chdir":
                    self._cwd[pid] = path
            elif error in ("EROFS", "EACCES", "EPERM") and access in ("write", "create"):
                self.seen.tried_write.add(path)

    def _address(self, name: str, args: list[str], ok: bool) -> None:
        text = args[1]
        family = _FAMILY.search(text)
        if family is None:
            return
        family_name = family.group(1)
        if family_name == "AF_UNIX":
            sun = _SUN_PATH.search(text)
            if sun is not None and ok and name == "connect":
                path = unhex(sun.group(2))
                self.seen.unix.add(b"@" + path if sun.group(1) else path)
                if not sun.group(1) and path.startswith(b"/"):
                    self.seen.use(path, "read")
            return
        port = _PORT.search(text)
        address = _INET_ADDR.search(text)
        if port is None or family_name not in ("AF_INET", "AF_INET6"):
            return
        number = int(port.group(1))
        shown = unhex(address.group(1)).decode("ascii", "replace") if address else "?"
        inode = _SOCKET_INODE.search(
            unhex(_DECORATED.match(args[0]).group(2)).decode("ascii", "replace")
            if _DECORATED.match(args[0]) else "")
        kind = self._sockets.get(inode.group(1), ("", ""))[1] if inode else ""
        what = name if ok else f"{name} (failed)"
        self.seen.addresses.add((family_name, shown, number, f"{what} {kind}".strip()))
        if ok and kind == "SOCK_STREAM":
            (self.seen.tcp_bind if name == "bind" else self.seen.tcp_connect).add(number)


def read_trace(lines, cwd: str, wrapped: bool = False) -> TraceReader:
    """Feed every line to a TraceReader; its `seen` holds the observations."""
    reader = TraceReader(cwd, wrapped)
    for line in lines:
        reader.feed(line)
    return reader


# --- host paths: symlinks on the way, and the path they lead to ------------------------

_MAX_LINKS = 40


def walk(path: str, follow_last: bool = True) -> tuple[str | None, list[tuple[str, str]]]:
    """The host's resolution of an absolute path, one component at a time.

    Returns (real path or None when some component does not exist, the
    symlinks passed on the way as (link, target)). Only lstat and readlink.
    """
    links: list[tuple[str, str]] = []
    pending = [part for part in path.split("/") if part]
    done = "/"
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            done = os.path.dirname(done)
            continue
        candidate = os.path.join(done, part)
        try:
            is_link = os.path.islink(candidate)
            if not is_link and not os.path.lexists(candidate):
                return None, links
        except (OSError, ValueError):
            return None, links
        if is_link and (pending or follow_last):
            hops += 1
            if hops > _MAX_LINKS:
                return None, links
            target = os.readlink(candidate)
            links.append((candidate, target))
            pending = [p for p in target.split("/") if p] + pending
            if target.startswith("/"):
                done = "/"
            continue
        done = candidate
    return done, links


# --- what the base profile already shows ---------------------------------------------


def _under(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


class BaseView:
    """Where a path comes from in a sandbox built from a list of mount ops.

    `source(path)` is ("host", writable) when the path is the host's own (a
    bind whose source maps it to the same path), (kind, True) for a fresh
    filesystem (tmpfs, proc, dev), ("symlink", target) for a symlink op at
    exactly that path, and None when nothing shows it (the root tmpfs).
    """

    def __init__(self, ops) -> None:
        self.ops = [op for op in ops if op.kind in _HOST_KINDS + _FRESH_KINDS
                    or op.kind in ("symlink", "remount-ro")]

    def source(self, path: str):
        found = None
        readonly_after = False
        for op in self.ops:
            if op.kind == "symlink":
                if op.dest == path:
                    found, readonly_after = ("symlink", op.source), False
                continue
            if not _under(path, op.dest):
                continue
            if op.kind == "remount-ro":
                readonly_after = True
                continue
            readonly_after = False
            if op.kind in _FRESH_KINDS:
                found = (op.kind, True)
            else:
                rest = path[len(op.dest.rstrip("/")):]
                same = (op.source or op.dest).rstrip("/") + rest == path
                found = ("host", op.kind != "ro-bind") if same else ("elsewhere", False)
        if found and readonly_after and found[0] in ("host",) + _FRESH_KINDS:
            return found[0], False
        return found


# --- the learned profile -------------------------------------------------------------


class Learned:
    """The content of a learned profile, before it is written: what to bind (path ->
    "ro"/"rw", with why), symlinks to recreate, scratch tmpfs directories, allowed
    syscalls, TCP ports, notes. Built from observations, or read back from a profile
    this module wrote (for --merge), and merged with `update`."""

    def __init__(self) -> None:
        self.binds: dict[str, tuple[str, str]] = {}   # path -> (mode, why)
        self.symlinks: dict[str, str] = {}
        self.tmpfs: dict[str, str] = {}              # dir -> why
        self.dirs: dict[str, str] = {}               # empty directories to create -> why
        self.syscalls: set[str] = set()
        self.tried_denied: set[str] = set()
        self.tcp_connect: set[int] = set()
        self.tcp_bind: set[int] = set()
        self.inet_used = False
        #: Whether the command created files (open with O_CREAT counts).
        self.created = False
        self.notes: list[str] = []
        self.runs: list[str] = []

    def bind(self, path: str, mode: str, why: str) -> None:
        old = self.binds.get(path)
        if old is None or (old[0] == "ro" and mode == "rw"):
            self.binds[path] = (mode, why)

    def update(self, other: "Learned") -> None:
        for path, (mode, why) in other.binds.items():
            self.bind(path, mode, why)
        self.symlinks.update(other.symlinks)
        self.tmpfs.update(other.tmpfs)
        self.dirs.update(other.dirs)
        self.syscalls |= other.syscalls
        self.tried_denied |= other.tried_denied
        self.tcp_connect |= other.tcp_connect
        self.tcp_bind |= other.tcp_bind
        self.inet_used = self.inet_used or other.inet_used
        self.created = self.created or other.created
        self.notes += [n for n in other.notes if n not in self.notes]
        self.runs += other.runs


def _printable(path: str) -> bool:
    """A path a profile can name: no control characters, no undecodable bytes."""
    return all(ch.isprintable() and not 0xDC80 <= ord(ch) <= 0xDCFF for ch in path)


def _ancestors(path: str):
    while path != "/":
        path = os.path.dirname(path)
        yield path


def learn(seen: Observations, base_ops, learn_ops, protected: tuple[str, ...],
          default_denied: frozenset[str]) -> Learned:
    """Observations -> Learned, given the base's mount ops (what is already shown),
    the learn run's own ops (which paths were the host's and which scratch), and the
    directories never to bind whole (/, the home directory)."""
    out = Learned()
    base, during = BaseView(base_ops), BaseView(learn_ops)
    needs: dict[str, str] = {}
    dirs: set[str] = set()
    why: dict[str, str] = {}
    unprintable = 0
    # A write the record shows landed where the learn run was writable (its
    # binds of the working directory and --writable). The host path it leads
    # to is only found after the run, through symlinks the command could have
    # changed since: one that now leads anywhere the learn run kept read-only
    # (the home directory's dotfiles) was not where the command wrote, and
    # binding it read-write would hand the command, in the verifying run and
    # every later one, a write it never had.
    retargeted = 0
    for raw, accesses in sorted(seen.paths.items()):
        path = os.fsdecode(raw)
        if not _printable(path):
            unprintable += 1
            continue
        path = os.path.normpath(path) if ".." not in path.split("/") else path
        where = during.source(path)
        if where is not None and where[0] in _FRESH_KINDS:
            _scratch(out, base, path, where[0], accesses)
            continue
        creating = "create" in accesses
        real, links = walk(path, follow_last=accesses != {"nofollow"} and not creating)
        for link, target in links:
            out.symlinks.setdefault(link, target)
        if real is None and not creating:
            continue  # gone before the end (or never there): nothing to show
        targets: list[tuple[str, str, str]] = []
        if creating:
            parent, _ = walk(os.path.dirname(path))
            if parent is not None and parent not in protected:
                targets.append((parent, "rw", "entries created or removed here"))
            elif real is not None:  # never the home directory whole: the entry itself
                targets.append((real, "rw", "created in a directory not bound whole"))
        if real is not None and "write" in accesses:
            targets.append((real, "rw", "written"))
        elif real is not None and accesses - {"create"}:
            if os.path.isdir(real) and ("list" not in accesses or real in protected
                                        or _depth(real) < 2):
                dirs.add(real)  # only looked at: it must exist, its entries need not
            else:
                kind = ("executed" if "exec" in accesses else
                        "listed, so bound whole" if "list" in accesses else "read")
                targets.append((real, "ro", kind))
        for target, mode, reason in targets:
            if mode == "rw" and during.source(target) != ("host", True):
                retargeted += 1
                continue
            shown = base.source(target)
            if shown is not None and shown[0] == "host" and (mode == "ro" or shown[1]):
                continue
            if shown is not None and shown[0] in _FRESH_KINDS and mode == "rw" and \
                    during.source(target) is not None and during.source(target)[0] in _FRESH_KINDS:
                continue
            if needs.get(target) != "rw":
                needs[target] = mode
                why[target] = reason
    if retargeted:
        out.notes.append(f"{retargeted} writes led, on the host after the run, to paths that were "
                         "read-only while learning (a symlink on the way changed): not bound")
    if unprintable:
        out.notes.append(f"{unprintable} paths with control characters or undecodable bytes "
                         "were left out (a profile cannot name them)")
    _collapse(needs, why, protected)
    for path in sorted(needs, key=lambda p: p.split("/")):
        out.bind(path, needs[path], why[path])
    for path in sorted(dirs):
        shown = base.source(path)
        if (shown is None or shown[0] == "elsewhere") and path not in needs and not any(
                _under(bound, path) or _under(path, bound) for bound in needs):
            out.dirs[path] = "looked at (stat, open), its entries were not used"
    for link in list(out.symlinks):
        shown = base.source(link)
        if shown is not None and shown[0] in ("host", "symlink"):
            del out.symlinks[link]
    names = {n for n in seen.syscalls if n.replace("_", "a").isalnum()}
    out.tried_denied = names & default_denied
    out.syscalls = names - default_denied
    out.tcp_connect, out.tcp_bind = set(seen.tcp_connect), set(seen.tcp_bind) - {0}
    out.inet_used = bool(seen.addresses)
    out.created = any("create" in accesses for accesses in seen.paths.values())
    for path in sorted(seen.tried_write)[:20]:
        out.notes.append(f"tried to write {os.fsdecode(path)!r}, read-only while learning "
                         "(learn --writable PATH to let it)")
    for why_skipped, count in sorted(seen.skipped.items()):
        out.notes.append(f"{count} {why_skipped} were skipped")
    for family, address, port, what in sorted(seen.addresses):
        out.notes.append(f"network: {what} {family} {address} port {port}")
    for sock in sorted(seen.unix):
        name = os.fsdecode(sock)
        kind = next((label for needle, label in _DESKTOP_SOCKETS if needle in name), None)
        if kind is not None:
            out.notes.append(f"desktop socket ({kind}) used: {name!r}; see [desktop] in "
                             "jailpy-profile(5) for the filtered way to give it")
        elif name.startswith("@"):
            out.notes.append(f"abstract unix socket used: {name!r}")
    return out


def _scratch(out: Learned, base: BaseView, path: str, kind: str, accesses: set[str]) -> None:
    """A path on one of the learn run's fresh filesystems: the base must give the same."""
    shown = base.source(path)
    if shown is not None and shown[0] == kind:
        return
    if kind == "tmpfs" and accesses & {"write", "create"}:
        top = "/" + path.strip("/").split("/")[0]
        for candidate in ("/tmp", "/var/tmp", "/dev/shm", top):
            if _under(path, candidate):
                out.tmpfs.setdefault(candidate, "scratch space written while learning")
                return
    elif kind in ("proc", "dev"):
        note = f"the base has no {kind} mount at /{kind}, which the command used"
        if note not in out.notes:
            out.notes.append(note)


def _collapse(needs: dict[str, str], why: dict[str, str], protected: tuple[str, ...]) -> None:
    """Bind a directory whole where COLLAPSE_MIN or more of its entries, and at least
    COLLAPSE_SHARE of them, were used; never the protected directories nor any
    directory less than two levels deep."""
    changed = True
    while changed:
        changed = False
        children: dict[str, list[str]] = {}
        for path in needs:
            children.setdefault(os.path.dirname(path), []).append(path)
        for parent, used in sorted(children.items(), key=lambda item: -_depth(item[0])):
            if parent in protected or _depth(parent) < 2 or not used:
                continue
            try:
                total = len(os.listdir(parent))
            except OSError:
                continue
            many = len(used) >= COLLAPSE_MIN and len(used) >= COLLAPSE_SHARE * total
            if not many:
                continue
            mode = "rw" if any(needs[p] == "rw" for p in used) or needs.get(parent) == "rw" \
                else "ro"
            for path in used:
                del needs[path]
            needs[parent] = mode
            why[parent] = f"{len(used)} of its {total} entries used (collapse rule)"
            changed = True
            break
    for path in list(needs):  # shown by a bound ancestor with the same or more access
        if any(needs.get(up) == "rw" or (up in needs and needs[path] == "ro")
               for up in _ancestors(path)):
            del needs[path]


# --- the profile text, and reading it back for --merge ------------------------------

MARKER = "jailpy learn: a learned profile (docs/learn.md)"
COLLAPSE_RULE = (f"collapse rule: a directory is bound whole when at least {COLLAPSE_MIN} of "
                 f"its entries, and at least {int(COLLAPSE_SHARE * 100)}% of them, were used "
                 "(never /, the home directory or a top-level directory)")
#: What exec and exit need whatever was observed (besides plan.seccomp.EXEC_MINIMUM).
EXEC_AND_EXIT = ("execve", "exit", "exit_group", "rt_sigreturn", "brk", "mmap", "munmap",
                 "write")


#: Calls that do the same thing in another form: libc picks one by version and
#: architecture, so a profile allowing one allows the others.
COMPANIONS = (
    ("open", "openat"), ("stat", "lstat", "newfstatat", "statx", "fstat"),
    ("access", "faccessat", "faccessat2"), ("readlink", "readlinkat"), ("mkdir", "mkdirat"),
    ("unlink", "unlinkat", "rmdir"), ("rename", "renameat", "renameat2"),
    ("chmod", "fchmodat", "fchmod"), ("dup2", "dup3"), ("pipe", "pipe2"), ("poll", "ppoll"),
    ("select", "pselect6"), ("epoll_wait", "epoll_pwait"),
)
#: A program that creates files removes them on its error paths (a lock file it
#: gives up): creating implies the remove calls.
_CREATING = ("creat", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "link", "linkat")


def companions(observed: set[str], created: bool) -> dict[str, str]:
    """Calls allowed besides the observed ones, each with why."""
    extra: dict[str, str] = {}
    for family in COMPANIONS:
        seen = sorted(set(family) & observed)
        for name in family:
            if seen and name not in observed:
                extra[name] = f"another form of {seen[0]}"
    if "clone3" in observed and "clone" not in observed:
        # the learned profile answers clone3 with ENOSYS (the base's @namespaces guard
        # cannot read clone3's flags), so libc falls back to clone
        extra["clone"] = "clone3 gets ENOSYS in a sandbox; libc falls back to clone"
    if created or observed & set(_CREATING):
        for name in ("unlink", "unlinkat"):
            if name not in observed:
                extra[name] = "the command creates files, so it may remove them"
    return extra


def _one_line(text: str) -> str:
    """Text for a comment line: control characters (a newline in a command) escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def escape(path: str) -> str:
    return path.replace("$", "$$")  # profile strings expand ${VARS}; $$ is one dollar


def document(learned: Learned, base: str, protected: tuple[str, ...],
             base_network: str, native: set[str]) -> str:
    """The TOML text of a learned profile, with a comment on every line saying why."""
    from ..plan.seccomp import EXEC_MINIMUM
    from .emit import dumps

    needs = {path: mode for path, (mode, _) in learned.binds.items()}
    why = {path: reason for path, (_, reason) in learned.binds.items()}
    _collapse(needs, why, protected)
    mounts: list[dict[str, str]] = []
    notes: dict[str, str] = {}

    def add(entry: dict[str, str], reason: str) -> None:
        notes[f"filesystem.mounts[{len(mounts)}]"] = reason
        mounts.append(entry)

    for path, reason in sorted(learned.tmpfs.items()):
        add({"tmpfs": escape(path)}, reason)
    for path, reason in sorted(learned.dirs.items()):
        if not any(_under(bound, path) or _under(path, bound) for bound in needs):
            add({"dir": escape(path)}, reason)
    for path in sorted(needs, key=lambda p: p.split("/")):
        add({"bind" if needs[path] == "rw" else "ro-bind": escape(path)}, why[path])
    for link, target in sorted(learned.symlinks.items()):
        if not any(_under(link, bound) for bound in needs):
            add({"symlink": escape(target), "dest": escape(link)},
                "a symlink the command went through")
    extra = {name: why for name, why in companions(learned.syscalls, learned.created).items()
             if name in native}  # "open" is no syscall on aarch64
    allowed = sorted(learned.syscalls | set(EXEC_MINIMUM) | set(EXEC_AND_EXIT) | set(extra))
    for i, name in enumerate(allowed):
        notes[f"seccomp.allow[{i}]"] = ("observed" if name in learned.syscalls
                                        else extra.get(name, "what exec and exit need"))
    tried = sorted(learned.tried_denied)
    for i, name in enumerate(tried):
        notes[f"seccomp.deny[{i}]"] = "the command tried it; in @default, so it stays denied"
    network: dict[str, object] = {}
    if learned.inet_used:
        network["mode"] = base_network
        notes["network.mode"] = "the command used inet sockets (the base's mode)"
        for key, ports, verb in (("allow_connect_tcp", learned.tcp_connect, "connected to"),
                                 ("allow_bind_tcp", learned.tcp_bind, "bound")):
            network[key] = sorted(ports)
            notes[f"network.{key}"] = f"no TCP port {verb}: none allowed"
            for i in range(len(ports)):
                notes[f"network.{key}[{i}]"] = f"the command {verb} it"
    else:
        network["mode"] = "none"
        notes["network.mode"] = "the command connected and bound no inet socket"
    doc: dict[str, object] = {
        "extends": [base],
        "description": f"learned by jailpy learn from {len(learned.runs)} run(s) over {base}",
        "filesystem": {"mounts": mounts},
        "network": network,
        "seccomp": {"default_action": "deny", "allow": allowed, **({"deny": tried} if tried
                                                                   else {})},
    }
    notes["seccomp.default_action"] = "allow-list: only the syscalls below"
    header = [MARKER, "", COLLAPSE_RULE,
              "environment variables: not observable by tracing syscalls (getenv reads "
              "memory); the base's environment rules apply", ""]
    header += [f"run: {_one_line(run)}" for run in learned.runs]
    header += [f"note: {_one_line(note)}" for note in learned.notes]
    text = dumps(doc, comments=notes.get, header=header)
    return text


def read_learned(path: str) -> tuple[Learned, str | None]:
    """A profile this module wrote, as Learned (for --merge), and its base."""
    from .loader import parse_file

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", origin="--merge") from exc
    if MARKER not in head.split("\n", 1)[0]:
        raise ConfigError(f"{path} was not written by jailpy learn", origin="--merge",
                          hint="--merge adds to a profile learn wrote; use -o for a new one")
    doc = parse_file(path)
    out = Learned()
    for line in head.splitlines():
        if line.startswith("# run: "):
            out.runs.append(line[len("# run: "):])
        elif line.startswith("# note: "):
            out.notes.append(line[len("# note: "):])
    for entry in doc.get("filesystem", {}).get("mounts", []):
        if not isinstance(entry, dict):
            continue
        plain = {k: v.replace("$$", "$") for k, v in entry.items() if isinstance(v, str)}
        if "bind" in plain or "ro-bind" in plain:
            mode = "rw" if "bind" in plain else "ro"
            out.bind(plain.get("bind") or plain["ro-bind"], mode, "from an earlier run")
        elif "symlink" in plain and "dest" in plain:
            out.symlinks[plain["dest"]] = plain["symlink"]
        elif "dir" in plain:
            out.dirs[plain["dir"]] = "from an earlier run"
        elif "tmpfs" in plain:
            out.tmpfs[plain["tmpfs"]] = "from an earlier run"
    sec = doc.get("seccomp", {})
    out.syscalls = {n for n in sec.get("allow", []) if isinstance(n, str)}
    out.tried_denied = {n for n in sec.get("deny", []) if isinstance(n, str)}
    net = doc.get("network", {})
    out.inet_used = net.get("mode", "none") != "none"
    out.tcp_connect = {p for p in net.get("allow_connect_tcp", []) if isinstance(p, int)}
    out.tcp_bind = {p for p in net.get("allow_bind_tcp", []) if isinstance(p, int)}
    extends = doc.get("extends")
    base = extends[0] if isinstance(extends, list) and extends else extends
    return out, base if isinstance(base, str) else None
