"""Process choreography: supervisor -> namespace child -> pid 1 -> target.

    supervisor (host)       prepares the target's restrictions and the limits,
                            forks the namespace child; when the run has host
                            sessions (newuidmap, a network helper, the D-Bus
                            proxy) it runs their host_step(pid) after the
                            child has unshared and then says "go"; forwards
                            signals; reports status
    namespace child         joins the cgroup, unshare(USER|NS|...|PID), writes
                            its own id maps, forks pid 1 and waits for it (it
                            lives outside the new pid namespace, so nothing
                            inside sees it); when the caller maps the ids
                            (bwrap's --userns-block-fd) it writes none and holds
                            pid 1 until the host says "go"
    pid 1                   builds the root, sets hostname, brings up lo,
                            forks the target, then reaps and forwards signals;
                            a warm pool's pid 1 (target.can_spawn) instead takes
                            on the target's restrictions itself and starts the
                            command with posix_spawn
    target                  session, cwd, fds, rlimits, Landlock, caps,
                            no_new_privs, seccomp, execve (target.py)

Everything before execve reports failures over the report pipe as
structured errors; the supervisor turns them into JailpyError.
"""

from __future__ import annotations

import errno
import os
import _signal as signal  # the C module: `signal` would import enum (ms at start-up)
import time
import warnings  # noqa: F401  os.execvpe imports it lazily (os.get_exec_path), after pivot_root

from ..errors import (EXIT_JAILPY_FAILURE, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_TIMEOUT,
                      SetupError)
from ..linux import syscalls as sc
from ..plan import Plan
from ..record import Record
# Everything the processes inside need is imported here, before any pivot_root:
# after it, the interpreter's own files may not be visible any more.
from . import caps, channel, init, mounts, target, userns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Protocol

    from .limits import Enforcer, LimitReport
    from .target import Restrictions
    from .tty import Terminal

    class HostSession(Protocol):
        """The host side of one concern for one run (userns, network, desktop):
        opened by its module's prepare(plan) before the launch, closed after it."""

        def host_step(self, pid: int) -> None:
            """Supervisor: work for the namespace child `pid` once it has unshared."""

        def close(self) -> None:
            """Supervisor: release what prepare() and host_step() took."""


class Result(Record):
    """How the sandboxed command ended (rendered as JSON by report/status.py).

    exit_code is jailpy's own status (124 after a timeout, 128+N for signal N);
    command_exit_code is the command's own status when it exited normally.
    """

    exit_code: int
    signal: int | None
    wall_time: float
    user_time: float
    system_time: float
    command_exit_code: int | None = None
    timed_out: bool = False
    ended_by: str | None = None
    limits_hit: tuple[str, ...] = ()
    peak_memory: int | None = None
    max_rss: int | None = None
    cgroup: str | None = None
    limits_not_applied: tuple[str, ...] = ()
    #: `--changes`: the run directory holding what the command wrote (docs/overlays.md).
    changes_run: str | None = None
    #: A warm pool's request (runtime/pool.py): the captured output, at most the
    #: request's output_limit bytes each, and whether more was written.
    stdout: bytes | None = None
    stderr: bytes | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: network.mode = "proxy": the egress proxy's counts (runtime/egress.py summary()).
    egress: "dict | None" = None


