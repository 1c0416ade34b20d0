"""`jailpy bwrap` and `jailpy-bwrap`: bubblewrap's command line, jailpy's runtime.

bwrap's language is positional: options are read left to right with a fixed
number of arguments each, filesystem options become mount ops in the order
given, --perms/--size qualify the next op only, and --args FD splices
NUL-separated arguments read from FD in place. This parser keeps that shape
(it is written like bwrap's own, not with click) and builds a Policy directly,
with none of jailpy's defaults: no profile, seccomp or Landlock only when asked
(--seccomp FD), file descriptors inherited, the environment kept unless
--clearenv, and only the namespaces --unshare-* asks for (a user and a mount
namespace always: an unprivileged bwrap makes them too). The one runtime runs
it (api.Sandbox); docs/bwrap.md lists the deliberate differences.

bwrap's own failures print `bwrap: MESSAGE` on stderr and exit 1, as bwrap does.
"""

from __future__ import annotations

import os
import sys

VERSION = "0.11.0"

#: bwrap names itself as it was run (argv[0]) in its usage line.
USAGE = "usage: {} [OPTIONS...] [--] COMMAND [ARGS...]\n"

#: option -> (number of arguments, help text); --help prints them in this order.
OPTIONS: dict[str, tuple[int, str]] = {
    "--help": (0, "Print this help"),
    "--version": (0, "Print version"),
    "--args": (1, "Parse NUL-separated args from FD"),
    "--argv0": (1, "Set argv[0] to the value VALUE before running the program"),
    "--level-prefix": (0, "Prepend e.g. <3> to diagnostic messages"),
    "--unshare-all": (0, "Unshare every namespace we support by default"),
    "--share-net": (0, "Retain the network namespace (can only combine with --unshare-all)"),
    "--unshare-user": (0, "Create new user namespace (may be automatically implied if not "
                          "setuid)"),
    "--unshare-user-try": (0, "Create new user namespace if possible else continue by "
                              "skipping it"),
    "--unshare-ipc": (0, "Create new ipc namespace"),
    "--unshare-pid": (0, "Create new pid namespace"),
    "--unshare-net": (0, "Create new network namespace"),
    "--unshare-uts": (0, "Create new uts namespace"),
    "--unshare-cgroup": (0, "Create new cgroup namespace"),
    "--unshare-cgroup-try": (0, "Create new cgroup namespace if possible else continue by "
                                "skipping it"),
    "--userns": (1, "Use this user namespace (cannot combine with --unshare-user)"),
    "--userns2": (1, "After setup switch to this user namespace, only useful with --userns"),
    "--disable-userns": (0, "Disable further use of user namespaces inside sandbox"),
    "--assert-userns-disabled": (0, "Fail unless further use of user namespace inside sandbox "
                                    "is disabled"),
    "--pidns": (1, "Use this pid namespace (as parent namespace if using --unshare-pid)"),
    "--uid": (1, "Custom uid in the sandbox (requires --unshare-user or --userns)"),
    "--gid": (1, "Custom gid in the sandbox (requires --unshare-user or --userns)"),
    "--hostname": (1, "Custom hostname in the sandbox (requires --unshare-uts)"),
    "--chdir": (1, "Change directory to DIR"),
    "--clearenv": (0, "Unset all environment variables"),
    "--setenv": (2, "Set an environment variable"),
    "--unsetenv": (1, "Unset an environment variable"),
    "--lock-file": (1, "Take a lock on DEST while sandbox is running"),
    "--sync-fd": (1, "Keep this fd open while sandbox is running"),
    "--bind": (2, "Bind mount the host path SRC on DEST"),
    "--bind-try": (2, "Equal to --bind but ignores non-existent SRC"),
    "--dev-bind": (2, "Bind mount the host path SRC on DEST, allowing device access"),
    "--dev-bind-try": (2, "Equal to --dev-bind but ignores non-existent SRC"),
    "--ro-bind": (2, "Bind mount the host path SRC readonly on DEST"),
    "--ro-bind-try": (2, "Equal to --ro-bind but ignores non-existent SRC"),
    "--bind-fd": (2, "Bind open directory or path fd on DEST"),
    "--ro-bind-fd": (2, "Bind open directory or path fd read-only on DEST"),
    "--remount-ro": (1, "Remount DEST as readonly; does not recursively remount"),
    "--overlay-src": (1, "Read files from SRC in the following overlay"),
    "--overlay": (3, "Mount overlayfs on DEST, with RWSRC as the host path for writes and "
                     "WORKDIR an empty directory on the same filesystem as RWSRC"),
    "--tmp-overlay": (1, "Mount overlayfs on DEST, with writes going to an invisible tmpfs"),
    "--ro-overlay": (1, "Mount overlayfs read-only on DEST"),
    "--exec-label": (1, "Exec label for the sandbox"),
    "--file-label": (1, "File label for temporary sandbox content"),
    "--proc": (1, "Mount new procfs on DEST"),
    "--dev": (1, "Mount new dev on DEST"),
    "--tmpfs": (1, "Mount new tmpfs on DEST"),
    "--mqueue": (1, "Mount new mqueue on DEST"),
    "--dir": (1, "Create dir at DEST"),
    "--file": (2, "Copy from FD to destination DEST"),
    "--bind-data": (2, "Copy from FD to file which is bind-mounted on DEST"),
    "--ro-bind-data": (2, "Copy from FD to file which is readonly bind-mounted on DEST"),
    "--symlink": (2, "Create symlink at DEST with target SRC"),
    "--seccomp": (1, "Load and use seccomp rules from FD (not repeatable)"),
    "--add-seccomp-fd": (1, "Load and use seccomp rules from FD (repeatable)"),
    "--block-fd": (1, "Block on FD until some data to read is available"),
    "--userns-block-fd": (1, "Block on FD until the user namespace is ready"),
    "--info-fd": (1, "Write information about the running container to FD"),
    "--json-status-fd": (1, "Write container status to FD as multiple JSON documents"),
    "--new-session": (0, "Create a new terminal session"),
    "--die-with-parent": (0, "Kills with SIGKILL child process (COMMAND) when bwrap or "
                             "bwrap's parent dies."),
    "--as-pid-1": (0, "Do not install a reaper process with PID=1"),
    "--cap-add": (1, "Add cap CAP when running as privileged user"),
    "--cap-drop": (1, "Drop cap CAP when running as privileged user"),
    "--perms": (1, "Set permissions of next argument (--bind-data, --file, etc.)"),
    "--size": (1, "Set size of next argument (only for --tmpfs)"),
    "--chmod": (2, "Change permissions of PATH (must already exist)"),
}

