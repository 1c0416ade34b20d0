"""Build the sandbox root filesystem and switch into it.

Layout during set-up (all inside the sandbox's own mount namespace):

    /            a scratch tmpfs (the "base"), mounted over the host's /tmp
    /oldroot     the host's root, where bind sources are resolved
    /newroot     the sandbox root tmpfs, where destinations are resolved

Keeping the host root and the sandbox root as siblings means a destination
resolved with RESOLVE_IN_ROOT inside /newroot can never reach /oldroot, even
through a symlink planted in a bind source (`link -> /oldroot/etc`,
`link -> ../../..`): the walk is clamped to /newroot by the kernel. Mounts are
attached through file descriptors (open_tree/fsmount + move_mount), so the
object that was checked is the object that gets covered; no path is looked up
twice.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import SetupError
from ..linux import syscalls as sc
from ..policy import MountOp

_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
_BASE = "/tmp"

#: Device nodes the minimal /dev gets, bound from the host (mknod is refused in a userns).
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
              ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
#: procfs entries that stay read-only even for root inside (defence in depth).
_PROC_READONLY = ("sys", "sysrq-trigger", "irq", "bus")


def _is_glob(path: str) -> bool:
    """A glob in the last component (hide's only place for one)."""
    return any(ch in path.rpartition("/")[2] for ch in "*?[")


def _fail(op: MountOp, what: str, exc: OSError | None = None) -> SetupError:
    detail = f"{what}: {os.strerror(exc.errno)}" if exc and exc.errno else what
    return SetupError(detail, origin=op.origin or f"{op.kind} {op.dest}")


class _MountPointError(OSError):
    """Creating the file or directory to mount on failed (filename: the path inside)."""


class _fd:
    """`with _fd(os.open(...)) as fd:` closes fd on the way out (no contextlib import)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class RootBuilder:
    """Applies ordered mount ops to a fresh root, then pivots into it."""

    def __init__(self, new_pid_ns: bool = True, nested: bool = False) -> None:
        self.new_pid_ns = new_pid_ns
        self.nested = nested
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
        sc.mount("jailpy-base", _BASE, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755")
        os.mkdir(f"{_BASE}/newroot", 0o755)
        os.mkdir(f"{_BASE}/oldroot", 0o755)
        sc.mount("jailpy-root", f"{_BASE}/newroot", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV,
                 "mode=0755")
        os.chdir(_BASE)
        sc.pivot_root(".", "oldroot")
        os.chdir("/")
        self.host = os.open("/oldroot", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root = os.open("/newroot", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        #: (tmpfs upper, host upper dir) fds of size-limited overlays, for copy_out.
        self.copy_outs: list[tuple[int, int]] = []
        #: Mode of the parent directories the current op creates: 0755, or with
        #: private_parents (bwrap mode) derived from the op's mode (parent_mode).
        self.parent_mode = 0o755
        self.private_parents = False
        #: Scratch files made for data ops so far (_data_file names each by number).
        self._data_files = 0
        #: Directory listings for the globs of hide ops (_listing).
        self._listings: dict[str, tuple[str, ...]] = {}

    # -- path resolution -------------------------------------------------

    def open_host(self, path: str, flags: int = os.O_PATH) -> int:
        """Open a host path with the host's own view of absolute symlinks."""
        return sc.openat2(self.host, path, flags, sc.RESOLVE_IN_ROOT)

    def open_inside(self, path: str, flags: int = os.O_PATH) -> int:
        return sc.openat2(self.root, path, flags, _RESOLVE)

    def _parent_dir(self, path: str) -> tuple[int, str]:
        """Open (creating as needed) the parent directory of `path` inside the root."""
        parent, _, name = path.rstrip("/").rpartition("/")
        if not name:
            raise OSError(errno.EINVAL, "refusing to operate on /")
        return self.ensure_dir(parent or "/", self.parent_mode), name

    def ensure_dir(self, path: str, mode: int = 0o755) -> int:
        """mkdir -p inside the root, one component at a time, never leaving it."""
        try:
            return self.open_inside(path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            pass
        parent_fd, name = self._parent_dir(path)
        with _fd(parent_fd):
            try:
                os.mkdir(name, mode, dir_fd=parent_fd)
            except FileExistsError:
                pass  # a dangling symlink or a race: the open below decides
            except OSError as exc:
                raise _MountPointError(exc.errno, exc.strerror, path) from exc
        return self.open_inside(path, os.O_PATH | os.O_DIRECTORY)

    def ensure_file(self, path: str) -> int:
        """An existing file, or an empty one made to mount on (0444, as bwrap's)."""
        try:
            return self.open_inside(path)
        except FileNotFoundError:
            pass
        parent_fd, name = self._parent_dir(path)
        with _fd(parent_fd):
            try:
                fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY
                             | os.O_CLOEXEC, 0o444, dir_fd=parent_fd)
                os.close(fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _MountPointError(exc.errno, exc.strerror, path) from exc
        return self.open_inside(path)

    # -- mount helpers ---------------------------------------------------

    def _attach(self, mount_fd: int, dest_fd: int) -> None:
        with _fd(mount_fd), _fd(dest_fd):
            sc.move_mount(mount_fd, dest_fd)

    def _new_fs(self, fstype: str, options: dict[str, str | None], attrs: int) -> int:
        with _fd(sc.fsopen(fstype)) as ctx:
            for key, value in options.items():
                if value is None:
                    sc.fsconfig(ctx, sc.FSCONFIG_SET_FLAG, key)
                else:
                    sc.fsconfig(ctx, sc.FSCONFIG_SET_STRING, key, value)
            sc.fsconfig(ctx, sc.FSCONFIG_CMD_CREATE)
            return sc.fsmount(ctx, attrs)

    def mount_fs(self, dest: str, fstype: str, options: dict[str, str | None],
                 attrs: int) -> None:
        mount_fd = self._new_fs(fstype, options, attrs)
        try:
            dest_fd = self.ensure_dir(dest)
        except BaseException:
            os.close(mount_fd)
            raise
        self._attach(mount_fd, dest_fd)

    def bind(self, source: str, dest: str, readonly: bool, devices: bool,
             same_as: int | None = None) -> None:
        """Bind host `source` on dest; with `same_as` (an fd), only if source is the
        object open at that fd (checked on the very fd that is cloned)."""
        with _fd(self.open_host(source)) as src_fd:
            st = os.fstat(src_fd)
            if same_as is not None:
                expected = os.fstat(same_as)
                if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
                    raise SetupError(f"{source} is no longer what fd {same_as} is open on "
                                     "(renamed or replaced meanwhile)", origin=f"fd {same_as}")
            is_dir = stat.S_ISDIR(st.st_mode)
            tree = sc.open_tree(src_fd, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                                | sc.AT_EMPTY_PATH | sc.AT_RECURSIVE)
        try:
            attrs = sc.MOUNT_ATTR_NOSUID
            attrs |= 0 if devices else sc.MOUNT_ATTR_NODEV
            attrs |= sc.MOUNT_ATTR_RDONLY if readonly else 0
            # Only sets bits: locked nosuid/nodev/noexec of the source stay as they are.
            sc.mount_setattr(tree, attrs, recursive=True)
            dest_fd = self.ensure_dir(dest) if is_dir else self.ensure_file(dest)
        except BaseException:
            os.close(tree)
            raise
        self._attach(tree, dest_fd)

    def make_readonly(self, dest: str) -> None:
        """Make the mount tree at dest read-only: a read-only clone of it is
        attached over the very object that was cloned (one lookup of dest, so
        a symlink swapped in between cannot redirect the read-only copy)."""
        dest_fd = self.open_inside(dest)
        try:
            tree = sc.open_tree(dest_fd, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                                | sc.AT_EMPTY_PATH | sc.AT_RECURSIVE)
        except BaseException:
            os.close(dest_fd)
            raise
        try:
            sc.mount_setattr(tree, sc.MOUNT_ATTR_RDONLY, recursive=True)
        except BaseException:
            os.close(tree)
            os.close(dest_fd)
            raise
        self._attach(tree, dest_fd)

    def _reopen_root(self) -> None:
        """An op on / stacked a new mount over the sandbox root: later ops and
        the final pivot must use that mount, found by looking /newroot up again."""
        fresh = os.open("/newroot", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        os.close(self.root)
        self.root = fresh

    # -- op kinds ----------------------------------------------------------

    def apply(self, op: MountOp) -> None:
        self.parent_mode = parent_mode(op.mode) if self.private_parents else 0o755
        try:
            getattr(self, "_op_" + op.kind.replace("-", "_"))(op)
            if op.dest == "/":
                self._reopen_root()
        except SetupError:
            raise
        except FileNotFoundError as exc:
            if op.optional:
                return
            what = ("source does not exist" if op.source and exc.filename == op.source
                    else f"{exc.filename or op.dest}: no such file or directory")
            raise _fail(op, what) from exc
        except _MountPointError as exc:
            parent = os.path.dirname(exc.filename.rstrip("/")) or "/"
            why = ("is read-only in the sandbox" if exc.errno == errno.EROFS
                   else f"refuses it: {os.strerror(exc.errno)}" if exc.errno else "refuses it")
            raise SetupError(f"cannot create the mount point {exc.filename}: {parent} {why}",
                             origin=op.origin or f"{op.kind} {op.dest}",
                             hint=f"mount on a path that exists there, or first give {parent} "
                                  f"a writable layer (e.g. --tmpfs {parent}, which hides what "
                                  f"was in it)") from exc
        except OSError as exc:
            raise _fail(op, f"{op.kind} failed", exc) from exc

    def _op_bind(self, op: MountOp) -> None:
        self._bind_op(op, readonly=False, devices=False)

    def _op_ro_bind(self, op: MountOp) -> None:
        self._bind_op(op, readonly=True, devices=False)

    def _op_dev_bind(self, op: MountOp) -> None:
        self._bind_op(op, readonly=False, devices=True)

    def _bind_op(self, op: MountOp, readonly: bool, devices: bool) -> None:
        assert op.source is not None
        try:
            self.bind(op.source, op.dest, readonly, devices, op.source_fd)
        except FileNotFoundError as exc:
            exc.filename = op.source
            raise

    def _op_tmpfs(self, op: MountOp) -> None:
        options = {"mode": format(0o755 if op.mode is None else op.mode, "o")}
        if op.size is not None:
            options["size"] = str(op.size)
        self.mount_fs(op.dest, "tmpfs", options, sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV)

    def _op_proc(self, op: MountOp) -> None:
        if not self.new_pid_ns:
            # A procfs belongs to the pid namespace of whoever mounts it, and the
            # host's is owned by the host's user namespace: the kernel refuses a
            # fresh one here, so the host's /proc is bound instead.
            self.bind("/proc", op.dest, readonly=False, devices=False)
        else:
            hardened = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC
            self.mount_fs(op.dest, "proc", {}, hardened)
        # The kernel lets a user namespace mount a new procfs only while some
        # procfs in its mount namespace is fully visible (nothing mounted over
        # part of it). A nesting sandbox keeps /proc bare, as bwrap does: the
        # entries below are the host root's, which the sandbox's ids are not,
        # so the kernel's own permission checks refuse writes to them.
        for entry in () if self.nested else _PROC_READONLY:
            try:
                self.make_readonly(f"{op.dest}/{entry}")
            except FileNotFoundError:
                continue

    def _op_mqueue(self, op: MountOp) -> None:
        self.mount_fs(op.dest, "mqueue", {},
                      sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC)

    def _op_dev(self, op: MountOp) -> None:
        dev = op.dest.rstrip("/") or "/dev"
        self.mount_fs(dev, "tmpfs", {"mode": "0755"}, sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NOEXEC)
        for node in _DEV_NODES:
            self.bind(f"/dev/{node}", f"{dev}/{node}", readonly=False, devices=True)
        self.mount_fs(f"{dev}/pts", "devpts",
                      {"newinstance": None, "ptmxmode": "0666", "mode": "0620"},
                      sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NOEXEC)
        self.mount_fs(f"{dev}/shm", "tmpfs", {"mode": "1777"},
                      sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV)
        with _fd(self.open_inside(dev)) as dev_fd:
            for name, target in _DEV_LINKS:
                os.symlink(target, name, dir_fd=dev_fd)
        if os.isatty(0):
            self._bind_console(f"{dev}/console")

    def _bind_console(self, dest: str) -> None:
        """The caller's terminal (already our stdin) also appears as /dev/console,
        as on a real system. Found through the host's /proc, since fd 0 itself
        belongs to the host's mount namespace and cannot be cloned here. A
        convenience, not a protection: skipped when there is no such path."""
        try:
            tty = os.readlink("/oldroot/proc/self/fd/0")
        except OSError:
            return
        if tty.startswith("/dev/"):
            try:
                self.bind(tty, dest, readonly=False, devices=True)
            except OSError:
                return

    def _op_symlink(self, op: MountOp) -> None:
        """A symlink; one already there with the same target is fine (bwrap 0.9+)."""
        assert op.source is not None
        parent_fd, name = self._parent_dir(op.dest)
        with _fd(parent_fd):
            try:
                os.symlink(op.source, name, dir_fd=parent_fd)
            except FileExistsError:
                try:
                    existing = os.readlink(name, dir_fd=parent_fd)
                except OSError:
                    raise _fail(op, f"{op.dest} exists and is not a symlink") from None
                if existing != op.source:
                    raise _fail(op, f"{op.dest} exists and points to {existing}") from None

    def _op_dir(self, op: MountOp) -> None:
        """A directory, made with op.mode (default 0755); one that exists is kept as
        it is, mode and all (as bwrap's --dir)."""
        try:
            os.close(self.open_inside(op.dest, os.O_PATH | os.O_DIRECTORY))
            return
        except FileNotFoundError:
            pass
        mode = 0o755 if op.mode is None else op.mode
        os.close(self.ensure_dir(op.dest, mode))
        if op.mode is not None:
            self._chmod(op.dest, op.mode)  # the bits mkdir leaves out (setgid, sticky)

    def _op_file(self, op: MountOp) -> None:
        parent_fd, name = self._parent_dir(op.dest)
        mode = 0o644 if op.mode is None else op.mode
        with _fd(parent_fd):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=parent_fd)
        with _fd(fd):
            os.write(fd, (op.content or "").encode("utf-8", "surrogateescape"))
            os.fchmod(fd, mode)

    # -- overlays (docs/overlays.md) ----------------------------------------

    def _op_overlay(self, op: MountOp) -> None:
        assert op.upper is not None and op.work is not None
        if op.size is not None:
            # Size-limited: the writes go to a tmpfs of op.size and are copied to the
            # upper dir when the sandbox is gone (copy_out, docs/overlays.md).
            keep = self._host_dir(op, op.upper, os.O_RDONLY | os.O_DIRECTORY)
            try:
                scratch = self._scratch_overlay(op)
            except BaseException:
                os.close(keep)
                raise
            self.copy_outs.append((scratch, keep))
            return
        with _fd(self._host_dir(op, op.upper)) as upper, _fd(self._host_dir(op, op.work)) as work:
            self._overlay(op, {"upperdir": self._fd_path(upper), "workdir": self._fd_path(work)},
                          readonly=False)

    def _op_tmp_overlay(self, op: MountOp) -> None:
        os.close(self._scratch_overlay(op))

    def _scratch_overlay(self, op: MountOp) -> int:
        """Overlay op with its upper layer and overlayfs' work dir on a detached tmpfs
        of op.size: unreachable from anywhere but the overlay, gone with the sandbox
        unless kept open. Returns an fd for the tmpfs."""
        options = {"mode": "0755"}
        if op.size is not None:
            options["size"] = str(op.size)
        scratch = self._new_fs("tmpfs", options, sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV)
        try:
            os.mkdir("upper", 0o755, dir_fd=scratch)
            os.mkdir("work", 0o755, dir_fd=scratch)
            base = self._fd_path(scratch)
            self._overlay(op, {"upperdir": f"{base}/upper", "workdir": f"{base}/work"},
                          readonly=False)
        except BaseException:
            os.close(scratch)
            raise
        return scratch

    def _op_ro_overlay(self, op: MountOp) -> None:
        self._overlay(op, {}, readonly=True)

    def _host_dir(self, op: MountOp, path: str, flags: int = os.O_PATH | os.O_DIRECTORY) -> int:
        try:
            return self.open_host(path, flags)
        except FileNotFoundError as exc:
            raise _fail(op, f"{path}: no such directory") from exc
        except NotADirectoryError as exc:
            raise _fail(op, f"{path} is not a directory") from exc

    @staticmethod
    def _fd_path(fd: int) -> str:
        """A path naming exactly the object behind fd, for the options overlayfs takes
        as strings: each layer is opened once, in the host's view, and that very
        directory is what the kernel stacks (no second lookup, no escaping of ':' or ',')."""
        return f"/oldroot/proc/self/fd/{fd}"

    def _overlay(self, op: MountOp, layers: dict[str, str], readonly: bool) -> None:
        """Stack op.source over op.lower (host dirs) on op.dest inside the root.

        Unprivileged overlayfs (a mount in our user namespace) needs `userxattr`:
        its own metadata lives in user.overlay.* xattrs, and the kernel then keeps
        redirect_dir, metacopy and index off (they need trusted.* xattrs), which is
        what makes the upper layer plain files jailpy can review. nosuid and nodev
        are set on the mount like every bind's."""
        assert op.source is not None
        opened: list[int] = []
        try:
            for path in (op.source, *op.lower):
                opened.append(self._host_dir(op, path))
            options: dict[str, str | None] = {
                "lowerdir": ":".join(self._fd_path(fd) for fd in opened),
                **layers, "userxattr": None}
            attrs = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV
            mount_fd = self._new_fs("overlay", options,
                                    attrs | (sc.MOUNT_ATTR_RDONLY if readonly else 0))
        except OSError as exc:
            raise _fail(op, "cannot mount the overlay (see docs/overlays.md)", exc) from exc
        finally:
            for fd in opened:
                os.close(fd)
        try:
            dest_fd = self.ensure_dir(op.dest)
        except BaseException:
            os.close(mount_fd)
            raise
        self._attach(mount_fd, dest_fd)

    def _op_ro_bind_data(self, op: MountOp) -> None:
        """Cover dest with a read-only file holding op.content (jailpy's generated
        /etc/resolv.conf, /etc/hosts). Whatever is at dest, a host file bound
        read-write or a symlink, is covered and never written."""
        self._data_file(op, readonly=True)

    def _op_bind_data(self, op: MountOp) -> None:
        """bwrap's --bind-data: the same, writable; the file lives in the scratch
        tmpfs, so a host file at dest is covered, never written."""
        self._data_file(op, readonly=False)

    def _data_file(self, op: MountOp, readonly: bool) -> None:
        try:  # an existing file, or a symlink (covered itself, not followed)
            dest_fd = self.open_inside(op.dest, os.O_PATH | os.O_NOFOLLOW)
        except FileNotFoundError:
            dest_fd = self.ensure_file(op.dest)
        if stat.S_ISDIR(os.fstat(dest_fd).st_mode):
            os.close(dest_fd)
            raise _fail(op, f"{op.dest} is a directory")
        self._data_files += 1  # one scratch file each: "/a/b" and "/a_b" must not share
        self._cover_with_file(dest_fd, f"data{self._data_files}", op.content or "",
                              0o644 if op.mode is None else op.mode, readonly)

    def _cover_with_file(self, dest_fd: int, name: str, content: str, mode: int,
                         readonly: bool = True) -> None:
        """Attach a file of the scratch tmpfs (which lives as long as the bind does)
        holding `content` over dest_fd, read-only unless asked; closes dest_fd."""
        try:
            with _fd(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode)) as fd:
                os.write(fd, content.encode("utf-8", "surrogateescape"))
                os.fchmod(fd, mode)
            with _fd(os.open(name, os.O_PATH | os.O_CLOEXEC)) as src:
                tree = sc.open_tree(src, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                                    | sc.AT_EMPTY_PATH)
        except BaseException:
            os.close(dest_fd)
            raise
        try:
            sc.mount_setattr(tree, (sc.MOUNT_ATTR_RDONLY if readonly else 0) | sc.MOUNT_ATTR_NOSUID
                             | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC, recursive=False)
        except BaseException:
            os.close(tree)
            os.close(dest_fd)
            raise
        self._attach(tree, dest_fd)

    def _op_hide(self, op: MountOp) -> None:
        """Cover DEST, as firejail's blacklist does: a directory with an empty read-only
        tmpfs, any other file with an empty read-only file of mode 0 (opening it is
        refused). Symlinks are followed inside the root, so the file they name is
        covered. A glob in the last component covers each match found in the
        sandbox's own view of the directory, now."""
        parent, _, name = op.dest.rstrip("/").rpartition("/")
        if not _is_glob(name):
            self._hide(op.dest)
            return
        import fnmatch  # already imported by build_root, before the pivot

        names = self._listing(parent or "/")
        # Most names fail the text before the first wildcard: only the rest is matched.
        prefix = name[:min(i for i in (name.find(ch) for ch in "*?[") if i >= 0)]
        for entry in sorted(fnmatch.filter([n for n in names if n.startswith(prefix)], name)):
            if not entry.startswith(".") or name.startswith("."):  # as glob(3) matches
                self._hide(f"{parent}/{entry}")

    def _listing(self, directory: str) -> tuple[str, ...]:
        """The names in a directory of the root, listed once per build: a profile
        converted from firejail has dozens of globs in /usr/bin. Hides only cover
        what is listed (or add an empty directory where one was missing), so an
        earlier listing stays good for matching."""
        if directory not in self._listings:
            try:
                with _fd(self.open_inside(directory, os.O_RDONLY | os.O_DIRECTORY)) as fd:
                    self._listings[directory] = tuple(os.listdir(fd))
            except (FileNotFoundError, NotADirectoryError):
                self._listings[directory] = ()
        return self._listings[directory]

    def _hide(self, path: str) -> None:
        """Cover one path (see _op_hide). A missing one (jailpy's own state not made
        yet) is created as a directory where the sandbox could create it (inside a
        writable bind), so it can never appear there; where even that fails, nothing
        inside can create it either; nor can it reach one pid 1, with every capability
        of the sandbox, is refused (a home of 0700 not mapped into the sandbox)."""
        try:
            dest_fd = self.open_inside(path)
        except PermissionError:
            return
        except FileNotFoundError:
            try:
                dest_fd = self.ensure_dir(path, 0o700)
            except OSError as exc:
                if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR):
                    return
                raise
        if not stat.S_ISDIR(os.fstat(dest_fd).st_mode):
            self._cover_with_file(dest_fd, "hidden", "", 0)
            return
        try:
            mount_fd = self._new_fs("tmpfs", {"mode": "0500", "size": "4k"},
                                    sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID
                                    | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC)
        except BaseException:
            os.close(dest_fd)
            raise
        self._attach(mount_fd, dest_fd)

    def _op_protect(self, op: MountOp) -> None:
        """A file jailpy wrote (a wrapper, a status file): read-only, and as a mount
        point it cannot be renamed over or removed either. Missing: nothing to do."""
        try:
            self.make_readonly(op.dest)
        except FileNotFoundError:
            return

    def _op_remount_ro(self, op: MountOp) -> None:
        self.make_readonly(op.dest)

    def _op_chmod(self, op: MountOp) -> None:
        assert op.mode is not None
        self._chmod(op.dest, op.mode)

    def _chmod(self, dest: str, mode: int) -> None:
        with _fd(self.open_inside(dest)) as fd:
            os.chmod(f"/oldroot/proc/self/fd/{fd}", mode)

    # -- finish --------------------------------------------------------------

    def enter(self, root_readonly: bool) -> None:
        """Detach the host root and make /newroot the only root there is."""
        if root_readonly:
            with _fd(self.open_inside("/")) as fd:
                sc.mount_setattr(fd, sc.MOUNT_ATTR_RDONLY, recursive=False)
        os.close(self.host)
        sc.umount2("/oldroot", sc.MNT_DETACH)
        os.fchdir(self.root)
        os.close(self.root)
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")