def launch(plan: Plan, sessions: tuple["HostSession", ...] = (),
           on_started: "Callable[[int], None] | None" = None,
           on_unshared: "Callable[[int], None] | None" = None) -> Result:
    """Run the plan to completion; raises JailpyError for set-up failures.

    `sessions` are the run's open host sessions; the caller closes them.
    `on_unshared(pid)` is the caller's own host step, run after theirs while the
    sandbox waits, unshared; `pid` is the namespace child, or pid 1 when the
    caller maps the ids (bwrap's --userns-block-fd)."""
    start = time.monotonic()
    if on_unshared is not None:
        sessions = sessions + (_CallerStep(on_unshared),)
    _check_pass_fds(plan.pass_fds)
    if plan.lock_files:
        import fcntl  # noqa: F401  pid 1 takes the locks after pivot_root
    restrictions = target.prepare(plan)
    enforcer = _prepare_limits(plan, start)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC) if sessions else (-1, -1)
    supervisor = os.getpid()
    terminal = None
    try:
        if plan.tty:  # last: raw mode only once nothing else can fail before the fork
            from . import tty

            terminal = tty.prepare(plan)
        pid = os.fork()
    except BaseException:
        if terminal is not None:
            terminal.close()
        if enforcer is not None:
            enforcer.close()
        raise
    if pid == 0:
        os.close(report_r)
        if go_w >= 0:
            os.close(go_w)
        child_main(plan, restrictions, supervisor, report_w, go_r, enforcer, terminal)
    os.close(report_w)
    if enforcer is not None:
        enforcer.forked(pid)
    if terminal is not None:
        terminal.host_step(pid)
        on_started = _also_tell(terminal, on_started)
    failure: BaseException | None = None
    limit_report = None
    try:
        if sessions:
            os.close(go_r)
            failure = run_host_steps(pid, sessions, report_r, go_w)
        messages = _collect(report_r, on_started, enforcer)
    finally:
        os.close(report_r)
        _, wait_status, usage = wait_for(pid)
        if terminal is not None:
            terminal.close()  # the host terminal's modes, on every exit path
        if enforcer is not None:
            limit_report = enforcer.close()
    if failure is not None:
        raise failure
    return result_of(messages, wait_status, usage, start, plan, limit_report)


class _CallerStep:
    """A caller's on_unshared callback as the run's last host step; it holds
    nothing to release."""

    def __init__(self, step: "Callable[[int], None]") -> None:
        self.host_step = step

    def close(self) -> None:
        pass


def open_sessions(plan: Plan, sessions: list["HostSession"]) -> None:
    """prepare(plan) of each host-side concern the plan uses, appended as each opens
    (so a failure closes those already open); imported only when used."""
    if plan.map_all:
        from . import userns

        sessions.append(userns.prepare(plan))
    if plan.network_helper is not None:
        from . import network

        sessions.append(network.prepare(plan))
    if plan.desktop is not None:
        from . import desktop

        sessions.append(desktop.prepare(plan))
    if plan.changes is not None:
        from . import changes

        sessions.append(changes.prepare(plan))


def _also_tell(terminal: "Terminal", on_started: "Callable[[int], None] | None"
               ) -> "Callable[[int], None]":
    """The terminal learns pid 1's pid too (it stops and continues the sandbox)."""
    def started(pid1: int) -> None:
        terminal.started(pid1)
        if on_started is not None:
            on_started(pid1)
    return started


def _prepare_limits(plan: Plan, start: float) -> "Enforcer | None":
    """Limits support, imported only when the plan has limits (start-up cost)."""
    if plan.limits.rlimits:
        from . import rlimits  # noqa: F401  the target applies them after pivot_root
    if plan.limits.timeout is None and not plan.limits.cgroup_controllers:
        return None
    from . import limits

    return limits.prepare(plan, start)


def _collect(report_r: int, on_started: "Callable[[int], None] | None",
             enforcer: "Enforcer | None") -> list[dict]:
    """Read reports until EOF; with a timeout, wait with a deadline instead."""
    if enforcer is not None and enforcer.watchdog is not None:
        from .limits import collect_with_deadline

        return collect_with_deadline(report_r, on_started, enforcer)
    messages = channel.receive(report_r, first_only=on_started is not None)
    if on_started is not None:
        for message in messages:
            if "started" in message:
                on_started(message["started"])
        messages += channel.receive(report_r)
    return messages


