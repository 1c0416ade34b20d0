"""Thin bindings for the Linux calls Python's os module lacks.

Every wrapper raises OSError with the real errno, so callers can report which
operation failed and why without knowing about ctypes. A few calls the os
module does have are here too when its version would import a module on
every start-up (wait4 and `resource`, the loopback ioctls and `socket`).

prctl(2) and the capability sets go through python-prctl, the binding the
project chose for them. ctypes stays only where python-prctl has no call:
PR_CAP_AMBIENT, and capability numbers the running kernel knows but the
libcap python-prctl was built against does not (python-prctl refuses
those, and a sandbox must still drop them). `check_supported()` is what the
supervisor asks before it forks: a missing python-prctl or an architecture
whose syscall numbers are not in `_NUMBERS` is one clear error, not a
traceback or a wrong syscall.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..errors import SetupError

try:
    import _prctl  # python-prctl
except ImportError:  # reported by check_supported(), before anything is forked
    _prctl = None

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# Namespace flags (linux/sched.h).
CLONE_NEWTIME = 0x00000080
CLONE_PARENT = 0x00008000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_SIGCHLD = 17  # the same number on every architecture _NUMBERS knows

# mount(2) flags.
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REC = 0x4000
MS_SLAVE = 0x80000
MNT_DETACH = 0x2

# New mount API (linux/mount.h).
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

# openat2 resolve flags (linux/openat2.h).
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

CLOSE_RANGE_CLOEXEC = 0x4

# Network device ioctls (linux/sockios.h, linux/if.h).
_AF_INET = 2
_SOCK_DGRAM = 2
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

# Pseudo-terminal ioctls the termios module does not name (asm-generic/ioctls.h).
TIOCSPTLCK = 0x40045431  # lock or unlock a pty's slave
TIOCGPTPEER = 0x5441  # open a master's slave without a path lookup

# prctl options (linux/prctl.h).
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_READ = 23
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_NUMBERS = {
    "x86_64": {
        "pivot_root": 155, "unshare": 272, "openat2": 437,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "mount_setattr": 442, "close_range": 436,
        "seccomp": 317, "clone3": 435,
    },
    "aarch64": {
        "pivot_root": 41, "unshare": 97, "openat2": 437,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "mount_setattr": 442, "close_range": 436,
        "seccomp": 277, "clone3": 435,
    },
}
MACHINE = os.uname().machine
#: This architecture's numbers; empty on one jailpy does not know (check_supported refuses it).
NR: dict[str, int] = _NUMBERS.get(MACHINE, {})


def check_supported() -> None:
    """Refuse, in one line with the fix, to build a sandbox this machine cannot get right."""
    if not NR:
        raise SetupError(f"jailpy does not know the syscall numbers of this architecture "
                         f"({MACHINE})", origin="this machine",
                         hint=f"supported: {', '.join(_NUMBERS)}; adding one is a table in "
                              f"jailpy/linux/syscalls.py")
    if _prctl is None:
        raise SetupError("python-prctl is not installed in the Python that runs jailpy",
                         origin="this machine",
                         hint="install it with jailpy (pip install python-prctl needs gcc, "
                              "python3-dev and libcap-dev), see README 'Install'")


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


#: (struct clone_args, syscall through a handle that keeps the GIL, PyOS_BeforeFork,
#: _Child, _Parent), made on the first fork_into_namespaces(): `jailpy run` never
#: pays for them.
_fork_protocol: tuple | None = None


def _clone_args() -> type:
    """struct clone_args up to `tls` (CLONE_ARGS_SIZE_VER0): no stack, so the
    child goes on from the call, as after fork()."""
    names = ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
             "stack_size", "tls")
    return type("CloneArgs", (ctypes.Structure,),
                {"_fields_": [(name, ctypes.c_uint64) for name in names]})


def fork_into_namespaces(flags: int) -> int:
    """fork() whose child starts in new namespaces: clone3(flags) with SIGCHLD.

    With CLONE_NEWUSER | CLONE_NEWPID the child is pid 1 of its pid namespace
    at once, so nothing has to unshare and fork once more (bwrap's clone);
    with CLONE_PARENT it is the caller's sibling. Python's fork protocol runs
    around the call as in os.fork(): the before-fork hooks and the import lock,
    then the interpreter's threads and locks re-made in the child.

    Only for a process with ONE thread. Between the clone and the re-making of
    the GIL in the child a little bytecode runs (os.fork does all of it in C):
    a GIL hand-over another thread requested would leave the child waiting
    for a thread it does not have. glibc's own fork handlers (malloc's locks)
    do not run either. Returns the child's pid, 0 in the child."""
    global _fork_protocol
    if _fork_protocol is None:
        with_gil = ctypes.PyDLL(None, use_errno=True)
        call = with_gil.syscall
        call.restype = ctypes.c_long
        api = ctypes.pythonapi
        _fork_protocol = (_clone_args(), call, api.PyOS_BeforeFork, api.PyOS_AfterFork_Child,
                          api.PyOS_AfterFork_Parent)
    clone_args, call, before, after_child, after_parent = _fork_protocol
    # A sibling's exit signal is the caller's own (clone3 refuses to be told one).
    args = clone_args(flags=flags, exit_signal=0 if flags & CLONE_PARENT else _SIGCHLD)
    size = ctypes.c_size_t(ctypes.sizeof(args))
    before()
    pid = call(ctypes.c_long(NR["clone3"]), ctypes.byref(args), size)
    if pid == 0:
        after_child()
        return 0
    err = ctypes.get_errno()
    after_parent()
    if pid < 0:
        raise OSError(err, f"clone3: {os.strerror(err)}")
    return pid


