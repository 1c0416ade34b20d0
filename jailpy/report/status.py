"""The machine-readable result: one JSON object per run (--json-status).

A CI system should not have to parse stderr to learn whether a build failed,
was killed by the OOM killer or hit the timeout. The object always has every
key (null when it does not apply), so a consumer can index it blindly; the
fields are documented in jailpy(1), section JSON STATUS.
"""

from __future__ import annotations

import json
import os
import signal as _signal
from typing import Any

from ..errors import ConfigError, JailpyError
from ..runtime.launcher import Result

#: Bumped when a field changes meaning; new fields do not bump it.
FORMAT_VERSION = 1


def _signal_name(sig: int | None) -> str | None:
    if sig is None:
        return None
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


def _empty(exit_code: int) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "exit_code": exit_code, "command_exit_code": None,
            "signal": None, "signal_name": None, "timed_out": False, "ended_by": None,
            "limits_hit": [], "wall_time": None, "user_time": None, "system_time": None,
            "peak_memory": None, "max_rss": None, "cgroup": None, "limits_not_applied": [],
            "egress": None, "error": None}


def result_document(result: Result) -> dict[str, Any]:
    doc = _empty(result.exit_code)
    doc.update(command_exit_code=result.command_exit_code, signal=result.signal,
               signal_name=_signal_name(result.signal), timed_out=result.timed_out,
               ended_by=result.ended_by, limits_hit=list(result.limits_hit),
               wall_time=round(result.wall_time, 6), user_time=round(result.user_time, 6),
               system_time=round(result.system_time, 6), peak_memory=result.peak_memory,
               max_rss=result.max_rss, cgroup=result.cgroup,
               limits_not_applied=list(result.limits_not_applied), egress=result.egress)
    return doc


def error_document(err: JailpyError) -> dict[str, Any]:
    """jailpy's own failure (125), or a command that could not run (126/127)."""
    doc = _empty(err.exit_code)
    doc["error"] = str(err)
    return doc


class StatusSink:
    """Where the JSON goes: a file, '-' for stdout, or an inherited fd.

    A file is never written through a link: a temporary file beside it is
    created before the run (O_EXCL|O_NOFOLLOW in the directory opened once, so
    a bad path fails early) and renamed over the name at the end, which
    replaces a symlink planted there instead of following it. The temporary
    file is jailpy's own state while the sandbox runs (`written`: read-only
    inside, plan.guard_ops)."""

    def __init__(self, path: str | None = None, fd: int | None = None,
                 pass_fds: tuple[int, ...] = ()):
        self.fd: int | None = None
        self.dir_fd: int | None = None
        self.name = self.tmp = ""
        self.written: tuple[str, ...] = ()
        if path is not None and fd is not None:
            raise ConfigError("give either --json-status or --json-status-fd, not both",
                              origin="--json-status-fd")
        if path == "-":
            self.fd = 1
        elif path is not None:
            self._create(path)
        elif fd is not None:
            origin = f"--json-status-fd {fd}"
            if fd in (0, 1, 2):
                raise ConfigError(f"file descriptor {fd} is the command's "
                                  f"{('stdin', 'stdout', 'stderr')[fd]}", origin=origin,
                                  hint="use --json-status - for stdout, or another fd")
            if fd in pass_fds:
                raise ConfigError(f"file descriptor {fd} is also given to the command "
                                  "with --pass-fd, which could write a forged status",
                                  origin=origin)
            try:
                os.fstat(fd)
            except (OSError, OverflowError) as exc:  # OverflowError: beyond any C int
                raise ConfigError(f"file descriptor {fd} is not open",
                                  origin=origin) from exc
            os.set_inheritable(fd, False)  # never leaks into the sandbox
            self.fd = fd

    def _create(self, path: str) -> None:
        from ..errors import refuse_control

        refuse_control(path, "--json-status")
        directory, self.name = os.path.split(os.path.abspath(path))
        self.tmp = f".{self.name}.{os.getpid()}.tmp"
        try:
            self.dir_fd = os.open(directory or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o644, dir_fd=self.dir_fd)
        except OSError as exc:
            self.close()
            raise ConfigError(f"cannot write {path}: {exc.strerror}",
                              origin="--json-status") from exc
        self.written = (os.path.join(directory, self.tmp),)

    def write(self, doc: dict[str, Any]) -> None:
        if self.fd is None:
            return
        data = (json.dumps(doc, sort_keys=True) + "\n").encode()
        try:
            if self.dir_fd is not None:
                os.ftruncate(self.fd, 0)
                os.lseek(self.fd, 0, os.SEEK_SET)
            while data:
                data = data[os.write(self.fd, data):]
            if self.dir_fd is not None:
                os.rename(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
                self.tmp = ""
        except OSError:
            pass  # the reader went away; the exit status still tells the story
        self.close()

    def close(self) -> None:
        """Close what a file sink holds, removing a temporary file never renamed."""
        if self.dir_fd is None:
            self.fd = None
            return
        if self.fd is not None:
            os.close(self.fd)
        if self.tmp:
            try:
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            except OSError:
                pass
        os.close(self.dir_fd)
        self.fd = self.dir_fd = None