def run_host_steps(pid: int, sessions: tuple["HostSession", ...], report_r: int,
                   go_w: int) -> BaseException | None:
    """Wait for 'unshared', run each session's host step, then release the child.

    The steps act on the process 'unshared' names: the namespace child `pid`
    itself, or its pid 1 when the caller maps the ids (child_main)."""
    try:
        first = channel.receive(report_r, first_only=True)
        if not first or "unshared" not in first[0]:
            return channel.error_from(first[0]) if first and "error" in first[0] else None
        for session in sessions:
            session.host_step(first[0]["unshared"])
        os.write(go_w, b"g")
        return None
    except BaseException as exc:  # the child sees EOF on go and exits quietly
        os.kill(pid, signal.SIGKILL)
        return exc
    finally:
        os.close(go_w)


def wait_for(pid: int):
    while True:
        try:
            return sc.wait4(pid)
        except ChildProcessError:
            return pid, EXIT_JAILPY_FAILURE << 8, None


def result_of(messages: list[dict], wait_status: int, usage, start: float, plan: Plan,
              limit_report: "LimitReport | None") -> Result:
    for message in messages:
        if "error" in message:
            raise channel.error_from(message)
    raw = next((m["status"] for m in messages if "status" in m), None)
    timed_out = limit_report is not None and limit_report.timed_out
    if raw is None and timed_out:
        raw = signal.SIGKILL  # killed with the rest of the sandbox after the grace period
    stats = limit_report.stats if limit_report is not None else None
    if raw is None and stats is not None and stats.oom_kills \
            and any("command" in m or "ready" in m for m in messages):
        # The OOM killer chose pid 1 once the set-up was over: the largest process
        # when the command fills the sandbox's memory with files in a tmpfs
        # (charged to the cgroup, to no process). Its end SIGKILLed the command.
        raw = signal.SIGKILL
    if raw is None:
        if stats is not None and stats.oom_kills:
            raise SetupError("the memory limit is too small for jailpy's own set-up "
                             "processes: they were killed before the command started",
                             origin="limits.memory_max / --memory-max",
                             hint="allow at least a few tens of MiB")
        code = os.waitstatus_to_exitcode(wait_status)
        raise SetupError(f"the sandbox set-up process ended unexpectedly (status {code})",
                         origin="launcher", hint="run with --debug for details")
    skipped = tuple(m["not_applied"] for m in messages if "not_applied" in m)
    sig = os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else None
    code = 128 + sig if sig else os.WEXITSTATUS(raw)
    user, system = (usage.ru_utime, usage.ru_stime) if usage else (0.0, 0.0)
    extra: dict = {"command_exit_code": None if sig else code,
                   "max_rss": usage.ru_maxrss * 1024 if usage else None}
    if limit_report is not None or plan.limits.rlimits:
        from .limits import LimitReport, ended_by

        limit_report = limit_report or LimitReport()
        ended, hit = ended_by(plan.limits, limit_report, sig, code != 0, user + system)
        stats = limit_report.stats
        extra.update(timed_out=timed_out, ended_by=ended, limits_hit=hit,
                     peak_memory=stats.peak_memory if stats else None,
                     cgroup=limit_report.cgroup, limits_not_applied=limit_report.not_applied)
    extra["limits_not_applied"] = skipped + extra.get("limits_not_applied", ())
    return Result(EXIT_TIMEOUT if timed_out else code, sig, time.monotonic() - start,
                  user, system, **extra)


# --- inside --------------------------------------------------------------------


def _check_pass_fds(fds: tuple[int, ...]) -> None:
    """Every fd to pass must be open before jailpy opens its own: an fd number
    that is free now could otherwise be taken by jailpy's report pipe and
    handed to the command, which could then forge its own exit status."""
    for fd in fds:
        try:
            os.fstat(fd)
        except (OSError, OverflowError):  # OverflowError: beyond any C int
            raise SetupError(f"file descriptor {fd} is not open",
                             origin=f"--pass-fd {fd}") from None


