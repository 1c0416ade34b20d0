"""A warm pool: sandboxes prepared ahead of their request (docs/pool.md).

    owner (the program)      ForkServer: one socket to the fork server, a
                             reader thread resolving each request's Future;
                             safe from any thread and from asyncio
    fork server (process)    `python -m jailpy.runtime.pool`: keeps `size`
                             PreparedSandboxes ready, hands each request to
                             one of them (a worker thread per running request,
                             kept for later ones; it only reads and writes pipes
                             and waits); a refill thread asks the zygote for
                             new sandboxes (the main thread refills itself,
                             by forking, where there is no zygote)
    zygote (process)         forked by the server while it has one thread;
                             clones each sandbox's pid 1 for it (Zygote)
    prepared sandbox         pid 1 cloned into its namespaces
                             (launcher.pid1_cloned_main), or, with host
                             sessions or without clone3, the launcher's own
                             namespace child and pid 1 (launcher.child_main):
                             the root is built, pid 1 has taken on every
                             restriction of the command and blocks in its
                             `handover` on the request pipe
    request                  pid 1 reads argv/env/cwd/files, writes the files
                             into the work dir and starts the command with
                             posix_spawn; it reports the status once every
                             process is gone, and the answer leaves before the
                             namespaces are torn down

A profile whose restrictions would stop pid 1 itself from reaping and reporting
(a seccomp allow-list, a deny-list refusing what pid 1 calls, rlimits: see
target.can_spawn) keeps the launcher's forked target instead, which applies them
and blocks in the handover.

Every sandbox serves exactly one request and is then destroyed, so nothing a
request does (files, processes, mounts, its pid namespace) is seen by the next.

Only the fork server's main thread forks, so no lock another thread holds is
ever copied into a child half-taken. The server lives in a session of its own
(a terminal's ^C is for the owner) and ends when its socket reads EOF (the
owner closed the pool or died, even by SIGKILL) or when its PDEATHSIG comes
and it finds itself re-parented (the owner died while a child of it keeps the
socket open; _watch_owner). Each prepared sandbox has PDEATHSIG too
(die_with_parent, tied to the server's main thread), so a killed server takes
its sandboxes along; slirp4netns follows its exit-fd's EOF.

Frames on the socket: 4-byte length + marshal (the plan travels once, pickled).
"""

from __future__ import annotations

import errno
import gc
import marshal
import os
import pickle
import queue
import select
import _signal as signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque

from ..errors import (EXIT_JAILPY_FAILURE, ConfigError, JailpyError, SetupError,
                      UnsupportedError)
from ..plan import Plan
from ..linux import syscalls as sc
from . import cgroups, channel, launcher, limits, target
from .init import KILL_ALL
from .watchdog import Watchdog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future

    from .launcher import HostSession, Result

#: Where a request's files are placed and where it starts: a tmpfs of each sandbox's own.
WORK_DIR = "/work"
#: The largest output_limit a request may ask for, per stream.
MAX_OUTPUT = 64 << 20
_CHUNK = 65536
#: Requests whose files are smaller are handed over by the server's main thread.
SMALL_REQUEST = 16384
#: The fewest processes a request may limit itself to: the sandbox's pid 1 is
#: one of them (it starts the command after the request's limit is set), the
#: command another.
MIN_PIDS = 2


# --- frames ----------------------------------------------------------------------


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "little") + payload


def _read_exactly(read, size: int) -> bytes | None:
    """`size` bytes from `read(n)`, or None at EOF before them."""
    parts: list[bytes] = []
    while size:
        chunk = read(min(size, _CHUNK * 16))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _read_frame(read) -> bytes | None:
    head = _read_exactly(read, 4)
    return None if head is None else _read_exactly(read, int.from_bytes(head, "little"))


# --- checks, on the owner's side --------------------------------------------------


def check_plan(plan: Plan) -> None:
    """What a pooled sandbox cannot do, refused before anything starts."""
    if not plan.new_pid_ns:
        raise ConfigError("a pool needs a pid namespace per sandbox, or a process left "
                          "running by one request could outlive it", origin="namespaces.pid")
    if not plan.new_mount_ns:
        raise ConfigError("a pool needs a mount namespace per sandbox (the work dir)",
                          origin="namespaces.mount")
    for used, key in ((plan.tty, "process.tty"), (plan.desktop is not None, "desktop"),
                      (plan.changes is not None, "--changes"),
                      (bool(plan.pass_fds), "process.pass_fds"),
                      (plan.wait_all, "process.wait_all"),
                      (plan.ids_mapped_by_caller, "process.ids_mapped_by_caller")):
        if used:
            raise ConfigError(f"{key} is not available in a pool", origin=key)