def parent_mode(mode: int | None) -> int:
    """The mode of parent directories created for an op whose own mode is `mode`:
    0755, less the group's or others' access where the op gives them none (bwrap's
    rule of least astonishment: --perms 0700 --dir /a/b makes /a 0700 too)."""
    result = 0o755
    if mode is not None and not mode & 0o070:
        result &= ~0o050
    if mode is not None and not mode & 0o007:
        result &= ~0o005
    return result


def build_root(ops: tuple[MountOp, ...], root_readonly: bool,
               new_pid_ns: bool = True, nested: bool = False,
               private_parents: bool = False) -> list[tuple[int, int]]:
    """Create the sandbox root from ops and pivot into it (call in pid 1); returns
    the size-limited overlays' layers for copy_out once the sandbox is gone."""
    if any(op.kind == "hide" and _is_glob(op.dest) for op in ops):
        # _op_hide matches globs with fnmatch; imported now, while the host's
        # stdlib is still this process's root (the pivot below leaves it behind).
        import fnmatch  # noqa: F401
    try:
        builder = RootBuilder(new_pid_ns, nested)
        builder.private_parents = private_parents
    except OSError as exc:
        raise SetupError(f"cannot create the sandbox root: {exc.strerror}",
                         origin="mount namespace") from exc
    umask = os.umask(0)  # modes as given, whatever the caller's umask (as bwrap)
    try:
        for op in ops:
            builder.apply(op)
    finally:
        os.umask(umask)
    try:
        builder.enter(root_readonly)
    except OSError as exc:
        raise SetupError(f"cannot enter the sandbox root: {exc.strerror}",
                         origin="pivot_root") from exc
    return builder.copy_outs


