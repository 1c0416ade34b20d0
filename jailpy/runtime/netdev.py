"""Network devices inside a fresh network namespace.

Done with two ioctls through ctypes rather than the socket module, which
would cost an import on every start-up for one call.
"""

from __future__ import annotations

import ctypes
import os

from ..linux.syscalls import _libc

_AF_INET = 2
_SOCK_DGRAM = 2
_SOCK_CLOEXEC = 0o2000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def bring_up_loopback() -> None:
    """A new network namespace starts with lo down; nothing works until it is up."""
    sock = _libc.socket(_AF_INET, _SOCK_DGRAM | _SOCK_CLOEXEC, 0)
    if sock < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"socket: {os.strerror(err)}")
    try:
        ifreq = ctypes.create_string_buffer(b"lo", 40)  # struct ifreq: name[16] + union
        for request in (_SIOCGIFFLAGS, _SIOCSIFFLAGS):
            if request == _SIOCSIFFLAGS:
                flags = int.from_bytes(ifreq.raw[16:18], "little") | _IFF_UP
                ctypes.memmove(ctypes.addressof(ifreq) + 16, flags.to_bytes(2, "little"), 2)
            if _libc.ioctl(sock, ctypes.c_ulong(request), ifreq) < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"bringing up lo: {os.strerror(err)}")
    finally:
        os.close(sock)