def check_request(plan: Plan, argv, env, stdin, files, cwd, timeout, memory, pids,
                  output_limit) -> dict:
    """One request as the frame the server reads; bad fields raise ConfigError naming them."""
    argv = [argv] if isinstance(argv, str) else list(argv)
    if not argv or not all(isinstance(a, str) and a and "\0" not in a for a in argv[:1]) \
            or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise ConfigError("argv must be a non-empty list of strings without NUL bytes",
                          origin="Pool.run(argv)")
    env = dict(env or {})
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name \
                or "=" in name or "\0" in name + value:
            raise ConfigError(f"bad environment entry {name!r}", origin="Pool.run(env)")
    if not isinstance(stdin, (bytes, bytearray)):
        raise ConfigError("stdin must be bytes", origin="Pool.run(stdin)")
    placed: dict[str, bytes] = {}
    for path, data in (files or {}).items():
        parts = path.split("/") if isinstance(path, str) else []
        if not parts or path.startswith("/") or "\0" in path \
                or any(p in ("", ".", "..") for p in parts):
            raise ConfigError(f"file names must be relative paths inside the work dir, "
                              f"without '..': {path!r}", origin="Pool.run(files)")
        if not isinstance(data, (bytes, bytearray, str)):
            raise ConfigError(f"{path}: contents must be bytes or str", origin="Pool.run(files)")
        placed[path] = data.encode() if isinstance(data, str) else bytes(data)
    if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd):
        raise ConfigError("cwd must be an absolute path", origin="Pool.run(cwd)")
    lim = plan.limits
    timeout = _positive("timeout", timeout, float)
    if timeout is not None and lim.timeout is not None and timeout > lim.timeout:
        raise ConfigError(f"timeout {timeout:g}s is longer than the profile's {lim.timeout:g}s",
                          origin="Pool.run(timeout)")
    for field, value, allowed, key in (("memory", memory, lim.memory_max, "limits.memory_max"),
                                       ("pids", pids, lim.pids_max, "limits.pids_max")):
        if _positive(field, value, int) is None:
            continue
        if allowed is None:
            raise ConfigError(f"the profile sets no {key}: a request may only lower a limit "
                              f"the profile sets", origin=f"Pool.run({field})")
        if value > allowed:
            raise ConfigError(f"{field} {value} is above the profile's {key} ({allowed})",
                              origin=f"Pool.run({field})")
    if pids is not None and pids < MIN_PIDS:
        raise ConfigError(f"pids must be at least {MIN_PIDS}: the sandbox's pid 1 is one of "
                          f"them, the command another", origin="Pool.run(pids)")
    output_limit = _positive("output_limit", output_limit, int)
    if output_limit is None or output_limit > MAX_OUTPUT:
        raise ConfigError(f"output_limit must be between 1 and {MAX_OUTPUT} bytes",
                          origin="Pool.run(output_limit)")
    return {"argv": argv, "env": env, "stdin": bytes(stdin), "files": placed, "cwd": cwd,
            "timeout": timeout, "memory": memory, "pids": pids, "output_limit": output_limit}


def _positive(field: str, value, kind):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
            or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{field} must be a positive {kind.__name__}",
                          origin=f"Pool.run({field})")
    return kind(value)


# --- the owner's side --------------------------------------------------------------


class ForkServer:
    """The owner's handle on the fork server process; thread-safe."""

    def __init__(self, plan: Plan, size: int):
        from concurrent.futures import Future

        self._future_type = Future
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", __name__, str(theirs.fileno()), str(size),
                 str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True)
        self.sock = ours
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, "Future"] = {}
        self._next_id = 0
        self._closed = False
        try:
            self.sock.sendall(_frame(pickle.dumps(plan)))
            first = _read_frame(self.sock.recv)
            if first is None:
                raise SetupError("the pool's fork server ended while starting", origin="Pool")
            answer = marshal.loads(first)
            if "error" in answer:
                raise channel.error_from(answer)
        except BaseException:
            self.close()
            raise
        self._reader = threading.Thread(target=self._read_answers, name="jailpy-pool-reader",
                                        daemon=True)
        self._reader.start()

    def submit(self, request: dict) -> "Future":
        future = self._future_type()
        with self._lock:
            if self._closed:
                raise SetupError("the pool is closed", origin="Pool")
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = future
        # A lock of its own: the reader thread must never wait behind a send that is
        # itself waiting for the server, which may be waiting for the reader.
        with self._send_lock:
            try:
                self.sock.sendall(_frame(marshal.dumps({"id": request_id, **request})))
            except OSError as exc:
                with self._lock:
                    self._pending.pop(request_id, None)
                raise SetupError(f"the pool's fork server is gone: {exc.strerror}",
                                 origin="Pool") from exc
        return future

    def _read_answers(self) -> None:
        from .launcher import Result

        while True:
            try:
                frame = _read_frame(self.sock.recv)
            except OSError:
                frame = None
            if frame is None:
                break
            answer = marshal.loads(frame)
            with self._lock:
                future = self._pending.pop(answer["id"], None)
            if future is None:
                continue
            if "error" in answer:
                future.set_exception(channel.error_from(answer))
            elif "result" in answer:
                future.set_result(Result(**answer["result"]))
            else:
                future.set_result(answer["stats"])
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(SetupError("the pool's fork server ended", origin="Pool"))

    def close(self, timeout: float = 10.0) -> None:
        """EOF to the server, which tears every sandbox down; wait for it."""
        with self._lock:
            self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.sock.close()