_METAVARS = {"--args": "FD", "--argv0": "VALUE", "--userns": "FD", "--userns2": "FD",
             "--pidns": "FD", "--uid": "UID", "--gid": "GID", "--hostname": "NAME",
             "--chdir": "DIR", "--setenv": "VAR VALUE", "--unsetenv": "VAR",
             "--lock-file": "DEST", "--sync-fd": "FD", "--overlay-src": "SRC",
             "--overlay": "RWSRC WORKDIR DEST", "--exec-label": "LABEL", "--file-label": "LABEL",
             "--file": "FD DEST", "--bind-data": "FD DEST", "--ro-bind-data": "FD DEST",
             "--symlink": "SRC DEST", "--bind-fd": "FD DEST", "--ro-bind-fd": "FD DEST",
             "--seccomp": "FD", "--add-seccomp-fd": "FD", "--block-fd": "FD",
             "--userns-block-fd": "FD", "--info-fd": "FD", "--json-status-fd": "FD",
             "--cap-add": "CAP", "--cap-drop": "CAP", "--perms": "OCTAL", "--size": "BYTES",
             "--chmod": "OCTAL PATH"}

#: --unshare-X -> the policy.NAMESPACES name it makes new.
_UNSHARE = {"--unshare-ipc": "ipc", "--unshare-pid": "pid", "--unshare-net": "net",
            "--unshare-uts": "uts", "--unshare-cgroup": "cgroup",
            "--unshare-cgroup-try": "cgroup"}
