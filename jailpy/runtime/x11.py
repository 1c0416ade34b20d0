"""X11 displays and Xauthority cookies.

The sandbox gets the socket of one display and one cookie for it, never the
caller's whole Xauthority file (which holds cookies for every display and
host the user has used). Entries in the file are usually FamilyLocal and tied
to the host name; the sandbox has its own host name, so the copied entry is
rewritten to FamilyWild, which Xlib accepts for any host.

Xauthority format (Xau): a sequence of entries, each
    family: u16, address, number, name, data: u16 length + bytes
all big-endian.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess

from ..errors import SetupError, UnsupportedError
from ..plan.desktop import Display
from ..record import Record

FAMILY_LOCAL = 256
FAMILY_WILD = 65535
class AuthEntry(Record):
    family: int
    address: bytes
    number: bytes
    name: bytes
    data: bytes


def read_entries(blob: bytes) -> list[AuthEntry]:
    """Parse an Xauthority file; a truncated tail is ignored, as Xau does."""
    entries: list[AuthEntry] = []
    pos = 0
    while pos + 2 <= len(blob):
        (family,) = struct.unpack_from(">H", blob, pos)
        pos += 2
        fields: list[bytes] = []
        for _ in range(4):
            if pos + 2 > len(blob):
                return entries
            (length,) = struct.unpack_from(">H", blob, pos)
            pos += 2
            if pos + length > len(blob):
                return entries
            fields.append(blob[pos:pos + length])
            pos += length
        entries.append(AuthEntry(family, *fields))
    return entries


def write_entries(entries: list[AuthEntry]) -> bytes:
    out = bytearray()
    for e in entries:
        out += struct.pack(">H", e.family)
        for field in (e.address, e.number, e.name, e.data):
            out += struct.pack(">H", len(field)) + field
    return bytes(out)


def cookie_for(entries: list[AuthEntry], number: str, hostname: str) -> AuthEntry | None:
    """The entry Xlib would use for local display `number`, rewritten to FamilyWild."""
    wanted = number.encode()
    host = hostname.encode()
    candidates = [e for e in entries if e.number == wanted and
                  (e.family == FAMILY_WILD or (e.family == FAMILY_LOCAL and e.address == host))]
    if not candidates:
        # A file copied between hosts: any local entry for this display number.
        candidates = [e for e in entries if e.number == wanted and e.family == FAMILY_LOCAL]
    if not candidates:
        return None
    e = candidates[0]
    return AuthEntry(FAMILY_WILD, b"", e.number, e.name, e.data)


def trusted_cookie(xauthority: str | None, display: Display, origin: str) -> bytes:
    """An Xauthority blob holding only this display's cookie (empty if there is none)."""
    if xauthority is None:
        return b""
    try:
        with open(xauthority, "rb") as f:
            entries = read_entries(f.read())
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise SetupError(f"cannot read the X cookie file {xauthority}: {exc.strerror}",
                         origin=origin) from exc
    entry = cookie_for(entries, display.number, socket.gethostname())
    return write_entries([entry]) if entry else b""


def untrusted_cookie(xauthority: str | None, display: Display, scratch: str,
                     env: dict[str, str], origin: str) -> bytes:
    """Ask the X server (SECURITY extension) for an untrusted cookie via `xauth generate`.

    `scratch` is a private file path xauth may write to; it is removed afterwards.
    """
    import shutil

    xauth = shutil.which("xauth", path=env.get("PATH") or os.defpath)
    if xauth is None:
        raise UnsupportedError("x11_untrusted needs the xauth program, which is not installed",
                               origin=origin, hint="install the 'xauth' package")
    child_env = {"PATH": env.get("PATH") or os.defpath, "DISPLAY": display.name}
    if xauthority:
        child_env["XAUTHORITY"] = xauthority
    if "HOME" in env:
        child_env["HOME"] = env["HOME"]
    # timeout 0: the server never purges the cookie on its own; apps that drop all
    # connections and reconnect later (some toolkits do) keep working.
    argv = [xauth, "-q", "-f", scratch, "generate", display.name, "MIT-MAGIC-COOKIE-1",
            "untrusted", "timeout", "0"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=child_env, timeout=20,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"xauth generate for {display.name} timed out", origin=origin) from exc
    try:
        with open(scratch, "rb") as f:
            entries = read_entries(f.read())
        os.unlink(scratch)
    except FileNotFoundError:
        entries = []
    entry = cookie_for(entries, display.number, socket.gethostname())
    if entry is None:
        detail = (proc.stderr.strip().splitlines() or ["no cookie written"])[-1]
        if "security" in detail.lower():
            raise UnsupportedError(
                f"the X server on {display.name} does not support untrusted cookies "
                "(no SECURITY extension)", origin=origin,
                hint="use x11 = true (a trusted cookie) instead, if you trust this app "
                "with the whole display")
        raise SetupError(f"xauth could not generate an untrusted cookie for {display.name}: "
                         f"{detail}", origin=origin,
                         hint="check that the display is reachable with its trusted cookie")
    return write_entries([entry])
