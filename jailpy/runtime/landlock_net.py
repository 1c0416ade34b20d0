"""Landlock TCP port rules: network.allow_connect_tcp / network.allow_bind_tcp.

Landlock ABI 4 (Linux 6.7) lets an unprivileged process restrict which TCP
ports it may connect(2) to and bind(2) on; the restriction is inherited by
every descendant and cannot be lifted. This module is deliberately minimal
and self-contained (a ruleset that handles only network access); the general
Landlock support (filesystem rules, scopes) lives in its own module, and the
two can share one ruleset once both exist -- see docs/network.md.

Called in the target after no_new_privs and before seccomp/execve. It must be
imported by the supervisor before the fork (runtime/network.py does that),
since the target runs after pivot_root, where the interpreter's files may not
be visible.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..errors import SetupError, UnsupportedError
from ..linux.syscalls import _syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..policy import Network

# Same numbers on every architecture (the unified syscall table).
_NR_CREATE_RULESET = 444
_NR_ADD_RULE = 445
_NR_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
ACCESS_NET_BIND_TCP = 1
ACCESS_NET_CONNECT_TCP = 2
_RULE_NET_PORT = 2
#: First ABI with TCP port rules.
NET_ABI = 4


class _RulesetAttr(ctypes.Structure):
    # Only the fields up to handled_access_net: the kernel accepts a shorter
    # struct from older callers, so this works on every ABI >= 4.
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _call(number: int, *args: object) -> int:
    result = _syscall(number, *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 when Landlock is missing or disabled."""
    try:
        return _call(_NR_CREATE_RULESET, None, ctypes.c_size_t(0),
                     ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError:
        return 0


def restrict_ports(connect: tuple[int, ...] | None, bind: tuple[int, ...] | None) -> None:
    """Allow only these ports for connect/bind (None: that access is not restricted)."""
    handled = (ACCESS_NET_CONNECT_TCP if connect is not None else 0) | \
        (ACCESS_NET_BIND_TCP if bind is not None else 0)
    if not handled:
        return
    attr = _RulesetAttr(0, handled)
    ruleset = _call(_NR_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                    ctypes.c_uint32(0))
    try:
        allowed: dict[int, int] = {}
        for port in connect or ():
            allowed[port] = allowed.get(port, 0) | ACCESS_NET_CONNECT_TCP
        for port in bind or ():
            allowed[port] = allowed.get(port, 0) | ACCESS_NET_BIND_TCP
        for port, access in sorted(allowed.items()):
            rule = _NetPortAttr(access, port)
            _call(_NR_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_NET_PORT),
                  ctypes.byref(rule), ctypes.c_uint32(0))
        _call(_NR_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def _origin(network: "Network") -> str:
    if network.origins:
        return network.origins[0][1]
    return "network.allow_connect_tcp" if network.allow_connect_tcp is not None \
        else "network.allow_bind_tcp"


def unsupported(network: "Network", abi: int) -> UnsupportedError:
    have = f"this kernel has Landlock ABI {abi}" if abi else "Landlock is not available here"
    return UnsupportedError(f"TCP port rules need Landlock ABI {NET_ABI} (Linux 6.7 or newer); "
                            f"{have}", origin=_origin(network),
                            hint="set network.best_effort = true to run without the port "
                            "rules, or use a newer kernel with Landlock enabled (lsm=landlock)")


def apply(network: "Network") -> None:
    """In the target: enforce the port rules, or fail closed unless best-effort."""
    try:
        restrict_ports(network.allow_connect_tcp, network.allow_bind_tcp)
    except OSError as exc:
        if network.best_effort:
            return
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise unsupported(network, abi_version()) from exc
        raise SetupError(f"cannot apply the Landlock port rules: {exc.strerror}",
                         origin=_origin(network)) from exc