def setns(fd: int, nstype: int) -> None:
    """Join the namespace open at fd (os.setns is Python 3.12+)."""
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    res = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(res, "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(NR["pivot_root"], _b(new_root), _b(put_old)), "pivot_root", new_root)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


#: How often openat2 is retried when its lookup raced with a mount or rename.
OPENAT2_RETRIES = 64


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2). A RESOLVE_IN_ROOT / RESOLVE_BENEATH lookup that crosses ".." (a
    symlink like /usr/bin/x -> ../lib/...) fails with EAGAIN when any mount or
    rename happened on the system meanwhile (other sandboxes starting); the kernel
    asks the caller to retry, which is done here a bounded number of times."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    for _ in range(OPENAT2_RETRIES):
        res = _syscall(NR["openat2"], ctypes.c_int(dirfd), _b(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
        if res >= 0 or ctypes.get_errno() != errno.EAGAIN:
            break
    return _check(res, "openat2", path)


def open_tree(dirfd: int, path: str, flags: int) -> int:
    res = _syscall(NR["open_tree"], ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags))
    return _check(res, "open_tree", path)


def move_mount(from_fd: int, to_fd: int) -> None:
    """Attach the detached mount `from_fd` on top of the object `to_fd` refers to."""
    res = _syscall(NR["move_mount"], ctypes.c_int(from_fd), b"", ctypes.c_int(to_fd), b"",
                   ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))
    _check(res, "move_mount")


def fsopen(fstype: str) -> int:
    return _check(_syscall(NR["fsopen"], _b(fstype), ctypes.c_uint(FSOPEN_CLOEXEC)),
                  "fsopen", fstype)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    res = _syscall(NR["fsconfig"], ctypes.c_int(fd), ctypes.c_uint(cmd), _b(key), _b(value),
                   ctypes.c_int(0))
    _check(res, "fsconfig", key)


def fsmount(fd: int, attr_flags: int) -> int:
    res = _syscall(NR["fsmount"], ctypes.c_int(fd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                   ctypes.c_uint(attr_flags))
    return _check(res, "fsmount")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(fd: int, attr_set: int, recursive: bool) -> None:
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    res = _syscall(NR["mount_setattr"], ctypes.c_int(fd), b"", ctypes.c_uint(flags),
                   ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(res, "mount_setattr")


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec in one call."""
    res = _syscall(NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                   ctypes.c_uint(CLOSE_RANGE_CLOEXEC))
    _check(res, "close_range")


def prctl(option: int, arg2: int = 0) -> int:
    """prctl(2) through python-prctl (which checks the option's argument)."""
    if _prctl is None:
        check_supported()
    return _prctl.prctl(option, arg2)


def _raw_prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    res = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                      ctypes.c_ulong(0), ctypes.c_ulong(0))
    return _check(res, "prctl")


def _libcap_knows(cap: int) -> bool:
    return cap <= _prctl.CAP_LAST_CAP


def capbset_read(cap: int) -> bool:
    """Is `cap` in the bounding set? OSError(EINVAL) when the kernel does not know it."""
    if _libcap_knows(cap):
        return bool(_prctl.prctl(PR_CAPBSET_READ, cap))
    return bool(_raw_prctl(PR_CAPBSET_READ, cap))


def capbset_drop(cap: int) -> None:
    if _libcap_knows(cap):
        _prctl.prctl(PR_CAPBSET_DROP, cap)
    else:
        _raw_prctl(PR_CAPBSET_DROP, cap)


def set_securebits(bits: int) -> None:
    _prctl.prctl(PR_SET_SECUREBITS, bits)


def ambient_clear_all() -> None:
    """Empty the ambient set (python-prctl has no PR_CAP_AMBIENT)."""
    _raw_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def ambient_raise(cap: int) -> None:
    _raw_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capget() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) sets as 64-bit masks (raw:
    the verification after a drop must see bits libcap has no name for)."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    join = lambda f: getattr(data[0], f) | getattr(data[1], f) << 32  # noqa: E731
    return join("effective"), join("permitted"), join("inheritable")


def set_capabilities(kept: set[int], last: int) -> None:
    """Effective, permitted and inheritable become exactly `kept`, for every
    capability up to `last` (the kernel's highest)."""
    known = range(min(last, _prctl.CAP_LAST_CAP) + 1)
    keep = [cap for cap in known if cap in kept]
    drop = [cap for cap in known if cap not in kept]
    _prctl.set_caps(keep, keep, keep, drop, drop, drop)
    if last > _prctl.CAP_LAST_CAP:  # numbers libcap cannot name: the raw call clears them
        mask = sum(1 << cap for cap in kept)
        _capset(mask, mask, mask)


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def bring_up_loopback() -> None:
    """A new network namespace starts with lo down; nothing works until it is up.

    Two ioctls on a datagram socket (SIOCGIFFLAGS, then SIOCSIFFLAGS with
    IFF_UP), made here rather than with the socket module, which would cost an
    import on every start-up for one call."""
    sock = _check(_libc.socket(_AF_INET, _SOCK_DGRAM | os.O_CLOEXEC, 0), "socket")
    try:
        ifreq = ctypes.create_string_buffer(b"lo", 40)  # struct ifreq: name[16] + union
        _check(_libc.ioctl(sock, ctypes.c_ulong(_SIOCGIFFLAGS), ifreq), "bringing up lo")
        flags = int.from_bytes(ifreq.raw[16:18], "little") | _IFF_UP
        ctypes.memmove(ctypes.addressof(ifreq) + 16, flags.to_bytes(2, "little"), 2)
        _check(_libc.ioctl(sock, ctypes.c_ulong(_SIOCSIFFLAGS), ifreq), "bringing up lo")
    finally:
        os.close(sock)


def open_low_ports() -> None:
    """Let any process bind ports below 1024 in this (new, jailpy-owned) network
    namespace: net.ipv4.ip_unprivileged_port_start = 0, as rootless podman sets
    it in a container's namespace. The knob is per network namespace and is read
    through the caller's, which must hold CAP_NET_ADMIN over it; the host's own
    ports are untouched (--publish maps them from the host side). A kernel
    without the knob (before 4.11) keeps the usual limit: a lost convenience,
    not a lost restriction, so that failure is not an error."""
    try:
        fd = os.open("/proc/sys/net/ipv4/ip_unprivileged_port_start", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"0")
    except OSError:
        pass
    finally:
        os.close(fd)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _fprog(program: bytes):
    """The struct sock_fprog for a program, and the buffer it points to (keep both)."""
    buf = ctypes.create_string_buffer(program, len(program))
    return buf, _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))