def child_main(plan: Plan, restrictions: "Restrictions", supervisor: int, report_w: int,
               go_r: int, enforcer: "Enforcer | None" = None,
               terminal: "Terminal | None" = None,
               handover: "Callable[..., Plan] | None" = None) -> None:
    """The namespace child; never returns.

    `handover` (a warm pool, runtime/pool.py) runs once every restriction is in
    place, just before the command starts: in pid 1 when the restrictions are
    `spawnable` (target.can_spawn), else in the forked target. It waits for the
    request and returns the plan to run it with."""
    code = EXIT_JAILPY_FAILURE
    try:
        _start_child(plan)
        if plan.die_with_parent:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != supervisor:
                os._exit(EXIT_JAILPY_FAILURE)
        if enforcer is not None:
            _join_cgroup(enforcer.apply)
        if plan.outer_userns:
            _enter_network_userns(plan)
        else:
            if plan.userns_fd is not None:
                userns.join(plan.userns_fd, "--userns")
            # With --pidns the new pid namespace is made under the joined one (below).
            _unshare(plan, plan.unshare_flags & ~(sc.CLONE_NEWPID if plan.pidns_fd is not None
                                                  else 0))
            if (plan.unshare_flags & sc.CLONE_NEWUSER and not plan.map_all
                    and not plan.ids_mapped_by_caller):
                # Before any host step: a network helper joining our namespaces
                # must find its own uid mapped. (newuidmap's session, or the
                # caller of --userns-block-fd, writes them from outside instead.)
                userns.apply(plan.uid_inside, plan.uid_outside, plan.gid_inside,
                             plan.gid_outside)
        # With ids the caller maps (bwrap's --userns-block-fd), the host is told
        # pid 1 instead, once it exists: it is the process bwrap reports there, and
        # the only one whose /proc/PID/ns/pid names the new pid namespace.
        held = go_r >= 0 and plan.ids_mapped_by_caller
        if go_r >= 0 and not held:
            _wait_for_go(report_w, go_r, os.getpid())
        if plan.outer_userns:
            _unshare(plan, plan.unshare_flags & ~sc.CLONE_NEWNET)
            userns.apply(plan.uid_inside, 0, plan.gid_inside, 0)
        # pid 1 cannot use getppid() to notice that this process died before its
        # PDEATHSIG was armed (its parent is outside its pid namespace): it checks
        # this lifeline pipe instead, which reads EOF once we are gone.
        if plan.pidns_fd is not None:
            _enter_pid_namespace(plan)
        lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
        release_r, release_w = os.pipe2(os.O_CLOEXEC) if held else (-1, -1)
        # Opened now: once pid 1 has pivoted the mount namespace we share, /proc
        # is no longer the host's (see _pid_on_host).
        translate = plan.pidns_fd is not None and plan.new_pid_ns
        proc_self = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) \
            if translate else -1
        pid1 = os.fork()
        if pid1 == 0:
            if proc_self >= 0:
                os.close(proc_self)  # the host's /proc: nothing inside may inherit it
            os.close(lifeline_w)
            if held:
                os.close(release_w)
                if os.read(release_r, 1) != b"g":  # EOF: the host gave up
                    os._exit(EXIT_JAILPY_FAILURE)
                os.close(release_r)
            _pid1_main(plan, restrictions, report_w, lifeline_r, terminal, handover)
        os.close(lifeline_r)
        # fork() answered in our pid namespace, the joined one behind --pidns with
        # --unshare-pid: waitpid() wants that number, the supervisor the host's.
        host_pid1 = pid1
        if translate:
            host_pid1 = _pid_on_host(pid1, proc_self)
            os.close(proc_self)
        if held:
            os.close(release_r)
            _wait_for_go(report_w, go_r, host_pid1)
            os.write(release_w, b"g")
            os.close(release_w)
        channel.send(report_w, started=host_pid1)
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        while True:
            try:
                _, status = os.waitpid(pid1, 0)
                break
            except ChildProcessError:
                status = EXIT_JAILPY_FAILURE << 8
                break
        code = os.waitstatus_to_exitcode(status) & 0xFF
        if plan.as_pid_1 or plan.init_visible:  # pid 1 was the command, or spoke by exiting
            channel.send(report_w, status=status)
    except BaseException as exc:
        channel.send_error(report_w, exc)
    os._exit(code)