#: Namespaces --info-fd reports (bwrap's keys), by their /proc/PID/ns name.
_INFO_NAMESPACES = (("cgroup", "cgroup"), ("ipc", "ipc"), ("mnt", "mount"), ("net", "net"),
                    ("pid", "pid"), ("uts", "uts"))


class BwrapError(Exception):
    """One of bwrap's own failures: `bwrap: MESSAGE` on stderr, exit status 1."""


def usage_text() -> str:
    """bwrap's --help: the usage line, then one line per option."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "bwrap"
    if os.path.basename(program) == "jailpy":
        program = "jailpy bwrap"
    lines = [USAGE.format(program), "\n"]
    for option, (arity, text) in OPTIONS.items():
        metavar = _METAVARS[option] if option in _METAVARS else ("", "DEST", "SRC DEST")[arity]
        lines.append(f"    {option + ' ' + metavar if metavar else option:<29}{text}\n")
    return "".join(lines)


def _read_fd(text: str, option: str, what: str = "from fd") -> bytes:
    """Everything readable from fd `text` (then closed, as bwrap does)."""
    fd = _fd_number(text, option)
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise BwrapError(f"Can't read {what}: {exc.strerror}") from exc
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return b"".join(chunks)


def _fd_number(text: str, option: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise BwrapError(f"Invalid fd: {text}")
    return int(text)


def _octal(text: str, option: str) -> int:
    try:
        mode = int(text, 8) if text.isascii() and text.isdigit() else -1
    except ValueError:
        mode = -1
    if mode < 0 or mode > 0o7777:
        raise BwrapError(f"{option} takes an octal argument <= 07777")
    return mode


#: bwrap refuses a tmpfs larger than SIZE_MAX / 2.
_MAX_TMPFS_BYTES = (1 << 64) // 2 - 1
#: Options whose value only the last occurrence sets (bwrap warns about the others).
_LAST_ONE_WINS = {"--chdir", "--exec-label", "--file-label", "--sync-fd", "--block-fd",
                  "--userns-block-fd", "--info-fd", "--json-status-fd", "--seccomp",
                  "--userns", "--userns2", "--pidns", "--uid", "--gid", "--hostname"}
#: The ops --perms may qualify, and the one --size may.
_TAKES_PERMS = {"--tmpfs", "--dir", "--file", "--bind-data", "--ro-bind-data"}
_OVERLAYS = {"--overlay": 1, "--tmp-overlay": 1, "--ro-overlay": 2}


class Request:
    """What one bwrap command line asks for, before it becomes a Policy."""

    def __init__(self, env: dict[str, str]) -> None:
        self.ops: list = []
        self.env = dict(env)
        self.env_cleared = False
        self.namespaces: set[str] = set()
        self.share_net = False
        self.user_try = False
        #: --unshare-user itself (bwrap's checks want it, not -try or --unshare-all).
        self.unshare_user = False
        self.uid: int | None = None
        self.gid: int | None = None
        self.hostname: str | None = None
        self.chdir: str | None = None
        self.argv0: str | None = None
        self.new_session = False
        self.die_with_parent = False
        self.as_pid_1 = False
        self.caps: set[str] = set()
        self.seccomp: list[bytes] = []
        self.info_fd: int | None = None
        self.json_status_fd: int | None = None
        self.sync_fd: int | None = None
        self.block_fd: int | None = None
        self.userns_block_fd: int | None = None
        self.userns_fd: int | None = None
        self.userns2_fd: int | None = None
        self.pidns_fd: int | None = None
        self.disable_userns = False
        self.assert_userns_disabled = False
        self.lock_files: list[str] = []
        self.warnings: list[str] = []
        self.command: list[str] = []


def parse(argv: list[str], env: dict[str, str]) -> Request:
    """bwrap's command line -> a Request; raises BwrapError as bwrap would fail."""
    from ..policy import MountOp

    request = Request(env)
    args = list(argv)
    perms: int | None = None
    size: int | None = None
    overlay_srcs: list[str] = []
    seen: set[str] = set()
    depth = 0
    i = 0
    while i < len(args):
        option = args[i]
        if option == "--":
            i += 1
            break
        if not option.startswith("-"):
            break
        if option not in OPTIONS:
            raise BwrapError(f"Unknown option {option}")
        arity = OPTIONS[option][0]
        values = args[i + 1:i + 1 + arity]
        if len(values) < arity:
            raise BwrapError(f"{option} takes {_count(arity)}")
        i += 1 + arity
        if option in _LAST_ONE_WINS and option in seen:
            request.warnings.append(f"Only the last {option} option will take effect")
        seen.add(option)
        if option == "--help":
            sys.stdout.write(usage_text())
            sys.exit(0)
        elif option == "--version":
            sys.stdout.write(f"bubblewrap {VERSION}\n")
            sys.exit(0)
        elif option == "--args":
            depth += 1
            if depth > 5:  # bwrap refuses deeper nesting too
                raise BwrapError("Exceeded maximum number of nested --args")
            data = _read_fd(values[0], option, "--args data")
            spliced = [os.fsdecode(part) for part in data.split(b"\0")]
            if spliced and spliced[-1] == "":
                spliced.pop()
            args[i:i] = spliced
        elif option == "--unshare-all":
            request.namespaces |= {"ipc", "pid", "net", "uts", "cgroup"}
            request.user_try = True
        elif option == "--share-net":
            request.share_net = True
        elif option in ("--unshare-user", "--unshare-user-try"):
            request.namespaces.add("user")
            request.user_try |= option == "--unshare-user-try"
            request.unshare_user |= option == "--unshare-user"
        elif option in _UNSHARE:
            request.namespaces.add(_UNSHARE[option])
        elif option in ("--uid", "--gid"):
            if not values[0].isascii() or not values[0].isdigit():
                raise BwrapError(f"Invalid {option[2:]}: {values[0]}")
            setattr(request, option[2:], int(values[0]))
        elif option == "--hostname":
            request.hostname = values[0]
        elif option == "--chdir":
            request.chdir = values[0]
        elif option == "--argv0":
            if request.argv0 is not None:
                raise BwrapError("--argv0 used multiple times")
            request.argv0 = values[0]
        elif option == "--clearenv":
            request.env.clear()
            request.env_cleared = True
        elif option == "--setenv":
            request.env[values[0]] = values[1]
        elif option == "--unsetenv":
            request.env.pop(values[0], None)
        elif option in ("--new-session", "--die-with-parent", "--as-pid-1",
                        "--disable-userns", "--assert-userns-disabled"):
            setattr(request, option[2:].replace("-", "_"), True)
        elif option in ("--cap-add", "--cap-drop"):
            _capability(request, option, values[0])
        elif option in ("--seccomp", "--add-seccomp-fd"):
            other = "--add-seccomp-fd" if option == "--seccomp" else "--seccomp"
            if other in seen:
                raise BwrapError(f"{option} cannot be combined with {other}")
            program = _bpf(_read_fd(values[0], option, "seccomp data"))
            if option == "--seccomp":
                request.seccomp = [program]
            else:
                request.seccomp.append(program)
        elif option in _FD_OPTIONS:
            setattr(request, _FD_OPTIONS[option], _fd_number(values[0], option))
        elif option == "--lock-file":
            request.lock_files.append(values[0])
        elif option == "--perms":
            if perms is not None:
                raise BwrapError("--perms given twice for the same action")
            perms = _octal(values[0], option)
        elif option == "--size":
            if size is not None:
                raise BwrapError("--size given twice for the same action")
            size = _size(values[0])
        elif option in ("--exec-label", "--file-label"):
            raise BwrapError(f"{option} not supported on this system (SELinux is not enabled)")
        elif option == "--overlay-src":
            overlay_srcs.append(_absolute(values[0]))
        elif option == "--level-prefix":
            pass  # main() reads it first: it also applies to errors of the parse
        else:
            if perms is not None and option not in _TAKES_PERMS:
                raise BwrapError("--perms must be followed by an option that creates a file")
            if size is not None and option != "--tmpfs":
                raise BwrapError("--size must be followed by --tmpfs")
            if overlay_srcs and option not in _OVERLAYS:
                raise BwrapError(_OVERLAY_SRC_ALONE)
            if option in _OVERLAYS and len(overlay_srcs) < _OVERLAYS[option]:
                raise BwrapError(f"{option} requires at least "
                                 f"{('one', 'two')[_OVERLAYS[option] - 1]} --overlay-src")
            request.ops.append(_mount_op(MountOp, option, values, perms, size, overlay_srcs))
            overlay_srcs, perms, size = [], None, None  # they qualify the next op only
            continue
        if overlay_srcs and option != "--overlay-src":
            raise BwrapError(_OVERLAY_SRC_ALONE)
        if perms is not None and option != "--perms" and option != "--size":
            raise BwrapError("--perms must be followed by an option that creates a file")
        if size is not None and option != "--size" and option != "--perms":
            raise BwrapError("--size must be followed by --tmpfs")
    if overlay_srcs:
        raise BwrapError(_OVERLAY_SRC_ALONE)
    request.command = args[i:]
    if not request.command:
        sys.stderr.write(usage_text())
        sys.exit(1)
    _check_combinations(request)
    if request.share_net:
        request.namespaces.discard("net")
    return request


