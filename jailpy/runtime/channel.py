"""The report pipe: how processes inside tell the supervisor what happened.

Setup failures happen in processes that cannot print nicely (pid 1, the
target just before execve). They send one JSON line each over a CLOEXEC pipe;
lines stay below PIPE_BUF so concurrent writers never interleave.
"""

from __future__ import annotations

import json
import os

from ..errors import CommandError, JailpyError, SetupError


def send(fd: int, **message: object) -> None:
    data = (json.dumps(message) + "\n").encode()
    try:
        os.write(fd, data[:4000] if len(data) > 4000 else data)
    except OSError:
        pass  # the supervisor is gone; there is nobody left to tell


def send_error(fd: int, exc: BaseException) -> None:
    if isinstance(exc, JailpyError):
        send(fd, error=type(exc).__name__, message=exc.message, origin=exc.origin,
             hint=exc.hint, exit_code=exc.exit_code)
    elif isinstance(exc, OSError):
        send(fd, error="SetupError", message=exc.strerror or str(exc),
             origin=exc.filename and str(exc.filename), hint=None, exit_code=125)
    else:
        send(fd, error="SetupError", message=f"internal error: {exc!r}", origin=None,
             hint="run with --debug and report this", exit_code=125)


def receive(fd: int, first_only: bool = False) -> list[dict]:
    """Read messages until EOF (or until one arrives, when first_only)."""
    buf = b""
    messages: list[dict] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            messages.append(json.loads(line))
        if first_only and messages:
            break
    return messages


def error_from(message: dict) -> JailpyError:
    if message.get("error") == "CommandError":
        return CommandError(message["message"], message["exit_code"], message.get("origin"))
    err = SetupError(message["message"], message.get("origin"), message.get("hint"))
    err.exit_code = message.get("exit_code", 125)
    return err
