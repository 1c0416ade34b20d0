"""Landlock at run time: check the ABI (supervisor), build and enforce (target).

The supervisor decides in prepare(), before anything is forked, whether the
kernel's ABI covers what the plan's rules require: a missing feature is an
UnsupportedError unless the rule is best-effort, in which case the feature is
dropped and --explain says so. The target then opens every rule path inside
the new root (build_ruleset: after pivot_root, so paths mean what the sandbox
sees, and before the capability drop), adds the files behind its stdio and
passed descriptors (so /dev/stdout can be reopened), and restricts itself
(enforce) right before seccomp and execve. pid 1 and the helpers are
never restricted.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from ..errors import SetupError, UnsupportedError
from ..plan.landlock import EXECUTE, IOCTL, LIST, READ, WRITE, LandlockRules
from ..linux import landlock as ll
from ..record import Record


class LandlockSetup(Record):
    """What the target enforces: rights already narrowed to the kernel's ABI."""

    abi: int
    handled_fs: int
    handled_net: int
    scoped: int
    paths: tuple[tuple[str, int, bool, str], ...]
    connect_tcp: tuple[int, ...]
    bind_tcp: tuple[int, ...]


def _bits(access: frozenset[str]) -> int:
    bits = 0
    if LIST in access:
        bits |= ll.FS_READ_DIR
    if READ in access:
        bits |= ll.FS_READ
    if WRITE in access:
        bits |= ll.FS_WRITE
    if EXECUTE in access:
        bits |= ll.FS_EXECUTE
    if IOCTL in access:
        bits |= ll.FS_IOCTL_DEV
    return bits


def prepare(rules: LandlockRules | None) -> LandlockSetup | None:
    """Check this kernel against the rules; raises UnsupportedError (fail closed)."""
    if rules is None:
        return None
    return decide(rules, *ll.abi_version())


def decide(rules: LandlockRules, abi: int, why: str = "") -> LandlockSetup | None:
    """What a kernel with Landlock ABI `abi` can enforce of `rules`, or an error."""
    missing = [need for need in rules.requirements if need.abi > abi and not need.optional]
    if missing:
        need = missing[0]
        if abi == 0:
            message = f"Landlock is not available: {why}"
        else:
            message = (f"this kernel's Landlock ABI {abi} lacks {need.feature} "
                       f"(needs ABI {need.abi})")
        from_network = "network." in need.origin or need.origin.startswith("--allow-")
        lenient = "network.best_effort" if from_network else "landlock.best_effort"
        raise UnsupportedError(message, origin=need.origin,
                               hint=f"set {lenient} = true to run without it, or use a newer "
                                    "kernel")
    if abi == 0:
        return None
    handled_fs = ll.fs_rights(abi)
    net_ok = abi >= 4
    connect = rules.connect_tcp if net_ok else None
    bind = rules.bind_tcp if net_ok else None
    handled_net = ((ll.NET_CONNECT_TCP if connect is not None else 0)
                   | (ll.NET_BIND_TCP if bind is not None else 0))
    scoped = 0
    if abi >= 6:
        scoped |= ll.SCOPE_SIGNAL if rules.scope_signals else 0
        scoped |= ll.SCOPE_ABSTRACT_UNIX_SOCKET if rules.scope_abstract_unix else 0
    paths = tuple((r.path, _bits(r.access) & handled_fs, r.optional, r.origin)
                  for r in rules.paths)
    return LandlockSetup(abi, handled_fs, handled_net, scoped, paths, connect or (), bind or ())


def build_ruleset(setup: LandlockSetup, inherited_fds: tuple[int, ...]) -> int:
    """Create the ruleset in the target (inside the new root); returns its fd."""
    try:
        fd = ll.create_ruleset(setup.handled_fs, setup.handled_net, setup.scoped, setup.abi)
    except OSError as exc:
        raise SetupError(f"cannot create a Landlock ruleset: {os.strerror(exc.errno)}",
                         origin="landlock") from exc
    try:
        for path, access, optional, origin in setup.paths:
            _add_path(fd, path, access, optional, origin)
        for stream in inherited_fds:
            _add_inherited(fd, stream, setup.handled_fs)
        for port in setup.connect_tcp:
            ll.add_port_rule(fd, port, ll.NET_CONNECT_TCP)
        for port in setup.bind_tcp:
            ll.add_port_rule(fd, port, ll.NET_BIND_TCP)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _add_path(ruleset: int, path: str, access: int, optional: bool, origin: str) -> None:
    if not access:
        return
    try:
        target = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if optional:
            return
        raise SetupError(f"Landlock rule path {path} does not exist in the sandbox",
                         origin=origin) from None
    except OSError as exc:
        raise SetupError(f"cannot open {path} for a Landlock rule: {os.strerror(exc.errno)}",
                         origin=origin) from exc
    try:
        if not stat.S_ISDIR(os.fstat(target).st_mode):
            access &= ll.FS_FILE_RIGHTS
        ll.add_path_rule(ruleset, target, access)
    except OSError as exc:
        raise SetupError(f"cannot add a Landlock rule for {path}: {os.strerror(exc.errno)}",
                         origin=origin) from exc
    finally:
        os.close(target)


def _add_inherited(ruleset: int, fd: int, handled: int) -> None:
    """Let the sandbox reopen (as /dev/stdout, /proc/self/fd/N) what it was handed,
    with the access it was handed, and nothing next to or above it."""
    try:
        st = os.fstat(fd)
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        access = ll.FS_READ
    elif stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode):
        access = 0
        if mode in (os.O_RDONLY, os.O_RDWR):
            access |= ll.FS_READ_FILE
        if mode in (os.O_WRONLY, os.O_RDWR):
            access |= ll.FS_WRITE_FILE | ll.FS_TRUNCATE
        if stat.S_ISCHR(st.st_mode):
            access |= ll.FS_IOCTL_DEV
    else:
        return  # pipes and sockets are not path-based: Landlock does not restrict them
    try:
        ll.add_path_rule(ruleset, fd, access & handled)
    except OSError as exc:
        if exc.errno not in (errno.EBADFD, errno.EBADF, errno.EINVAL):
            raise SetupError(f"cannot add a Landlock rule for fd {fd}: "
                             f"{os.strerror(exc.errno)}", origin="landlock") from exc


def enforce(ruleset: int) -> None:
    """Restrict the calling process (no_new_privs must be set)."""
    try:
        ll.restrict_self(ruleset)
    except OSError as exc:
        raise SetupError(f"cannot enforce Landlock: {os.strerror(exc.errno)}",
                         origin="landlock") from exc
    finally:
        os.close(ruleset)
