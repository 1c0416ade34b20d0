"""The report pipe: how processes inside tell the supervisor what happened.

Setup failures happen in processes that cannot print nicely (pid 1, the
target just before execve). They send one message each over a CLOEXEC pipe:
a marshal-encoded dict behind a 4-byte length, kept below PIPE_BUF so
concurrent writers never interleave. marshal is built in, so this costs no
import at start-up (json would).
"""

from __future__ import annotations

import marshal
import os

from ..errors import CommandError, JailpyError, SetupError


_PIPE_BUF = 4096


def send(fd: int, **message: object) -> None:
    body = marshal.dumps(message)
    if len(body) > _PIPE_BUF - 4:
        message["message"] = str(message.get("message", ""))[:1000]
        body = marshal.dumps(message)
    try:
        os.write(fd, len(body).to_bytes(4, "little") + body)
    except OSError:
        pass  # the supervisor is gone; there is nobody left to tell


def send_error(fd: int, exc: BaseException) -> None:
    send(fd, **describe(exc))


def describe(exc: BaseException) -> dict:
    """An exception as a message error_from() turns back into a JailpyError."""
    if isinstance(exc, JailpyError):
        return dict(error=type(exc).__name__, message=exc.message, origin=exc.origin,
                    hint=exc.hint, exit_code=exc.exit_code)
    if isinstance(exc, OSError):
        return dict(error="SetupError", message=exc.strerror or str(exc),
                    origin=exc.filename and str(exc.filename), hint=None, exit_code=125)
    return dict(error="SetupError", message=f"internal error: {exc!r}", origin=None,
                hint="run with --debug and report this", exit_code=125)


def receive(fd: int, first_only: bool = False) -> list[dict]:
    """Read messages until EOF (or until one arrives, when first_only)."""
    buf = b""
    messages: list[dict] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        batch, buf = _unframe(buf + chunk)
        messages += batch
        if first_only and messages:
            break
    return messages


class Reader:
    """Incremental reads for a supervisor that waits on the pipe with a deadline."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def read(self) -> list[dict] | None:
        """The complete messages one read(2) brings, or None at EOF."""
        chunk = os.read(self.fd, 65536)
        if not chunk:
            return None
        messages, self.buf = _unframe(self.buf + chunk)
        return messages


def _unframe(buf: bytes) -> tuple[list[dict], bytes]:
    """The complete length-prefixed messages at the start of buf, and the rest."""
    messages = []
    while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "little"):
        size = int.from_bytes(buf[:4], "little")
        messages.append(marshal.loads(buf[4:4 + size]))
        buf = buf[4 + size:]
    return messages, buf


def error_from(message: dict) -> JailpyError:
    if message.get("error") == "CommandError":
        return CommandError(message["message"], message["exit_code"], message.get("origin"))
    err = SetupError(message["message"], message.get("origin"), message.get("hint"))
    err.exit_code = message.get("exit_code", 125)
    return err
