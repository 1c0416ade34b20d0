"""Attack probes: the same code runs inside the sandbox and, as a counterpart, outside.

    python3 probe.py ATTACK [ARGS...]

Prints one JSON line: {"ok": true, "value": ...} when the operation worked,
{"ok": false, "errno": "EPERM"} when the kernel refused it. A probe killed by
a seccomp filter prints nothing and dies of SIGSYS. Only the standard
library and ctypes: it runs with the system python3 inside the default
profile, where /usr is bound read-only.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# x86_64 syscall numbers (the suite runs on x86_64; other arches are skipped).
NR = {"ioctl": 16, "ptrace": 101, "keyctl": 250, "bpf": 321, "perf_event_open": 298,
      "userfaultfd": 323, "process_vm_readv": 310, "unshare": 272, "clone": 56,
      "clone3": 435, "setns": 308, "name_to_handle_at": 303, "open_by_handle_at": 304,
      "mount": 165, "umount2": 166, "pivot_root": 155, "mount_setattr": 442, "chroot": 161}
CLONE_NEWUSER = 0x10000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


def out(ok: bool, value=None, err: int | None = None) -> None:
    result = {"ok": ok}
    if value is not None:
        result["value"] = value
    if err is not None:
        result["errno"] = errno.errorcode.get(err, str(err))
    print(json.dumps(result), flush=True)


def sys_call(name: str, *args) -> None:
    """Raw syscall; reports ok/errno."""
    res = libc.syscall(ctypes.c_long(NR[name]), *args)
    if res < 0:
        out(False, err=ctypes.get_errno())
    else:
        out(True, res)


def guarded(func, *args) -> None:
    try:
        value = func(*args)
    except OSError as exc:
        out(False, err=exc.errno)
    else:
        out(True, value)


# -- terminal -----------------------------------------------------------------


def tiocsti(high_bits: str = "") -> None:
    cmd = TIOCSTI | (1 << 32 if high_bits else 0)
    char = ctypes.c_char(b"#")
    sys_call("ioctl", ctypes.c_int(0), ctypes.c_ulong(cmd), ctypes.byref(char))


def tioclinux() -> None:
    sub = ctypes.c_char(b"\x0b")  # TIOCL_GETSHIFTSTATE: harmless read on a real VT
    sys_call("ioctl", ctypes.c_int(0), ctypes.c_ulong(TIOCLINUX), ctypes.byref(sub))


# -- other processes --------------------------------------------------------------


def ptrace(pid: str) -> None:
    res = libc.syscall(ctypes.c_long(NR["ptrace"]), ctypes.c_long(16), ctypes.c_long(int(pid)),
                       None, None)  # PTRACE_ATTACH
    if res < 0:
        return out(False, err=ctypes.get_errno())
    os.waitpid(int(pid), 0)
    libc.syscall(ctypes.c_long(NR["ptrace"]), ctypes.c_long(17), ctypes.c_long(int(pid)),
                 None, None)  # PTRACE_DETACH
    out(True, "attached")


def vm_read(pid: str, address: str) -> None:
    buf = ctypes.create_string_buffer(16)

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 16)
    remote = IoVec(int(address, 16), 16)
    sys_call("process_vm_readv", ctypes.c_long(int(pid)), ctypes.byref(local), ctypes.c_ulong(1),
             ctypes.byref(remote), ctypes.c_ulong(1), ctypes.c_ulong(0))


def kill(pid: str) -> None:
    guarded(os.kill, int(pid), 0)


def proc_root(pid: str) -> None:
    guarded(lambda: (os.readlink(f"/proc/{pid}/root"), os.listdir(f"/proc/{pid}/root/")[:3]))


def proc_ns(pid: str) -> None:
    def opened():
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
        os.close(fd)
        return "opened"
    guarded(opened)


def setns(fd: str) -> None:
    sys_call("setns", ctypes.c_int(int(fd)), ctypes.c_int(CLONE_NEWUSER))


# -- privileged kernel interfaces ---------------------------------------------------


def handle(path: str) -> None:
    """name_to_handle_at + open_by_handle_at (the 'shocker' container escape)."""
    class FileHandle(ctypes.Structure):
        _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int),
                    ("data", ctypes.c_ubyte * 128)]

    fh = FileHandle(128, 0)
    mount_id = ctypes.c_int()
    res = libc.syscall(ctypes.c_long(NR["name_to_handle_at"]), ctypes.c_int(-100),
                       path.encode(), ctypes.byref(fh), ctypes.byref(mount_id), ctypes.c_int(0))
    if res < 0:
        return out(False, "name_to_handle_at", ctypes.get_errno())
    mount_fd = os.open(path, os.O_RDONLY)
    sys_call("open_by_handle_at", ctypes.c_int(mount_fd), ctypes.byref(fh),
             ctypes.c_int(os.O_RDONLY))


def mount(target: str) -> None:
    sys_call("mount", b"none", target.encode(), b"tmpfs", ctypes.c_ulong(0), None)


def mount_then_pivot(target: str) -> None:
    """mount a tmpfs, unmount it, mount again, pivot_root into it: each step must work."""
    for step, args in (("mount", (b"none", target.encode(), b"tmpfs", ctypes.c_ulong(0), None)),
                       ("umount2", (target.encode(), ctypes.c_int(0))),
                       ("mount", (b"none", target.encode(), b"tmpfs", ctypes.c_ulong(0), None))):
        if libc.syscall(ctypes.c_long(NR[step]), *args) < 0:
            return out(False, step, ctypes.get_errno())
    os.chdir(target)
    if libc.syscall(ctypes.c_long(NR["pivot_root"]), b".", b".") < 0:
        return out(False, "pivot_root", ctypes.get_errno())
    out(True, "pivoted")


def umount(target: str) -> None:
    sys_call("umount2", target.encode(), ctypes.c_int(2))  # MNT_DETACH


def pivot_root() -> None:
    sys_call("pivot_root", b".", b".")


def remount_rw(target: str) -> None:
    """Clear the read-only flag of a bind mount: mount(2) remount, then mount_setattr."""
    res = libc.syscall(ctypes.c_long(NR["mount"]), None, target.encode(), None,
                       ctypes.c_ulong(0x20 | 0x1000), None)  # MS_REMOUNT|MS_BIND, no MS_RDONLY
    if res < 0:
        first = ctypes.get_errno()

        class MountAttr(ctypes.Structure):
            _fields_ = [("set", ctypes.c_uint64), ("clr", ctypes.c_uint64),
                        ("propagation", ctypes.c_uint64), ("userns", ctypes.c_uint64)]

        attr = MountAttr(0, 1, 0, 0)  # clear MOUNT_ATTR_RDONLY
        res = libc.syscall(ctypes.c_long(NR["mount_setattr"]), ctypes.c_int(-100),
                           target.encode(), ctypes.c_uint(0), ctypes.byref(attr),
                           ctypes.c_size_t(32))
        if res < 0:
            return out(False, f"mount: {errno.errorcode[first]}", ctypes.get_errno())
    try:
        with open(os.path.join(target, "written"), "w") as f:
            f.write("rw")
    except OSError as exc:
        return out(False, "remounted, write failed", exc.errno)
    out(True, "written")


def write(path: str) -> None:
    def do():
        with open(path, "w") as f:
            f.write("x")
        return "written"
    guarded(do)


def mknod(path: str) -> None:
    guarded(lambda: os.mknod(path, 0o600 | 0o020000, os.makedev(1, 3)) or "created")


def keyctl() -> None:
    sys_call("keyctl", ctypes.c_long(0), ctypes.c_long(-3), ctypes.c_long(1))  # session keyring


def keyctl_trapped() -> None:
    """keyctl with a SIGSYS handler installed: tells 'trap' from 'kill'."""
    signal.signal(signal.SIGSYS, lambda *_: print(json.dumps({"sigsys": True}), flush=True))
    keyctl()


def bpf() -> None:
    # An unknown command: outside, bpf() itself answers EINVAL; inside, the filter answers.
    sys_call("bpf", ctypes.c_int(0x7FFF), None, ctypes.c_uint(0))


def perf() -> None:
    attr = bytearray(128)
    struct.pack_into("<IIQ", attr, 0, 1, 128, 0)  # PERF_TYPE_SOFTWARE, size, CPU_CLOCK
    struct.pack_into("<Q", attr, 40, (1 << 0) | (1 << 5) | (1 << 6))  # disabled, excl kernel/hv
    buf = (ctypes.c_char * 128).from_buffer(attr)
    sys_call("perf_event_open", ctypes.byref(buf), ctypes.c_int(0), ctypes.c_int(-1),
             ctypes.c_int(-1), ctypes.c_ulong(0))


def userfaultfd() -> None:
    sys_call("userfaultfd", ctypes.c_int(os.O_CLOEXEC | 1))  # UFFD_USER_MODE_ONLY


# -- namespaces ------------------------------------------------------------------


def unshare_user() -> None:
    sys_call("unshare", ctypes.c_ulong(CLONE_NEWUSER))


def clone_user() -> None:
    """Raw clone(2) with CLONE_NEWUSER; the child exits at once."""
    pid = libc.syscall(ctypes.c_long(NR["clone"]), ctypes.c_ulong(CLONE_NEWUSER | signal.SIGCHLD),
                       None, None, None, None)
    _cloned(pid)


def clone3_user() -> None:
    args = struct.pack("<QQQQQQQQ", CLONE_NEWUSER, 0, 0, 0, signal.SIGCHLD, 0, 0, 0)
    buf = ctypes.create_string_buffer(args, len(args))
    pid = libc.syscall(ctypes.c_long(NR["clone3"]), buf, ctypes.c_size_t(len(args)))
    _cloned(pid)


def _cloned(pid: int) -> None:
    """What a raw clone returned: the child leaves at once, the parent reports."""
    if pid == 0:
        os._exit(0)
    if pid < 0:
        return out(False, err=ctypes.get_errno())
    os.waitpid(pid, 0)
    out(True, "cloned")


def thread() -> None:
    """A thread (glibc tries clone3 first and must fall back to clone on ENOSYS)."""
    import threading

    seen = []
    t = threading.Thread(target=lambda: seen.append(1))
    t.start()
    t.join()
    out(bool(seen), "thread ran")


# -- network -----------------------------------------------------------------------


def abstract(name: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    guarded(lambda: s.connect("\0" + name) or "connected")


def tcp(port: str) -> None:
    s = socket.socket()
    s.settimeout(5)
    guarded(lambda: s.connect(("127.0.0.1", int(port))) or "connected")


def tcp_ports(*ports: str) -> None:
    """Listen on and connect to each port inside the sandbox: {port: result}."""
    results = {}
    for port in ports:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", int(port)))
            server.listen(1)
        except OSError as exc:
            results[port] = "bind:" + errno.errorcode[exc.errno]
            continue
        client = socket.socket()
        try:
            client.connect(("127.0.0.1", int(port)))
            results[port] = "ok"
        except OSError as exc:
            results[port] = "connect:" + errno.errorcode[exc.errno]
    out(True, results)


# -- descriptors, files, environment -------------------------------------------------


def fd_read(fd: str) -> None:
    guarded(lambda: os.read(int(fd), 64).decode(errors="replace"))


def dirfd_open(fd: str, relative: str) -> None:
    def do():
        f = os.open(relative, os.O_RDONLY, dir_fd=int(fd))
        return os.read(f, 64).decode()
    guarded(do)


def chroot(path: str) -> None:
    guarded(lambda: os.chroot(path) or "chrooted")


def read(path: str) -> None:
    def do():
        with open(path) as f:
            return f.read(64)
    guarded(do)


def umount_all() -> None:
    """Detach every mount point, deepest first, to reveal what is under them:
    reports how many the kernel let go."""
    with open("/proc/self/mountinfo") as f:
        points = sorted({line.split()[4] for line in f}, key=len, reverse=True)
    gone = sum(libc.syscall(ctypes.c_long(NR["umount2"]), p.encode(), ctypes.c_int(2)) == 0
               for p in points)
    out(True, gone)


def inotify_hog() -> None:
    """How many inotify instances this process can hold (bounded)."""
    held = 0
    while held < 10000 and libc.inotify_init() >= 0:
        held += 1
    out(True, held)


def env() -> None:
    out(True, dict(os.environ))


def status() -> None:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.startswith("Cap") or key in ("NoNewPrivs", "Seccomp"):
                fields[key] = value.strip()
    fields["securebits"] = libc.prctl(27, 0, 0, 0, 0)  # PR_GET_SECUREBITS
    out(True, fields)


def kill_outside(pid: str) -> None:
    """Signal a process; used with a shared pid namespace to test Landlock scoping."""
    guarded(lambda: os.kill(int(pid), signal.SIGCONT) or "signalled")


def batch(cases: str) -> None:
    """Several probes in one interpreter (a JSON list of argv lists): each runs in a
    child of its own, between "@N" and "@status CODE" lines (128+N for signal N), so
    a probe killed by seccomp ends only itself. A program path runs as is."""
    for number, argv in enumerate(json.loads(cases)):
        print(f"@{number}", flush=True)
        pid = os.fork()
        if pid == 0:
            try:
                if argv[0].startswith("/"):
                    os.execv(argv[0], argv)
                globals()[argv[0].replace("-", "_")](*argv[1:])
                sys.stdout.flush()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"@status {code}", flush=True)


if __name__ == "__main__":
    name, *rest = sys.argv[1:]
    globals()[name.replace("-", "_")](*rest)
