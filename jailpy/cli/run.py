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
    if opts.get("via") is not None:
        execute_via(opts, order, command)
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


#: What `--via` carries to the server, by option dest; every other option is refused,
#: since the server's profile decides everything else (docs/serve.md).
VIA_OPTIONS = ("via", "setenv", "env", "cwd", "timeout", "memory_max", "pids_max", "debug")


def execute_via(opts: "dict[str, Any]", order: list[str], command: list[str]) -> "NoReturn":
    """`jailpy run --via URL -- CMD`: one request to `jailpy serve`; its output on ours,
    its exit status ours. Standard input is sent along unless it is a terminal."""
    from ..client import Client
    from .options import RUN_OPTIONS, env_assignment

    debug = bool(opts.get("debug"))
    try:
        for dest in order:
            if dest not in VIA_OPTIONS:
                name = next(opt.name for opt in RUN_OPTIONS if opt.dest == dest)
                raise JailpyError(f"{name} does not apply to a run on a server: the server's "
                                  "profile decides", origin="--via",
                                  hint="only -e/--setenv, --chdir, --timeout, --memory-max "
                                       "and --pids-max travel with the request")
        env = dict(env_assignment(item, f"-e {item}") for item in opts.get("env") or ())
        env.update(dict(opts.get("setenv") or ()))
        try:
            pids = int(opts["pids_max"]) if opts.get("pids_max") is not None else None
        except ValueError as err:
            raise JailpyError(str(err), origin="--pids-max") from err
        stdin = b"" if sys.stdin.isatty() else sys.stdin.buffer.read()
        result = Client(opts["via"]).run(
            command, env=env or None, stdin=stdin, cwd=opts.get("cwd"),
            timeout=opts.get("timeout"), memory=opts.get("memory_max"), pids=pids)
    except JailpyError as err:
        fail(err, debug)
    except Exception as exc:  # a bug in jailpy: one line, details with --debug
        fail(JailpyError(f"internal error: {exc!r}", hint="run with --debug and report this"),
             debug)
    sys.stdout.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    for name in ("stdout", "stderr"):
        if getattr(result, f"{name}_truncated"):
            sys.stderr.write(f"jailpy: the server cut the command's {name} at its output "
                             f"limit\n")
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