def _start_child(plan: Plan) -> None:
    """The first steps of the supervisor's child: the host's fds it must not hold,
    a session of its own, the forwarded signals blocked until pid 1 waits for them."""
    for fd in plan.host_only_fds:
        try:
            os.close(fd)
        except OSError:  # not open: the supervisor's write to it fails quietly too
            pass
    if plan.new_session:
        os.setsid()  # terminal signals reach only the supervisor, which forwards them
    init.block_forwarded()


def _wait_for_go(report_w: int, go_r: int, pid: int) -> None:
    """Tell the supervisor which process its host steps act on, then wait for "go"
    (EOF: it failed or gave up, and this process leaves quietly)."""
    channel.send(report_w, unshared=pid)
    if os.read(go_r, 1) != b"g":
        os._exit(EXIT_JAILPY_FAILURE)


def _pid_on_host(pid: int, proc_self: int) -> int:
    """A child's pid as the host's /proc numbers it; proc_self is this process's
    directory there, opened before the fork.

    Behind --pidns with --unshare-pid this process lives in the joined pid
    namespace, so fork() answered that namespace's number; the supervisor signals,
    reports and maps ids by the host's. A pidfd's fdinfo gives the pid in the pid
    namespace of the procfs it is read through. Not through the path /proc/self:
    pid 1 shares our mount namespace and its pivot_root() moves our root too, to
    a /proc of the new pid namespace, where this process has no entry."""
    fd = os.pidfd_open(pid)
    try:
        info = os.open(f"fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_self)
        with open(info) as lines:
            for line in lines:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    raise SetupError("cannot tell pid 1's pid on the host (no Pid: in a pidfd's fdinfo)",
                     origin="--pidns")


def _enter_pid_namespace(plan: Plan) -> None:
    """bwrap's --pidns FD: children are born in that pid namespace. A new one
    under it (--unshare-pid too) can only be made by a process already inside,
    so an intermediate child does that and this process waits for it."""
    try:
        sc.setns(plan.pidns_fd, sc.CLONE_NEWPID)
    except OSError as exc:
        raise SetupError(f"joining the pid namespace of fd {plan.pidns_fd} failed: "
                         f"{exc.strerror}", origin=f"--pidns {plan.pidns_fd}") from exc
    if not plan.new_pid_ns:
        return
    middle = os.fork()
    if middle != 0:
        _, status = os.waitpid(middle, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    if plan.die_with_parent:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    _unshare(plan, sc.CLONE_NEWPID)


def _join_cgroup(join: "Callable[[], None]") -> None:
    """Enter the sandbox's cgroup before unshare, so pid 1 and the target are born in it
    and the new cgroup namespace is rooted there."""
    try:
        join()
    except OSError as exc:
        raise SetupError(f"cannot join the sandbox cgroup: {exc.strerror}",
                         origin="limits") from exc


def _enter_network_userns(plan: Plan) -> None:
    """For slirp4netns/pasta: a user namespace of our own, with the caller as id 0,
    that owns the sandbox's network namespace. The helper attaches to it (and
    slirp4netns --enable-sandbox becomes id 0 in it); after "go" the sandbox's
    own namespaces are created inside it, so nothing in the sandbox has
    capabilities over its network namespace, whatever its uid."""
    _unshare(plan, sc.CLONE_NEWUSER | sc.CLONE_NEWNET)
    userns.apply(0, plan.uid_outside, 0, plan.gid_outside)
    sc.bring_up_loopback()
    sc.open_low_ports()


def _unshare(plan: Plan, flags: int = 0) -> None:
    flags = flags or plan.unshare_flags
    try:
        sc.unshare(flags)
    except OSError as exc:
        raise _namespace_error(exc, flags) from exc


def _namespace_error(exc: OSError, flags: int) -> SetupError:
    """Why unshare (or clone) refused the namespaces `flags`, with the fix."""
    if not flags & sc.CLONE_NEWUSER and exc.errno == errno.EPERM:
        return SetupError("cannot create namespaces without a user namespace of the "
                          "sandbox's own: that needs CAP_SYS_ADMIN, which an ordinary "
                          "user does not have", origin="namespaces.user",
                          hint="keep the user namespace (drop --share-user / "
                               "namespaces.user = false)")
    hint = ("unprivileged user namespaces may be disabled: see 'jailpy check'"
            if exc.errno in (errno.EPERM, errno.ENOSPC, errno.EINVAL) else None)
    return SetupError(f"cannot create namespaces: {exc.strerror}", origin="namespaces",
                      hint=hint)


# --- pid 1 cloned straight into its namespaces (a warm pool) ------------------------


def can_clone_pid1(plan: Plan) -> bool:
    """Whether pid 1 can be made by one clone into all its namespaces, with no
    namespace child: nothing on the host has to act between unshare and pid 1
    (no host session: newuidmap, a network helper, desktop, --changes; no ids
    mapped from outside) and no namespace is joined rather than made."""
    return (plan.new_pid_ns and bool(plan.unshare_flags & sc.CLONE_NEWUSER)
            and not (plan.outer_userns or plan.map_all or plan.ids_mapped_by_caller
                     or plan.tty or plan.network_helper is not None
                     or plan.desktop is not None or plan.changes is not None)
            and plan.userns_fd is None and plan.pidns_fd is None)


def clone_pid1(plan: Plan, flags: int = 0) -> int:
    """Fork pid 1 straight into the plan's namespaces (can_clone_pid1), with the
    clone `flags` added; the child goes on in pid1_cloned_main. Only from a
    process with one thread (sc.fork_into_namespaces). The cgroup namespace is
    made later, once pid 1 has joined the sandbox's cgroup, so it is rooted there."""
    flags |= plan.unshare_flags & ~sc.CLONE_NEWCGROUP
    try:
        return sc.fork_into_namespaces(flags)
    except OSError as exc:
        raise _namespace_error(exc, flags) from exc


def pid1_cloned_main(plan: Plan, restrictions: "Restrictions", report_w: int,
                     join_cgroup: "Callable[[], None] | None" = None,
                     handover: "Callable[..., Plan] | None" = None) -> None:
    """pid 1 made by clone_pid1; never returns. It does what the namespace child
    would have (its own id maps, the cgroup, the cgroup namespace), then is pid 1.

    There is no lifeline to check: if the supervisor dies before PDEATHSIG is
    armed, the handover (pid 1's own, or its forked target's) reads EOF on the
    request pipe and exits, and the sandbox with it."""
    try:
        _start_child(plan)
        userns.apply(plan.uid_inside, plan.uid_outside, plan.gid_inside, plan.gid_outside)
        if join_cgroup is not None:
            _join_cgroup(join_cgroup)
        if plan.unshare_flags & sc.CLONE_NEWCGROUP:
            _unshare(plan, sc.CLONE_NEWCGROUP)
    except BaseException as exc:
        channel.send_error(report_w, exc)
        os._exit(EXIT_JAILPY_FAILURE)
    _pid1_main(plan, restrictions, report_w, -1, None, handover)


def _pid1_main(plan: Plan, restrictions: "Restrictions", report_w: int, lifeline: int,
               terminal: "Terminal | None",
               handover: "Callable[..., Plan] | None" = None) -> None:
    """pid 1 of the new pid namespace (or a plain reaper without one); never returns."""
    try:
        # lifeline -1: cloned by the supervisor itself (pid1_cloned_main)
        if plan.die_with_parent:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if lifeline >= 0:
                os.set_blocking(lifeline, False)
                try:
                    if os.read(lifeline, 1) == b"":
                        os._exit(EXIT_JAILPY_FAILURE)  # the parent died before PDEATHSIG
                except BlockingIOError:
                    pass
        if lifeline >= 0:
            os.close(lifeline)
        copy_outs: list[tuple[int, int]] = []
        if plan.quotas:
            skipped = userns.set_quotas(plan.quotas, plan.default_quotas)
            if skipped:
                channel.send(report_w, not_applied=skipped)
        if terminal is not None:
            terminal.detach()  # before the root is built: no /dev/console of the host's
        if plan.unshare_flags & sc.CLONE_NEWNET and not plan.outer_userns:
            sc.bring_up_loopback()
            sc.open_low_ports()  # through the host's /proc, before the root is replaced
        # --disable-userns, --userns2: done after the root is built, when the host's
        # /proc is gone, so through a descriptor of it opened now.
        proc = (os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                if plan.userns_disabled else None)
        if plan.new_mount_ns:
            copy_outs = mounts.build_root(plan.mount_ops, plan.root_readonly, plan.new_pid_ns,
                                          plan.nested, plan.private_parents)
        if plan.hostname is not None:
            _set_hostname(plan.hostname)
        locks = _lock_files(plan.lock_files)  # noqa: F841  held (open) while pid 1 lives
        if plan.userns_fd_after is not None:
            userns.join(plan.userns_fd_after, "--userns2")
        if proc is not None:
            userns.disable_nesting(plan, proc)
            os.close(proc)
        if plan.check_userns_disabled:
            userns.check_nesting_disabled("--assert-userns-disabled")
        if terminal is not None:
            terminal.provide()
        if not plan.new_pid_ns:
            sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        if plan.block_fd is not None:
            _wait_for_data(plan.block_fd)
        if plan.as_pid_1:
            _target_main(plan, restrictions, report_w, terminal)  # execs the command
        # Non-dumpable before the fork, so there is no moment in which the target
        # could ptrace pid 1 while pid 1 still holds capabilities; the target
        # becomes dumpable again at execve.
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        if handover is not None and restrictions.spawnable:
            command = _spawn_target(plan, restrictions, report_w, handover)
        else:
            init_pid = os.getpid()
            command = os.fork()
            if command == 0:
                if plan.die_with_parent:
                    # Without a pid namespace of its own the command would outlive pid 1.
                    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
                    if os.getppid() != init_pid:  # pid 1 died before PDEATHSIG was armed
                        os._exit(EXIT_JAILPY_FAILURE)
                _target_main(plan, restrictions, report_w, terminal, handover)
            caps.apply()
        if handover is None:
            # The set-up is over: an OOM kill of pid 1 from now on is the command's
            # doing (result_of). A pool's sandbox said "ready" already.
            channel.send(report_w, command=True)
        if plan.init_visible:  # no capability left to abuse through ptrace
            # Nothing the command can reach through ptrace or /proc/1/fd may speak
            # for jailpy: the status goes out as this process's exit status, which
            # the namespace child reports (bwrap's 128+N for a signal).
            os.close(report_w)
            report_w = -1  # its number may be reused; nothing more is sent from here
            sc.prctl(sc.PR_SET_DUMPABLE, 1)
        status = init.supervise(command, is_pid1=plan.new_pid_ns,
                                forward_terminal=plan.new_session, wait_all=plan.wait_all,
                                on_stop=terminal.stopped if terminal is not None else None)
        if plan.init_visible:
            os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status)
                     else 128 + os.WTERMSIG(status))
        if copy_outs:  # size-limited --changes: every sandbox process is gone now
            mounts.copy_out(copy_outs)
        if handover is None:
            channel.send(report_w, status=status)
        else:  # a pool answers now, before the namespaces are torn down (runtime/pool.py)
            usage = sc.children_usage()
            channel.send(report_w, status=status,
                         usage=(usage.ru_utime, usage.ru_stime, usage.ru_maxrss))
        os._exit(0)
    except BaseException as exc:
        channel.send_error(report_w, exc)
        os._exit(EXIT_JAILPY_FAILURE)