# --- the fork server ---------------------------------------------------------------


class PreparedSandbox:
    """One sandbox, set up up to pid 1 waiting for its request; serves one request."""

    def __init__(self, plan: Plan, restrictions: "target.Restrictions",
                 zygote: "Zygote | None" = None):
        self.plan = plan
        self.sessions: list["HostSession"] = []
        self.enforcer: limits.Enforcer | None = None
        self.pid = 0
        self.pid1: int | None = None
        self.fds: dict[str, int] = {}
        #: Report messages read before the request (wait_ready).
        self.early: list[dict] = []
        #: When the request was handed over: its wall time counts from here.
        self.start = 0.0
        try:
            launcher.open_sessions(plan, self.sessions)
            self.enforcer = limits.Enforcer(plan.limits)
            self._fork(restrictions, zygote)
        except BaseException:
            self.destroy()
            raise

    def _fork(self, restrictions: "target.Restrictions", zygote: "Zygote | None") -> None:
        """The sandbox's first process: pid 1 itself, cloned by the zygote, or (with
        host sessions, or without a zygote) the launcher's namespace child."""
        ours: dict[str, int] = {}
        theirs: dict[str, int] = {}
        # (name, which end stays with the server: 0 read, 1 write)
        for name, kept in (("report", 0), ("request", 1), ("stdin", 1), ("stdout", 0),
                           ("stderr", 0), *((("go", 1),) if self.sessions else ())):
            ends = os.pipe2(os.O_CLOEXEC)
            ours[name], theirs[name] = ends[kept], ends[1 - kept]
        self.fds = ours
        assert self.enforcer is not None
        cgroup = self.enforcer.cgroup
        server = os.getpid()
        pid = -1
        try:
            if zygote is not None:
                pid = self.pid1 = zygote.spawn(
                    [theirs[name] for name in _CHILD_FDS] + (cgroup.join_fds if cgroup else []))
            else:
                pid = os.fork()
        finally:
            if pid != 0:
                for fd in theirs.values():
                    os.close(fd)
        if pid == 0:
            try:
                _enter_child([theirs[name] for name in _CHILD_FDS],
                             [theirs.get("go", 0), *(cgroup.join_fds if cgroup else ())])
                handover = _handover(theirs["request"], theirs["report"])
                launcher.child_main(self.plan, restrictions, server, theirs["report"],
                                    theirs.get("go", -1), self.enforcer, handover=handover)
            finally:
                os._exit(125)
        self.pid = pid
        self.enforcer.forked(pid)
        if self.sessions:
            failure = launcher.run_host_steps(pid, tuple(self.sessions), ours["report"],
                                              ours.pop("go"))
            if failure is not None:
                raise failure

    def wait_ready(self) -> None:
        """Until pid 1 waits for its request; raises what went wrong before (the
        pool's first sandbox: a profile that cannot be built fails Pool() itself)."""
        reader = channel.Reader(self.fds["report"])
        while not any("ready" in m for m in self.early):
            batch = reader.read()
            if batch is None:
                break
            self.early += batch
            for message in batch:
                if "error" in message:
                    raise channel.error_from(message)
                if "started" in message:
                    self.pid1 = message["started"]
        if not any("ready" in m for m in self.early):
            raise SetupError("the pool's first sandbox ended before it was ready",
                             origin="Pool", hint="run the profile with 'jailpy run' to see why")

    def hand_over(self, request: dict) -> None:
        """The request's limits set, its timeout armed, argv/env/cwd/files written
        to the waiting handover (pid 1's, or its forked target's), which then
        starts the command. Called by the server's main
        thread for a small request (one thread hand-off less before the command
        starts), else by serve()."""
        self.start = time.monotonic()
        enforcer = self.enforcer
        assert enforcer is not None
        lim = self.plan.limits
        if request["memory"] or request["pids"]:
            if enforcer.cgroup is None:  # best-effort limits that could not apply here
                raise UnsupportedError("the profile's cgroup limits are not applied on this "
                                       "machine, so a request cannot lower them",
                                       origin="Pool.run(memory/pids)",
                                       hint="see limits_not_applied and 'jailpy check'")
            enforcer.cgroup.lower(lim.replace(
                memory_max=request["memory"] or lim.memory_max, memory_swap_max=None,
                pids_max=request["pids"] or lim.pids_max))
        timeout = request["timeout"] or lim.timeout
        enforcer.watchdog = None if timeout is None else Watchdog(
            timeout, lim.kill_grace, self.start,
            enforcer._kill_rest if enforcer.cgroup else None)
        if enforcer.watchdog is not None:
            enforcer.watchdog.child = self.pid
        handed = {k: request[k] for k in ("argv", "env", "files", "cwd")}
        try:
            _write_all(self.fds["request"], _frame(marshal.dumps(handed)))
        except OSError:
            pass  # the sandbox is gone: the report says why
        finally:
            os.close(self.fds.pop("request"))

    def serve(self, request: dict) -> "Result":
        """Hand the request over (unless done) and wait until pid 1 reports the
        command's end.

        pid 1 reports once every process of the sandbox is gone, so all the
        output is in the pipes by then: the answer does not wait for the
        namespaces to be torn down; destroy() does that afterwards."""
        if "request" in self.fds:
            self.hand_over(request)
        start, enforcer = self.start, self.enforcer
        assert enforcer is not None
        run = _Collector(self, request["stdin"], request["output_limit"])
        messages = run.collect()
        status = next((m for m in messages if "status" in m), None)
        if status is not None:
            setup = next((m["setup"] for m in messages if "ready" in m), (0.0, 0.0))
            utime, stime, maxrss = status["usage"]
            wait_status = 0
            usage = _Usage(max(0.0, utime - setup[0]), max(0.0, stime - setup[1]), maxrss)
        else:  # no word from pid 1: the namespace child's status says what happened
            _, wait_status, usage = launcher.wait_for(self.pid)
            self.pid = 0
        result = launcher.result_of(messages, wait_status, usage, start, self.plan,
                                    enforcer.report())
        changes: dict = dict(stdout=run.output[1], stderr=run.output[2],
                             stdout_truncated=run.truncated[1],
                             stderr_truncated=run.truncated[2])
        if run.overflowed and not result.timed_out:
            changes.update(ended_by="output", limits_hit=result.limits_hit + ("output",))
        return result.replace(**changes)

    def destroy(self) -> None:
        """Kill what is left (the pid namespace dies with pid 1, pid 1 by its PDEATHSIG
        with the namespace child), remove the cgroup, stop the helpers, close the pipes."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            launcher.wait_for(self.pid)
            self.pid = 0
        if self.enforcer is not None:
            self.enforcer.close()
            self.enforcer = None
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}
        for session in reversed(self.sessions):
            session.close()
        self.sessions = []


class _Usage:
    """The resource usage pid 1 reports, shaped like the launcher's wait4 usage."""

    __slots__ = ("ru_utime", "ru_stime", "ru_maxrss")

    def __init__(self, utime: float, stime: float, maxrss: int):
        self.ru_utime, self.ru_stime, self.ru_maxrss = utime, stime, maxrss


