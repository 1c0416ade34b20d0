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
from .runtime.launcher import Result, launch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from .profile.merge import Layer
    from .runtime.launcher import HostSession

__all__ = ["Sandbox", "Result", "load_policy", "run"]


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
            on_started: "Callable[[int], None] | None" = None) -> Result:
        """Run argv in a fresh sandbox and wait for it.

        forward_signals installs handlers (main thread only) that relay
        SIGTERM, SIGINT, ... to the sandbox, as the CLI does; a library
        caller usually wants to keep its own handlers. `written` names files
        the caller writes after the run (a status file): read-only inside.
        `on_started(pid)` is told the host pid of the sandbox's pid 1 as soon as
        it exists (`jailpy bwrap --info-fd`).
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
        # Host-side resources (helpers, session files) live exactly as long as the run.
        sessions: list["HostSession"] = []
        try:
            _open_sessions(plan, sessions)
            if not forward_signals:
                result = launch(plan, tuple(sessions), on_started=on_started)
            else:
                with _SignalRelay() as relay:
                    result = launch(plan, tuple(sessions),
                                    on_started=relay.attach if on_started is None
                                    else _both(relay.attach, on_started))
            if plan.changes is not None:
                result = result.replace(changes_run=plan.changes.run_dir)
        finally:
            for session in reversed(sessions):
                session.close()
        # The egress proxy's counts exist once it has stopped, i.e. after close().
        egress = next((s.egress_summary for s in sessions
                       if getattr(s, "egress_summary", None) is not None), None)
        return result if egress is None else result.replace(egress=egress)


def _open_sessions(plan: Plan, sessions: list["HostSession"]) -> None:
    """prepare(plan) of each host-side concern the plan uses, appended as each opens
    (so a failure closes those already open); imported only when used."""
    if plan.map_all:
        from .runtime import userns

        sessions.append(userns.prepare(plan))
    if plan.network_helper is not None:
        from .runtime import network

        sessions.append(network.prepare(plan))
    if plan.desktop is not None:
        from .runtime import desktop

        sessions.append(desktop.prepare(plan))
    if plan.changes is not None:
        from .runtime import changes

        sessions.append(changes.prepare(plan))


def _both(first: "Callable[[int], None]", then: "Callable[[int], None]"
          ) -> "Callable[[int], None]":
    def started(pid: int) -> None:
        first(pid)
        then(pid)
    return started


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