def _wait_for_data(fd: int) -> None:
    """bwrap's --block-fd: the sandbox is ready; start the command when the caller
    writes to (or closes) fd."""
    try:
        os.read(fd, 1)
        os.close(fd)
    except OSError:
        pass


def _lock_files(paths: tuple[str, ...]) -> list[int]:
    """bwrap's --lock-file: a read lock (fcntl, not waited for) on each path as seen
    inside the sandbox, held by pid 1 for the sandbox's lifetime."""
    if not paths:
        return []
    import fcntl  # imported before the fork by the supervisor when the plan has locks

    held = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            held.append(fd)
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            raise SetupError(f"cannot lock {path}: {exc.strerror}",
                             origin=f"--lock-file {path}") from exc
    return held


def _set_hostname(name: str) -> None:
    """The sandbox's own UTS namespace may still be refused its name by a seccomp
    filter jailpy inherits (Podman's and Docker's default profiles refuse
    sethostname in nested namespaces): say which setting to drop."""
    try:
        sc.sethostname(name)
    except OSError as exc:
        raise SetupError(f"sethostname failed: {os.strerror(exc.errno or 0)}",
                         origin="process.hostname",
                         hint="a seccomp filter of an outer container may refuse sethostname "
                              "(jailpy check: seccomp filter in force): share its UTS "
                              "namespace (--share-uts) or see docs/containers.md") from exc