_OVERLAY_SRC_ALONE = ("--overlay-src must be followed by another --overlay-src or one of "
                      "--overlay, --tmp-overlay, or --ro-overlay")
#: Options naming one fd -> the Request attribute.
_FD_OPTIONS = {"--info-fd": "info_fd", "--json-status-fd": "json_status_fd",
               "--sync-fd": "sync_fd", "--block-fd": "block_fd",
               "--userns-block-fd": "userns_block_fd", "--userns": "userns_fd",
               "--userns2": "userns2_fd", "--pidns": "pidns_fd"}


def _check_combinations(request: Request) -> None:
    """bwrap's checks of options that need or exclude each other, in its order."""
    # bwrap checks these before an unprivileged run implies --unshare-user, so
    # they want the option itself.
    if request.userns_block_fd is not None and not request.unshare_user:
        raise BwrapError("--userns-block-fd requires --unshare-user")
    if request.userns_block_fd is not None and request.info_fd is None:
        raise BwrapError("--userns-block-fd requires --info-fd")
    if request.userns_fd is not None and request.unshare_user:
        raise BwrapError("--userns not compatible --unshare-user")
    if request.userns_fd is not None and request.user_try:  # --unshare-all sets it too
        raise BwrapError("--userns not compatible --unshare-user-try")
    if request.disable_userns and not request.unshare_user:
        raise BwrapError("--disable-userns requires --unshare-user")
    if request.disable_userns and request.userns_block_fd is not None:
        raise BwrapError("--disable-userns is not compatible with  --userns-block-fd")
    if request.hostname is not None and "uts" not in request.namespaces:
        raise BwrapError("Specifying --hostname requires --unshare-uts")
    if request.as_pid_1 and "pid" not in request.namespaces:
        raise BwrapError("Specifying --as-pid-1 requires --unshare-pid")
    if request.as_pid_1 and request.lock_files:
        raise BwrapError("Specifying --as-pid-1 and --lock-file is not permitted")