def seccomp_set_filter(program: bytes, flags: int = 0) -> None:
    """Load a raw classic-BPF program (array of struct sock_filter)."""
    buf, prog = _fprog(program)
    SECCOMP_SET_MODE_FILTER = 1
    res = _syscall(NR["seccomp"], ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags),
                   ctypes.byref(prog))
    _check(res, "seccomp")


def seccomp_set_filter_prctl(program: bytes) -> None:
    """Load a raw classic-BPF program with prctl(PR_SET_SECCOMP), as bwrap does: a
    client's filter that allows prctl but not seccomp(2) can still be followed by
    another (bwrap's --add-seccomp-fd stacking)."""
    buf, prog = _fprog(program)
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
    res = _libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                      ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(res, "prctl")


class _Rusage(ctypes.Structure):
    # struct rusage on the LP64 ABIs (x86_64, aarch64): two timevals, then 14 longs.
    _fields_ = [("utime_sec", ctypes.c_long), ("utime_usec", ctypes.c_long),
                ("stime_sec", ctypes.c_long), ("stime_usec", ctypes.c_long),
                ("maxrss", ctypes.c_long), ("rest", ctypes.c_long * 13)]


class Usage:
    """The fields of resource.struct_rusage that jailpy reports."""

    __slots__ = ("ru_utime", "ru_stime", "ru_maxrss")

    def __init__(self, raw: _Rusage) -> None:
        self.ru_utime = raw.utime_sec + raw.utime_usec / 1e6
        self.ru_stime = raw.stime_sec + raw.stime_usec / 1e6
        self.ru_maxrss = raw.maxrss


def wait4(pid: int) -> tuple[int, int, Usage]:
    """os.wait4(pid, 0) without its cost: os.wait4 imports the resource module
    (~0.5 ms) for its result type. Retries on EINTR as os.wait4 does (PEP 475);
    Python signal handlers run between the attempts, and an exception they raise
    propagates. Raises ChildProcessError like os.wait4."""
    status = ctypes.c_int()
    usage = _Rusage()
    while True:
        res = _libc.wait4(pid, ctypes.byref(status), 0, ctypes.byref(usage))
        if res >= 0:
            return res, status.value, Usage(usage)
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def children_usage() -> Usage:
    """getrusage(RUSAGE_CHILDREN): what every reaped descendant used, as a pooled
    sandbox's pid 1 reports it before the namespace is torn down."""
    usage = _Rusage()
    if _libc.getrusage(-1, ctypes.byref(usage)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return Usage(usage)


class _SeccompVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


def libseccomp_version() -> tuple[int, int, int]:
    """The installed libseccomp's version, without importing pyseccomp (for
    `jailpy check`); OSError when the library cannot be loaded."""
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_version.restype = ctypes.POINTER(_SeccompVersion)
    version = lib.seccomp_version().contents
    return version.major, version.minor, version.micro