def _not_found(argv0: str) -> str:
    """Why execve said ENOENT, as seen inside: no such command, or a program that
    is there but whose #! interpreter (or ELF loader) is not."""
    if "/" not in argv0 or not os.path.isfile(argv0):
        return f"{argv0}: command not found"
    try:
        with open(argv0, "rb") as f:
            head = f.readline(256)
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        interpreter = head[2:].split()[0].decode(errors="replace") if head[2:].split() else "?"
        return f"{argv0}: its interpreter {interpreter} is not in the sandbox"
    return f"{argv0}: its program loader or a library it needs is not in the sandbox"


def _target_main(plan: Plan, restrictions: "Restrictions", report_w: int,
                 terminal: "Terminal | None",
                 handover: "Callable[..., Plan] | None" = None) -> None:
    """Final preparation and execve of the command; never returns."""
    argv0 = plan.argv[0]
    try:
        target.apply(plan, restrictions, terminal)
        if handover is not None:
            plan = handover(plan, in_pid1=False)
            argv0 = plan.argv[0]
        argv = list(plan.argv)
        if plan.argv0 is not None:
            argv[0] = plan.argv0
        os.execvpe(argv0, argv, plan.env)
    except BaseException as exc:
        os._exit(_report_start_failure(report_w, exc, argv0))
    os._exit(EXIT_JAILPY_FAILURE)