def _absolute(path: str) -> str:
    """A relative host path names one under the caller's cwd (bwrap resolves it
    there before it changes root)."""
    return path if path.startswith("/") else os.path.join(os.getcwd(), path)


def _count(arity: int) -> str:
    return "an argument" if arity == 1 else ("two arguments" if arity == 2 else
                                            "three arguments")


def _size(text: str) -> int:
    """strtoull(text, 0) as bwrap reads it: 0x.. hex, 0.. octal, else decimal."""
    base = 16 if text[:2].lower() == "0x" else 8 if text[:1] == "0" and len(text) > 1 else 10
    try:
        size = int(text[2:] if base == 16 else text, base) if text[:1].isdigit() else 0
    except ValueError:
        size = 0
    if size <= 0:
        raise BwrapError("--size takes a non-zero number of bytes")
    if size > _MAX_TMPFS_BYTES:
        raise BwrapError(f"--size (for tmpfs) is limited to {_MAX_TMPFS_BYTES}")
    return size


def _bpf(program: bytes) -> bytes:
    if len(program) % 8:
        raise BwrapError("Invalid seccomp data, must be multiple of 8")
    return program


def _capability(request: Request, option: str, name: str) -> None:
    from ..linux.capabilities import canonical, capability_numbers

    if name.upper() == "ALL":
        from ..linux.capabilities import CAPABILITIES

        names = set(CAPABILITIES)
    else:
        try:
            capability_numbers((name,), option)
        except Exception:
            raise BwrapError(f"Unknown cap: {name}") from None
        names = {canonical(name)}
    if option == "--cap-add":
        request.caps |= names
    else:
        request.caps -= names