def copy_out(pairs: list[tuple[int, int]]) -> None:
    """pid 1, after every other process in the sandbox is dead: copy each tmpfs upper
    layer to its host upper dir, so the run can be reviewed. The content is the
    sandbox's and untrusted: nothing is followed (O_NOFOLLOW, dir fds), only files,
    directories, symlinks, whiteouts and the opaque mark are kept, and it is
    bounded by the tmpfs size."""
    for scratch, keep in pairs:
        try:
            with _fd(os.open("upper", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, dir_fd=scratch)) as upper:
                _copy_tree(upper, keep)
        except OSError as exc:
            raise SetupError(f"cannot keep the changes: {exc.strerror}",
                             origin="changes.size / --changes-size") from exc
        finally:
            os.close(scratch)
            os.close(keep)


_OPAQUE = "user.overlay.opaque"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _copy_tree(src: int, dst: int) -> None:
    try:
        os.setxattr(dst, _OPAQUE, os.getxattr(src, _OPAQUE))
    except OSError:
        pass  # not opaque
    for name in os.listdir(src):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            with _fd(os.open(name, _DIR_FLAGS, dir_fd=src)) as sub, \
                    _fd(os.open(name, _DIR_FLAGS, dir_fd=dst)) as out:
                _copy_tree(sub, out)
                os.fchmod(out, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
        elif stat.S_ISREG(st.st_mode):
            with _fd(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=src)) as data, \
                    _fd(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                | os.O_CLOEXEC, 0o600, dir_fd=dst)) as out:
                while os.sendfile(out, data, None, 1 << 20):
                    pass
                os.fchmod(out, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout
            os.mknod(name, stat.S_IFCHR, 0, dir_fd=dst)
