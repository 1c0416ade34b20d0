"""`jailpy run` once its options are parsed, by click or by the fast path.

Layers the options over the profile (layer.py), runs the sandbox, and maps
errors to the one line of errors.render on stderr and exit status 125/126/127.
"""

from __future__ import annotations

import sys

from ..errors import JailpyError, render

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


#: What a Result's ended_by names, as the user set it: the line a run ended by a limit prints.
LIMITS = {
    "timeout": "the wall-clock timeout (--timeout, limits.timeout)",
    "memory": "the memory limit (--memory-max, limits.memory_max): the kernel's OOM killer",
    "rlimit-cpu": "the CPU-time rlimit (--rlimit cpu=..., limits.rlimits.cpu)",
    "rlimit-fsize": "the file-size rlimit (--rlimit fsize=..., limits.rlimits.fsize)",
}


def fail(err: JailpyError, debug: bool = False, sink: "Any" = None) -> "NoReturn":
    """Print the error as users see it and exit with its status."""
    if sink is not None:  # --json-status: the report is written for failures too
        from ..report.status import error_document

        sink.write(error_document(err))
    if debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write(render(err))
    sys.stderr.flush()
    sys.exit(err.exit_code)


def execute_run(opts: "dict[str, Any]", order: list[str], command: list[str]) -> "NoReturn":
    """Resolve the policy, run (or explain) the command, exit with its status."""
    debug = bool(opts.get("debug"))
    sink = overrides = None
    written: tuple[str, ...] = ()
    try:
        from ..api import Sandbox, load_policy

        if opts.get("json_status") is not None or opts.get("json_status_fd") is not None:
            from ..report.status import StatusSink

            sink = StatusSink(opts.get("json_status"), opts.get("json_status_fd"),
                              tuple(opts.get("pass_fds") or ()))
            written = sink.written

        if order:  # nothing given, nothing to layer: `jailpy run -- CMD` skips layer.py
            from .layer import command_line_layer

            overrides = command_line_layer(order, opts)
        policy = load_policy(opts.get("profile"), overrides, use_cache=True)
        if opts.get("explain"):
            from ..report import explain
            from .render import sections

            plan = Sandbox(policy).plan(command, written=written)
            sections(explain.title(plan), explain.blocks(plan), explain.ALARMS)
            sys.stdout.flush()
            sys.exit(0)
        result = Sandbox(policy).run(command, forward_signals=True,
                                     pass_fds=tuple(opts.get("pass_fds") or ()),
                                     written=written)
    except JailpyError as err:
        if overrides is not None:  # a key the command line set: name the option to fix
            err.origin = (overrides.item_origins.get(err.origin or "") or [err.origin])[0]
        if err.exit_code == 127 and command:
            err.hint = err.hint or hidden_from_sandbox(command[0], err.message)
        fail(err, debug, sink)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug in jailpy: one line, details with --debug
        fail(JailpyError(f"internal error: {exc!r}", hint="run with --debug and report this"),
             debug, sink)
    if result.changes_run is not None:
        from .changes import after_run

        after_run(result.changes_run, policy.changes.review)
    for note in result.limits_not_applied:
        sys.stderr.write(f"jailpy: warning: limit not applied (best-effort): {note}\n")
    if result.ended_by in LIMITS:
        sys.stderr.write(f"jailpy: the command was ended by {LIMITS[result.ended_by]}; "
                         f"exit status {result.exit_code}\n")
    if sink is not None:
        from ..report.status import result_document

        sink.write(result_document(result))
    exit_now(result.exit_code)


def hidden_from_sandbox(name: str, message: str) -> str | None:
    """A 127 for a command, or an interpreter, that the host has: the profile hides it."""
    import os
    import shutil

    wanted = name
    if "its interpreter " in message:
        wanted = message.split("its interpreter ", 1)[1].split(" is not", 1)[0]
    elif not message.endswith("command not found"):
        return None
    found = (os.path.abspath(wanted) if "/" in wanted and os.path.exists(wanted)
             else None if "/" in wanted else shutil.which(wanted))
    if found is None:
        return None
    where = os.path.dirname(found)
    return (f"{found} exists on the host, but the profile does not show {where}: "
            f"--ro-bind {where} {where} (or a profile that has it; for the current "
            f"directory, --workspace .)")


def exit_now(code: int) -> "NoReturn":
    """Exit without interpreter teardown: the sandbox is gone and nothing is left
    to clean up, while finalizing every module costs milliseconds per run."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