#: bwrap option -> (jailpy mount kind, is a -try form)
_KINDS = {"--bind": ("bind", False), "--bind-try": ("bind", True),
          "--ro-bind": ("ro-bind", False), "--ro-bind-try": ("ro-bind", True),
          "--dev-bind": ("dev-bind", False), "--dev-bind-try": ("dev-bind", True),
          "--bind-fd": ("bind", False), "--ro-bind-fd": ("ro-bind", False),
          "--tmpfs": ("tmpfs", False), "--proc": ("proc", False), "--dev": ("dev", False),
          "--mqueue": ("mqueue", False), "--dir": ("dir", False),
          "--remount-ro": ("remount-ro", False), "--symlink": ("symlink", False),
          "--chmod": ("chmod", False), "--file": ("file", False),
          "--bind-data": ("bind-data", False), "--ro-bind-data": ("ro-bind-data", False),
          "--overlay": ("overlay", False), "--tmp-overlay": ("tmp-overlay", False),
          "--ro-overlay": ("ro-overlay", False)}
#: bwrap's modes for the data options without --perms.
_DATA_MODES = {"--file": 0o666, "--bind-data": 0o600, "--ro-bind-data": 0o600}


def _mount_op(MountOp, option: str, values: list[str], perms: int | None, size: int | None,
              overlay_srcs: list[str]):
    """One filesystem option as a jailpy mount op (policy.MOUNT_TABLE)."""
    kind, optional = _KINDS[option]
    origin, dest = " ".join((option, *values)), values[-1]
    if option in _OVERLAYS:
        top, *lower = reversed(overlay_srcs)  # the last --overlay-src is the top layer
        fields: dict = {"source": top, "lower": tuple(lower)}
        if option == "--overlay":
            fields.update(upper=_absolute(values[0]), work=_absolute(values[1]))
        return MountOp(kind=kind, dest=dest, origin=origin, **fields)
    if option in ("--bind-fd", "--ro-bind-fd"):
        fd = _fd_number(values[0], option)
        try:
            source = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            raise BwrapError(f"Invalid fd: {values[0]}") from None
        return MountOp(kind=kind, source=source, source_fd=fd, dest=dest, origin=origin)
    if kind == "symlink":
        return MountOp(kind=kind, source=values[0], dest=dest, origin=origin)
    if kind in ("bind", "ro-bind", "dev-bind"):
        return MountOp(kind=kind, source=_absolute(values[0]), dest=dest, optional=optional,
                       origin=origin)
    if kind == "chmod":
        return MountOp(kind=kind, mode=_octal(values[0], option), dest=dest, origin=origin)
    if option in _DATA_MODES:
        content = _read_fd(values[0], option).decode("utf-8", "surrogateescape")
        return MountOp(kind=kind, content=content, dest=dest, origin=origin,
                       mode=_DATA_MODES[option] if perms is None else perms)
    if kind == "tmpfs":
        return MountOp(kind=kind, dest=dest, mode=perms, size=size, origin=origin)
    if kind == "dir":
        return MountOp(kind=kind, dest=dest, mode=perms, origin=origin)
    return MountOp(kind=kind, dest=dest, origin=origin)


def policy_of(request: Request):
    """The Policy for a Request: bwrap's defaults, none of jailpy's."""
    from ..policy import (Capabilities, Environment, Filesystem, Identity, LandlockPolicy,
                          Limits, Namespaces, Policy, Process, SeccompPolicy)

    wanted = request.namespaces
    namespaces = Namespaces(user=request.userns_fd is None, mount=True, pid="pid" in wanted,
                            ipc="ipc" in wanted, uts="uts" in wanted, net="net" in wanted,
                            cgroup="cgroup" in wanted)
    try:
        caller_cwd: tuple[str, ...] = (os.getcwd(),)
    except OSError:
        caller_cwd = ()
    home = request.env.get("HOME")  # after --clearenv/--setenv, as bwrap reads it
    reporting = tuple(fd for fd in (request.info_fd, request.json_status_fd) if fd is not None)
    passed = tuple(fd for fd in _open_fds()
                   if fd > 2 and fd != request.sync_fd and fd not in reporting)
    return Policy(
        name="bwrap",
        namespaces=namespaces,
        identity=Identity(uid=request.uid, gid=request.gid),
        filesystem=Filesystem(ops=tuple(request.ops), root_readonly=False,
                              private_parents=True),
        environment=Environment(clear=True, set=tuple(request.env.items())),
        process=Process(hostname=request.hostname, cwd=request.chdir, argv0=request.argv0,
                        cwd_fallback=caller_cwd + ((home,) if home else ()) + ("/",),
                        new_session=request.new_session, tty=False,
                        die_with_parent=request.die_with_parent, pass_fds=passed,
                        as_pid_1=request.as_pid_1, lock_files=tuple(request.lock_files),
                        block_fd=request.block_fd, init_visible=True,
                        userns_fd=request.userns_fd, pidns_fd=request.pidns_fd,
                        userns_fd_after=request.userns2_fd,
                        ids_mapped_by_caller=request.userns_block_fd is not None,
                        host_only_fds=reporting,
                        userns_disabled=request.disable_userns,
                        check_userns_disabled=request.disable_userns
                        or request.assert_userns_disabled),
        capabilities=Capabilities(keep=tuple(sorted(request.caps))),
        seccomp=SeccompPolicy(enabled=False, programs=tuple(request.seccomp)),
        landlock=LandlockPolicy(enabled=False),
        # --disable-userns: the sandbox's own quota of user namespaces is the one
        # nested namespace pid 1 moves into (runtime/userns.py).
        # Named in origins, so it is the caller's quota, not one of jailpy's defaults
        # a read-only /proc/sys may skip (plan/__init__.py): it fails, naming the option.
        limits=(Limits(quotas=(("user_namespaces", 1),),
                       origins=(("quotas.user_namespaces", "--disable-userns"),))
                if request.disable_userns else Limits(quotas=())),
    )


def _open_fds() -> list[int]:
    """The fds this process holds: a bwrap client passes them on purpose."""
    try:
        listed = sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        return []
    still_open = []
    for fd in listed:  # the listing's own directory fd is closed by now
        try:
            os.fstat(fd)
        except OSError:
            continue
        still_open.append(fd)
    return still_open