class _Collector:
    """The supervisor's wait for one request: report pipe, stdin, capped output,
    timeout. Output beyond the cap ends the run (pid 1 kills everything)."""

    def __init__(self, sandbox: PreparedSandbox, stdin: bytes, cap: int):
        self.sandbox = sandbox
        self.cap = cap
        self.stdin = memoryview(stdin)
        self.buffers: dict[int, list[bytes]] = {1: [], 2: []}
        self.sizes = {1: 0, 2: 0}
        self.output = {1: b"", 2: b""}
        self.truncated = {1: False, 2: False}
        self.overflowed = False

    def collect(self) -> list[dict]:
        """Report messages until pid 1's status (or EOF: it died); the output with them."""
        fds = self.sandbox.fds
        enforcer = self.sandbox.enforcer
        assert enforcer is not None
        report = fds["report"]
        reader = channel.Reader(report)
        streams = {fds["stdout"]: 1, fds["stderr"]: 2}
        poller = select.poll()
        for fd in (report, *streams):
            poller.register(fd, select.POLLIN)
        stdin_fd = fds.pop("stdin")
        if self.stdin:
            os.set_blocking(stdin_fd, False)
            poller.register(stdin_fd, select.POLLOUT)
        else:
            os.close(stdin_fd)
            stdin_fd = -1
        messages = list(self.sandbox.early)
        if self.sandbox.pid1 is not None:
            enforcer.started(self.sandbox.pid1)
        done = False
        try:
            while not done:
                wait = enforcer.wait_time()
                events = poller.poll(None if wait is None else int(wait * 1000) + 1)
                if not events and wait is not None:
                    enforcer.expire()
                    continue
                for fd, event in events:
                    if fd == stdin_fd:
                        if self._feed(stdin_fd, event):
                            poller.unregister(stdin_fd)
                            os.close(stdin_fd)
                            stdin_fd = -1
                    elif fd == report:
                        batch = reader.read()
                        if batch is None:
                            done = True
                            break
                        for message in batch:
                            if "started" in message:
                                self.sandbox.pid1 = message["started"]
                                enforcer.started(message["started"])
                            done = done or "status" in message
                        messages += batch
                    elif not self._take(fd, streams[fd]):
                        poller.unregister(fd)
                        del streams[fd]
        finally:
            if stdin_fd >= 0:
                os.close(stdin_fd)
        for fd, stream in streams.items():  # what the ended processes left in the pipes
            os.set_blocking(fd, False)
            try:
                while self._take(fd, stream):
                    pass
            except BlockingIOError:
                pass
        self.output = {s: b"".join(b) for s, b in self.buffers.items()}
        return messages

    def _take(self, fd: int, stream: int) -> bool:
        """One read of a stream into its capped buffer; False at EOF."""
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return False
        room = self.cap - self.sizes[stream]
        if room > 0:
            self.buffers[stream].append(chunk[:room])
            self.sizes[stream] += min(room, len(chunk))
        if len(chunk) > room:
            self.truncated[stream] = True
            self._overflow()
        return True

    def _feed(self, fd: int, event: int) -> bool:
        """Write what stdin the pipe takes; True when done (all written, or nobody reads)."""
        if event & (select.POLLERR | select.POLLHUP):
            return True
        try:
            written = os.write(fd, self.stdin[:_CHUNK])
        except BlockingIOError:
            return False
        except OSError:
            return True
        self.stdin = self.stdin[written:]
        return not self.stdin

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        pid1 = self.sandbox.pid1
        try:
            if pid1 is not None:
                os.kill(pid1, KILL_ALL)
            else:
                os.kill(self.sandbox.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


#: The pipes a sandbox's first process gets, in this order (its stdio, then report
#: and request; the zygote receives them so, followed by the cgroup's join fds).
_CHILD_FDS = ("stdin", "stdout", "stderr", "report", "request")


def _enter_child(fds: list[int], kept: "list[int]") -> None:
    """In a sandbox's first process: its stdio from _CHILD_FDS, and nothing else
    of the server's open but those and `kept`."""
    for number, fd in enumerate(fds[:3]):
        os.dup2(fd, number)
    _close_all_but({0, 1, 2, *fds[3:], *kept})


class Zygote:
    """The process that clones the pool's sandboxes, pid 1 straight into its
    namespaces (launcher.clone_pid1: one process per sandbox fewer than the
    launcher's namespace child, and no unshare-then-fork in it).

    Cloning like that is only safe from a process with one thread, and the
    fork server has one per running request; so the server forks this helper
    once, while it still has one thread, and asks it for every sandbox over a
    socket, passing the sandbox's pipes (and cgroup files) along. CLONE_PARENT
    makes each pid 1 the SERVER's child all the same: the server waits for it
    and signals it, and its PDEATHSIG follows the server as before. Used when
    launcher.can_clone_pid1(plan); a kernel or an outer seccomp filter without
    clone3 (ENOSYS, EPERM), or a zygote that died, makes the server fall back
    to forking."""

    def __init__(self, plan: Plan, restrictions: "target.Restrictions"):
        #: One exchange at a time: the refill thread and the main thread both ask.
        self.lock = threading.Lock()
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                self.sock.close()
                _zygote_main(theirs, plan, restrictions, server)
            finally:
                os._exit(EXIT_JAILPY_FAILURE)
        theirs.close()
        self.pid = pid

    def spawn(self, fds: list[int]) -> int:
        """A new sandbox's pid 1 (the server's child), given its fds; raises
        _Unavailable when this machine refuses clone3 or the zygote is gone (the
        server forks instead), JailpyError for the rest."""
        try:
            with self.lock:
                socket.send_fds(self.sock, [b"s"], fds)
                answer = self.sock.recv(65536)
        except OSError as exc:
            raise _Unavailable(f"the zygote is gone: {exc.strerror}") from exc
        if not answer:
            raise _Unavailable("the zygote ended")
        message = marshal.loads(answer)
        if "unavailable" in message:
            raise _Unavailable(message["unavailable"])
        if "error" in message:
            raise channel.error_from(message)
        return message["pid"]

    def close(self) -> None:
        self.sock.close()  # EOF: the zygote exits
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class _Unavailable(Exception):
    """The zygote cannot clone: clone3 is refused here (an old kernel, a container's
    seccomp filter), or the zygote itself is gone."""


def _zygote_main(sock: socket.socket, plan: Plan, restrictions: "target.Restrictions",
                 server: int) -> None:
    """The zygote's loop: clone a sandbox per message; never returns."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server:
        os._exit(0)
    _close_all_but({0, 1, 2, sock.fileno()})
    # No collection in here nor in the sandboxes (each lives for one request): a
    # collection would write to pages the sandbox processes otherwise only share.
    gc.disable()
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 16, 64)
        if not message:
            os._exit(0)
        try:
            pid = launcher.clone_pid1(plan, sc.CLONE_PARENT)
        except SetupError as exc:
            errno_ = getattr(exc.__cause__, "errno", None)
            answer = ({"unavailable": str(exc)} if errno_ in (errno.ENOSYS, errno.EPERM)
                      else channel.describe(exc))
        else:
            if pid == 0:
                _sandbox_pid1(plan, restrictions, fds)
            answer = {"pid": pid}
        for fd in fds:
            os.close(fd)
        sock.send(marshal.dumps(answer))


def _sandbox_pid1(plan: Plan, restrictions: "target.Restrictions", fds: list[int]) -> None:
    """A cloned pid 1 (in the zygote's child): fds as Zygote.spawn sent them."""
    try:
        pipes, cgroup_fds = fds[:len(_CHILD_FDS)], fds[len(_CHILD_FDS):]
        report, request = pipes[3], pipes[4]
        _enter_child(pipes, cgroup_fds)
        join = (lambda: cgroups.join(cgroup_fds)) if cgroup_fds else None
        launcher.pid1_cloned_main(plan, restrictions, report, join,
                                  _handover(request, report))
    finally:
        os._exit(EXIT_JAILPY_FAILURE)


def _close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep) + [1 << 20]:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1


def _handover(request_r: int, report_w: int):
    """The wait for the request, with every restriction already in place; returns
    the plan to start the command with. Only the files, a cwd and the start are left.

    It runs in pid 1 when pid 1 spawns the command (in_pid1), else in the forked
    target, whose own set-up CPU then counts in the usage pid 1 reports for its
    children: `setup` tells the server how much of that is jailpy's."""
    def handover(plan: Plan, in_pid1: bool) -> Plan:
        spent = os.times()
        setup = (0.0, 0.0) if in_pid1 else (spent.user, spent.system)
        channel.send(report_w, ready=True, setup=setup)
        frame = _read_frame(lambda n: os.read(request_r, n))
        os.close(request_r)
        if frame is None:
            os._exit(0)  # the pool closed before a request came
        request = marshal.loads(frame)
        for path, data in request["files"].items():
            _place(path, data)
        if request["cwd"] is not None:
            try:
                os.chdir(request["cwd"])
            except OSError as exc:
                raise SetupError(f"cannot change directory to {request['cwd']}: "
                                 f"{exc.strerror}", origin="Pool.run(cwd)") from exc
        return plan.replace(argv=tuple(request["argv"]), env={**plan.env, **request["env"]})
    return handover


def _place(path: str, data: bytes) -> None:
    """A request's file in the work dir (a fresh tmpfs nothing else has run in);
    the owner checked the name, and no component may be a link all the same."""
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SetupError(f"bad file name {path!r}", origin="Pool.run(files)")
    directory = os.open(WORK_DIR, os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=directory)
            except FileExistsError:
                pass
            inner = os.open(part, os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=directory)
            os.close(directory)
            directory = inner
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644, dir_fd=directory)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    finally:
        os.close(directory)