def _spawn_target(plan: Plan, restrictions: "Restrictions", report_w: int,
                  handover: "Callable[..., Plan]") -> int:
    """A warm pool's command (target.can_spawn): pid 1 takes on every restriction
    itself, waits for the request and starts the command with target.spawn().
    No Python process is forked for the target, which is most of what a pooled
    sandbox's CPU went to (docs/benchmarks.md). Returns the command's pid; a
    command that cannot start ends pid 1 with the status saying why."""
    argv0 = plan.argv[0]
    try:
        target.restrict_self(plan, restrictions)
        plan = handover(plan, in_pid1=True)
        argv0 = plan.argv[0]
        return target.spawn(plan)
    except BaseException as exc:
        os._exit(_report_start_failure(report_w, exc, argv0))


def _report_start_failure(report_w: int, exc: BaseException, argv0: str) -> int:
    """Why the command did not start, over the report pipe; returns the exit
    status that says it (127 not found, 126 not executable, 125 jailpy)."""
    if isinstance(exc, FileNotFoundError):
        channel.send(report_w, error="CommandError", message=_not_found(argv0),
                     origin=None, exit_code=EXIT_NOT_FOUND)
        return EXIT_NOT_FOUND
    if isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError)) or (
            isinstance(exc, OSError) and exc.errno == errno.ENOEXEC):
        channel.send(report_w, error="CommandError",
                     message=f"{argv0}: cannot execute: {exc.strerror}", origin=None,
                     exit_code=EXIT_NOT_EXECUTABLE)
        return EXIT_NOT_EXECUTABLE
    channel.send_error(report_w, exc)
    return EXIT_JAILPY_FAILURE