class Reporter:
    """--info-fd and --json-status-fd: bwrap's JSON about the running sandbox,
    written once, when pid 1 exists (with --userns-block-fd before it is let go)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.reported = False

    def unshared(self, pid: int) -> None:
        """--userns-block-fd: pid 1 is in the new namespaces, which have no id
        maps yet, and waits; report it, then wait until the caller writes to (or
        closes) the block fd, as bwrap's parent does."""
        self._report(pid)
        try:
            os.read(self.request.userns_block_fd, 1)
            os.close(self.request.userns_block_fd)
        except OSError:
            pass

    def started(self, pid: int) -> None:
        if not self.reported:
            self._report(pid)

    def _report(self, pid: int) -> None:
        self.reported = True
        info = {"child-pid": pid}
        for proc_name, name in _INFO_NAMESPACES:
            if name in self.request.namespaces or name == "mount":
                try:
                    link = os.readlink(f"/proc/{pid}/ns/{proc_name}")
                    info[f"{proc_name}-namespace"] = int(link.split("[", 1)[1].rstrip("]"))
                except (OSError, IndexError, ValueError):
                    pass
        if self.request.info_fd is not None:
            body = ",\n".join(f'    "{key}": {value}' for key, value in info.items())
            _write_all(self.request.info_fd, "{\n" + body + "\n}\n")
            os.close(self.request.info_fd)
        if self.request.json_status_fd is not None:
            body = ", ".join(f'"{key}": {value}' for key, value in info.items())
            _write_all(self.request.json_status_fd, "{ " + body + " }\n")

    def exited(self, code: int) -> None:
        if self.request.json_status_fd is not None:
            _write_all(self.request.json_status_fd, f'{{ "exit-code": {code} }}\n')


def _write_all(fd: int, text: str) -> None:
    data = text.encode()
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass


def _die_with_parent() -> None:
    """--die-with-parent: bwrap itself goes too when its parent dies (so does a
    lock its sandbox holds), not only the sandbox."""
    import _signal

    from ..linux import syscalls as sc

    parent = os.getppid()
    sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        os._exit(1)


def _command_of(request: Request) -> list[str]:
    """The command to run. `/proc/self/exe` names bwrap itself in bwrap's sandbox
    (the process that execs the command is bwrap); in jailpy's it would be the
    Python interpreter, so it is replaced by this front end's own command line
    (tests of nesting and bwrap clients re-execute bwrap that way)."""
    command = request.command
    if command[0] != "/proc/self/exe":
        return command
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(script) == "jailpy":
        own = [sys.executable, script, "bwrap"]
    elif script:
        own = [sys.executable, script]
    else:
        own = [sys.executable, "-m", "jailpy.cli.bwrap"]
    return own + command[1:]


def _bwrap_message(err, request: Request | None) -> str:
    """A jailpy failure in bwrap's words where a client may match on them."""
    op = next((op for op in request.ops if op.origin == err.origin), None) if request else None
    if op is not None and err.message == "source does not exist":
        return f"Can't find source path {op.source}: No such file or directory"
    if op is not None and op.kind == "symlink" and " exists and points to " in err.message:
        existing = err.message.split(" exists and points to ", 1)[1]
        return f"Can't make symlink at {op.dest}: existing destination is {existing}"
    if op is not None and op.kind == "symlink" and err.message.endswith("is not a symlink"):
        return f"Can't make symlink at {op.dest}: destination exists and is not a symlink"
    where = f" ({err.origin})" if err.origin else ""
    return f"{err.message}{where}"


def main(argv: list[str] | None = None) -> None:
    """The console script `jailpy-bwrap`, and `jailpy bwrap ...`."""
    from . import _standard_streams, started
    from ..errors import JailpyError

    started()
    _standard_streams()
    args = sys.argv[1:] if argv is None else argv

    level = ""
    request = None
    try:
        if "--level-prefix" in args[:args.index("--") if "--" in args else len(args)]:
            level = "<3>"
        request = parse(args, dict(os.environ))
        for warning in request.warnings:
            sys.stderr.write(f"{'<4>' if level else ''}bwrap: {warning}\n")
        command = _command_of(request)
        policy = policy_of(request)
        if request.die_with_parent:
            _die_with_parent()
        reporter = Reporter(request)
        from ..api import Sandbox

        blocks = request.userns_block_fd is not None
        result = Sandbox(policy).run(command, forward_signals=True,
                                     on_started=reporter.started,
                                     on_unshared=reporter.unshared if blocks else None)
        reporter.exited(result.exit_code)
    except BwrapError as err:
        sys.stderr.write(f"{level}bwrap: {err}\n")
        sys.exit(1)
    except JailpyError as err:
        sys.stderr.write(f"{level}bwrap: {_bwrap_message(err, request)}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.stdout.flush()
    os._exit(result.exit_code)


if __name__ == "__main__":
    main()
