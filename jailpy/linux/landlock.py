"""ctypes bindings for Landlock (linux/landlock.h) and what each ABI covers.

Landlock is versioned by an ABI number the kernel reports; each version adds
access rights or rule types. Everything here is plain data plus three thin
syscall wrappers that raise OSError with the real errno.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# Syscall numbers >= 424 are the same on every architecture (alpha aside).
_NR_CREATE_RULESET, _NR_ADD_RULE, _NR_RESTRICT_SELF = 444, 445, 446

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2

# Filesystem access rights.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13       # ABI 2
FS_TRUNCATE = 1 << 14    # ABI 3
FS_IOCTL_DEV = 1 << 15   # ABI 5

# Network access rights (ABI 4).
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1

# Scopes (ABI 6).
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

FS_READ = FS_READ_FILE | FS_READ_DIR
FS_WRITE = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR
            | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM
            | FS_REFER | FS_TRUNCATE)
#: Rights that may be granted on a non-directory.
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

#: Filesystem rights each ABI handles (cumulative).
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
              5: (1 << 16) - 1}


def fs_rights(abi: int) -> int:
    return _FS_BY_ABI[min(abi, 5)] if abi >= 1 else 0


#: What each ABI version added, for `jailpy check` and --explain.
ABI_FEATURES = {
    1: "filesystem access control", 2: "rename/link across directories (refer)",
    3: "truncate", 4: "TCP bind/connect ports", 5: "device ioctls",
    6: "scoping of signals and abstract unix sockets", 7: "audit logging controls",
}


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def abi_version() -> tuple[int, str]:
    """The kernel's Landlock ABI, or 0 and why it is unavailable."""
    res = _syscall(_NR_CREATE_RULESET, None, ctypes.c_size_t(0),
                   ctypes.c_uint32(CREATE_RULESET_VERSION))
    if res >= 0:
        return res, ""
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, "the kernel was built without Landlock (CONFIG_SECURITY_LANDLOCK)"
    if err == errno.EOPNOTSUPP:
        return 0, "Landlock is built in but not enabled (add landlock to the lsm= boot option)"
    return 0, os.strerror(err)


def create_ruleset(handled_fs: int, handled_net: int, scoped: int, abi: int) -> int:
    attr = _RulesetAttr(handled_fs, handled_net, scoped)
    # Older kernels reject fields they do not know: pass only what this ABI has.
    size = (ctypes.sizeof(ctypes.c_uint64) * (3 if abi >= 6 else 2 if abi >= 4 else 1))
    return _check(_syscall(_NR_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0)), "landlock_create_ruleset")


def add_path_rule(ruleset_fd: int, parent_fd: int, access: int) -> None:
    rule = _PathBeneath(access, parent_fd)
    _check(_syscall(_NR_ADD_RULE, ctypes.c_int(ruleset_fd), ctypes.c_int(RULE_PATH_BENEATH),
                    ctypes.byref(rule), ctypes.c_uint32(0)), "landlock_add_rule")


def add_port_rule(ruleset_fd: int, port: int, access: int) -> None:
    rule = _NetPort(access, port)
    _check(_syscall(_NR_ADD_RULE, ctypes.c_int(ruleset_fd), ctypes.c_int(RULE_NET_PORT),
                    ctypes.byref(rule), ctypes.c_uint32(0)), "landlock_add_rule")


def restrict_self(ruleset_fd: int) -> None:
    _check(_syscall(_NR_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0)),
           "landlock_restrict_self")
