"""Public Python API; the CLI is a thin layer over it.

    from jailpy import Sandbox, load_policy
    box = Sandbox(load_policy("default"))
    result = box.run(["python3", "-c", "print(1)"])
    result.exit_code

A Sandbox holds a resolved Policy and can run any number of commands; each
run() is one fresh sandbox. Programs that start many sandboxes resolve the
profile once and pay only the per-run cost (fork, namespaces, mounts, exec).

One run: plan (build_plan: the runtime's whole input) -> open the host
sessions the plan needs (each concern's prepare(plan): userns for --map-all,
network, desktop) -> launch (runtime/launcher.py runs their host steps) ->
close the sessions, whatever happened.
"""

from __future__ import annotations

import os
import _signal  # the C module: `signal` would import enum (ms at start-up)
from .errors import ConfigError
from .plan import Caller, Plan, build_plan
from .policy import Policy
from .runtime.launcher import Result, launch, open_sessions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from .profile.merge import Layer
    from .runtime.launcher import HostSession

__all__ = ["Sandbox", "Pool", "Result", "load_policy", "run"]


def load_policy(profile: str | None = None, overrides: "Layer | None" = None,
                caller: Caller | None = None, use_cache: bool = False) -> Policy:
    """Resolve a profile name or path (default: 'default') into a Policy.

    use_cache keeps parsed profile files in the caller's parse cache
    (~/.cache/jailpy), as `jailpy run` does to start faster."""
    from .profile import resolve_policy

    caller = caller or Caller.current()
    return resolve_policy(profile, caller, overrides, use_cache)


class Sandbox:
    """Runs commands under one Policy."""

    def __init__(self, policy: Policy | None = None):
        self.policy = policy if policy is not None else load_policy()

    def plan(self, argv: list[str], caller: Caller | None = None,
             written: tuple[str, ...] = ()) -> Plan:
        return build_plan(self.policy, argv, caller or Caller.current(), written)

    def run(self, argv: list[str], *, forward_signals: bool = False,
            pass_fds: tuple[int, ...] = (), written: tuple[str, ...] = (),
            on_started: "Callable[[int], None] | None" = None,
            on_unshared: "Callable[[int], None] | None" = None) -> Result:
        """Run argv in a fresh sandbox and wait for it.

        forward_signals installs handlers (main thread only) that relay
        SIGTERM, SIGINT, ... to the sandbox, as the CLI does; a library
        caller usually wants to keep its own handlers. `written` names files
        the caller writes after the run (a status file): read-only inside.
        `on_started(pid)` is told the host pid of the sandbox's pid 1 as soon as
        it exists (`jailpy bwrap --info-fd`). `on_unshared(pid)` runs on the host
        while the sandbox waits for it, unshared, before anything is built
        inside: the place to write the id maps of a policy whose
        process.ids_mapped_by_caller is set (then `pid` is pid 1's;
        `jailpy bwrap --userns-block-fd`).
        """
        if not argv or not argv[0]:
            raise ConfigError("the command is empty", origin="command")
        if any("\0" in arg for arg in argv):
            raise ConfigError("the command contains a NUL byte", origin="command")
        policy = self.policy
        if policy.process.argv0 == "":
            raise ConfigError("argv0 must not be empty", origin="process.argv0 / --argv0")
        if pass_fds:
            process = policy.process.replace(pass_fds=policy.process.pass_fds + pass_fds)
            policy = policy.replace(process=process)
        plan = build_plan(policy, argv, Caller.current(), written)
        if plan.ids_mapped_by_caller and on_unshared is None:
            raise ConfigError("nothing would write the user namespace's id maps",
                              origin="process.ids_mapped_by_caller",
                              hint="pass on_unshared=, which writes them")
        # Host-side resources (helpers, session files) live exactly as long as the run.
        sessions: list["HostSession"] = []
        try:
            open_sessions(plan, sessions)
            if not forward_signals:
                result = launch(plan, tuple(sessions), on_started=on_started,
                                on_unshared=on_unshared)
            else:
                with _SignalRelay() as relay:
                    result = launch(plan, tuple(sessions),
                                    on_started=relay.attach if on_started is None
                                    else _both(relay.attach, on_started),
                                    on_unshared=on_unshared)
            if plan.changes is not None:
                result = result.replace(changes_run=plan.changes.run_dir)
        finally:
            for session in reversed(sessions):
                session.close()
        # The egress proxy's counts exist once it has stopped, i.e. after close().
        egress = next((s.egress_summary for s in sessions
                       if getattr(s, "egress_summary", None) is not None), None)
        return result if egress is None else result.replace(egress=egress)