class Server:
    """The fork server's state; only its main thread forks."""

    def __init__(self, sock: socket.socket, plan: Plan, size: int):
        self.sock = sock
        self.plan = plan
        self.size = size
        self.restrictions = target.prepare(plan).replace(spawnable=target.can_spawn(plan))
        #: Forked now, while this process has its one thread (Zygote).
        self.zygote = Zygote(plan, self.restrictions) if launcher.can_clone_pid1(plan) else None
        #: While the zygote clones, a thread of its own refills (_refill_from_zygote):
        #: the main thread waited a third of its time for the zygote's answers, and
        #: a request that came meanwhile waited with it. `changed` wakes it.
        self.refiller: threading.Thread | None = None
        self.changed = threading.Condition()
        self.stopping = False
        self.ready: deque[PreparedSandbox] = deque()
        self.running: set[PreparedSandbox] = set()
        self.lock = threading.Lock()
        self.served = 0
        self.failed = 0
        self.prepare_failures = 0
        self.last_prepare_error: str | None = None
        #: Threads that each serve one running request at a time: started when a
        #: request finds none idle, then kept (a thread start costs the main
        #: thread a wait for the new thread to run, on every request otherwise).
        self.workers: list[threading.Thread] = []
        self.idle_workers = 0
        self.jobs: "queue.SimpleQueue[tuple[PreparedSandbox, dict] | None]" = queue.SimpleQueue()
        #: A worker writes here when its request ended (the main loop may refill), and
        #: so does a signal (set_wakeup_fd): the owner may be gone.
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.owner_gone = False

    def send(self, answer: dict) -> None:
        with self.lock:
            try:
                self.sock.sendall(_frame(marshal.dumps(answer)))
            except OSError:
                pass  # the owner is gone; the main loop sees EOF

    def prepare(self) -> PreparedSandbox:
        """A new sandbox, from the zygote while this machine lets it clone
        (main thread only: without the zygote, this forks)."""
        try:
            return self._clone()
        except _Unavailable:
            return PreparedSandbox(self.plan, self.restrictions)

    def _clone(self) -> PreparedSandbox:
        """A new sandbox from the zygote; _Unavailable once it cannot clone (the
        zygote is then closed, and the main thread refills by forking)."""
        zygote = self.zygote
        if zygote is None:
            raise _Unavailable("no zygote")
        try:
            return PreparedSandbox(self.plan, self.restrictions, zygote)
        except _Unavailable:
            self.zygote = None
            zygote.close()
            _wake(self.wake_w)  # the main loop takes over refilling
            raise

    def start_refiller(self) -> None:
        if self.zygote is not None:
            self.refiller = threading.Thread(target=self._refill_from_zygote,
                                             name="jailpy-pool-refill", daemon=True)
            self.refiller.start()

    def _refill_from_zygote(self) -> None:
        """The refill thread: a sandbox from the zygote whenever _refill_wait() says
        so, until shutdown or until the zygote cannot clone."""
        while True:
            with self.changed:
                while not self.stopping and (wait := self._refill_wait()) != 0:
                    # A second at most: a state change that failed to notify costs
                    # a second's delay, never the refilling itself.
                    self.changed.wait(1.0 if wait is None else wait)
                if self.stopping:
                    return
            try:
                self.ready.append(self._clone())
                self.prepare_failures = 0
            except _Unavailable:
                return
            except Exception as exc:  # noqa: BLE001  the thread must outlive any of them
                self._note_failure(exc)

    def _note_change(self) -> None:
        """A request started or ended: the refill thread looks again."""
        with self.changed:
            self.changed.notify()

    def refill(self) -> None:
        try:
            self.ready.append(self.prepare())
            self.prepare_failures = 0
        except JailpyError as exc:
            self._note_failure(exc)

    def _note_failure(self, exc: Exception) -> None:
        """A preparation failed: back off (_refill_wait), and keep why for stats()."""
        self.prepare_failures += 1
        self.last_prepare_error = channel.describe(exc)["message"]

    def dispatch(self, request: dict) -> None:
        if "stats" in request:
            self.send({"id": request["id"], "stats": {
                "size": self.size, "ready": len(self.ready), "running": len(self.running),
                "served": self.served, "failed": self.failed,
                "prepare_failures": self.prepare_failures,
                "last_prepare_error": self.last_prepare_error}})
            return
        try:
            sandbox = self.ready.popleft() if self.ready else self.prepare()
        except JailpyError as exc:
            with self.lock:
                self.failed += 1
            self.send({"id": request["id"], **channel.describe(exc)})
            return
        self.running.add(sandbox)
        if sum(map(len, request["files"].values())) < SMALL_REQUEST:
            try:
                sandbox.hand_over(request)
            except BaseException:
                pass  # serve() in the worker fails the same way and answers with it
        with self.lock:
            start_one = self.idle_workers == 0
            self.idle_workers -= 0 if start_one else 1
        self.jobs.put((sandbox, request))
        if self._refill_wait() == 0:  # else this request's end wakes the refill thread
            self._note_change()
        if start_one:
            worker = threading.Thread(target=self._work, name="jailpy-pool-worker", daemon=True)
            self.workers.append(worker)
            worker.start()

    def _work(self) -> None:
        """A worker: serve the queued requests one at a time until shutdown's None."""
        while (job := self.jobs.get()) is not None:
            self._serve(*job)
            with self.lock:
                self.idle_workers += 1

    def _serve(self, sandbox: PreparedSandbox, request: dict) -> None:
        """Answer first, then tear the sandbox down."""
        try:
            result = sandbox.serve(request)
            answer = {"id": request["id"], "result": {
                name: getattr(result, name) for name in result._fields}}
            with self.lock:
                self.served += 1
        except BaseException as exc:
            answer = {"id": request["id"], **channel.describe(exc)}
            with self.lock:
                self.failed += 1
        try:
            self.send(answer)
        finally:
            sandbox.destroy()
            self.running.discard(sandbox)
            _wake(self.wake_w)
            self._note_change()

    def loop(self) -> None:
        """Requests first; refill when _refill_wait() says so."""
        buffered = b""
        while not self.owner_gone:
            refilled_elsewhere = self.refiller is not None and self.zygote is not None
            wait = None if refilled_elsewhere else self._refill_wait()
            readable, _, _ = select.select([self.sock, self.wake_r], [], [], wait)
            if not readable:
                self.refill()
                continue
            if self.wake_r in readable:
                os.read(self.wake_r, 4096)
            if self.sock not in readable:
                continue
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            buffered += chunk
            while len(buffered) >= 4 and len(buffered) >= 4 + int.from_bytes(buffered[:4],
                                                                               "little"):
                size = int.from_bytes(buffered[:4], "little")
                self.dispatch(marshal.loads(buffered[4:4 + size]))
                buffered = buffered[4 + size:]

    def _refill_wait(self) -> float | None:
        """Seconds before preparing another sandbox; None: until a request comes or ends.

        Preparing takes CPU from the requests running on this machine, so while
        one runs the pool refills only once it is down to half its size; a full
        pool waits; a failing preparation backs off."""
        if len(self.ready) >= self.size:
            return None
        if self.running and len(self.ready) >= (self.size + 1) // 2:
            return None  # a worker's end wakes the loop (wake_w)
        if self.prepare_failures:
            return min(0.001 * 2 ** self.prepare_failures, 5.0)
        return 0

    def shutdown(self) -> None:
        """Everything down: ready sandboxes destroyed, running ones killed and reaped."""
        with self.changed:
            self.stopping = True
            self.changed.notify()
        if self.refiller is not None:
            self.refiller.join(10)
        while self.ready:
            self.ready.popleft().destroy()
        for sandbox in list(self.running):
            if sandbox.pid:
                try:
                    os.kill(sandbox.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _ in self.workers:
            self.jobs.put(None)
        for worker in self.workers:
            worker.join(10)
        if self.zygote is not None:
            self.zygote.close()


def _watch_owner(server: Server, owner: int) -> None:
    """The owner's death has a second sign besides the socket's EOF, which a child
    the owner forked could keep from coming: PDEATHSIG. The kernel sends it when
    the owner's thread that started this process ends, so the handler checks that
    the owner process itself is gone (we were re-parented) before shutting down."""
    def owner_gone(signum: int, frame: object) -> None:
        if os.getppid() != owner:
            server.owner_gone = True
            # The C handler's wake-up byte may have been read before this flag was
            # set; this one is read after it.
            _wake(server.wake_w)

    signal.signal(signal.SIGTERM, owner_gone)
    signal.set_wakeup_fd(server.wake_w)
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != owner:  # gone before PDEATHSIG was armed
        server.owner_gone = True


def _wake(fd: int) -> None:
    try:
        os.write(fd, b".")
    except BlockingIOError:
        pass  # the reader has wake-ups enough waiting


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    size, owner = int(argv[1]), int(argv[2])
    frame = _read_frame(sock.recv)
    if frame is None:
        return 0
    server = None
    try:
        server = Server(sock, pickle.loads(frame), size)
        _watch_owner(server, owner)
        first = server.prepare()
        server.ready.append(first)
        first.wait_ready()
        # What exists now is never garbage: keep the collector from touching (and so
        # copying) those pages in every forked sandbox process.
        gc.freeze()
        # A worker waking for its request's end must not wait out the default 5 ms
        # while the main thread holds the GIL preparing a sandbox.
        sys.setswitchinterval(0.0005)
        server.send({"ready": True})
        server.start_refiller()
        server.loop()
    except BaseException as exc:
        try:
            sock.sendall(_frame(marshal.dumps(channel.describe(exc))))
        except OSError:
            pass  # the owner is gone
        return 1
    finally:
        if server is not None:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