def _both(first: "Callable[[int], None]", then: "Callable[[int], None]"
          ) -> "Callable[[int], None]":
    def started(pid: int) -> None:
        first(pid)
        then(pid)
    return started


class Pool:
    """Sandboxes prepared ahead of their requests, one request each (docs/pool.md).

        with Pool(load_policy("default"), size=4) as pool:
            result = pool.run(["python3", "-c", "print(1)"])
            result.stdout                      # b"1\n"
            result = await pool.run_async(["true"])

    A fork server process does all the forking, so run() may be called from
    any thread and run_async() from asyncio. Each request gets a fresh
    sandbox (namespaces, root, /tmp, work dir); changing the policy needs a
    new pool. Everything is in jailpy/runtime/pool.py, imported only here.
    """

    def __init__(self, policy: Policy | None = None, size: int = 4):
        from .policy import MountOp
        from .runtime import pool

        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 256:
            raise ConfigError("size must be an int from 1 to 256", origin="Pool(size)")
        policy = policy if policy is not None else load_policy()
        work = MountOp(kind="tmpfs", dest=pool.WORK_DIR, mode=0o755, origin="Pool work dir")
        policy = policy.replace(
            filesystem=policy.filesystem.replace(ops=policy.filesystem.ops + (work,)),
            process=policy.process.replace(cwd=pool.WORK_DIR, die_with_parent=True))
        self.plan = build_plan(policy, ["true"], Caller.current())
        pool.check_plan(self.plan)
        self._check = pool.check_request
        self._server = pool.ForkServer(self.plan, size)

    def submit(self, argv: list[str], *, env: dict[str, str] | None = None,
               stdin: bytes = b"", files: dict[str, bytes] | None = None,
               cwd: str | None = None, timeout: float | None = None,
               memory: int | None = None, pids: int | None = None,
               output_limit: int = 1 << 20):
        """Start a request; a concurrent.futures.Future of its Result."""
        return self._server.submit(self._check(self.plan, argv, env, stdin, files, cwd,
                                               timeout, memory, pids, output_limit))

    def run(self, argv: list[str], **request) -> Result:
        """Run argv in a fresh prepared sandbox and wait for its Result (submit's fields)."""
        return self.submit(argv, **request).result()

    async def run_async(self, argv: list[str], **request) -> Result:
        import asyncio

        return await asyncio.wrap_future(self.submit(argv, **request))

    def stats(self) -> dict:
        """size, ready (prepared and waiting), running, served, failed."""
        return self._server.submit({"stats": True}).result()

    def close(self) -> None:
        """Stop the fork server; no process, mount, cgroup or helper is left."""
        self._server.close()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(argv: list[str], profile: str | None = None) -> Result:
    """One-shot convenience: resolve `profile` and run argv in it."""
    return Sandbox(load_policy(profile)).run(argv)


class _SignalRelay:
    """Forward catchable termination/terminal signals to the sandbox's pid 1."""

    from .runtime.init import FORWARDED as SIGNALS

    def __init__(self) -> None:
        self.target: int | None = None
        self.pending: list[int] = []
        self.saved: dict[int, object] = {}

    def __enter__(self) -> "_SignalRelay":
        for sig in self.SIGNALS:
            self.saved[sig] = _signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            _signal.signal(sig, handler)

    def attach(self, pid: int) -> None:
        self.target = pid
        for sig in self.pending:
            self._send(sig)
        self.pending.clear()

    def _handle(self, sig: int, frame: object) -> None:
        if self.target is None:
            self.pending.append(sig)
        else:
            self._send(sig)

    def _send(self, sig: int) -> None:
        try:
            os.kill(self.target, sig)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass
