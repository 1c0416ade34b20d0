"""The command line: argv in, text and exit status out.

  __init__.py  main(): a well-formed `jailpy run` without click (options.parse_run), click else
  options.py   THE `jailpy run` option table (each row names its profile key) and the fast parser
  layer.py     parsed options -> one profile layer, generic over the rows
  run.py       `jailpy run` once parsed: policy, sandbox, exit status; commands.py: click, every
               command; render.py: tables and --explain; wrap.py: `jailpy wrap`/`unwrap`
"""

from __future__ import annotations

import sys
import _signal  # the C module: `signal` would import enum (ms at start-up)


def _interrupted_at_start_up(sig: int, frame: object) -> None:
    """SIGINT while the console script is still importing us: end as an interrupted
    jailpy does (130), instead of a KeyboardInterrupt traceback from inside an import.
    (Python's own start-up, before this module runs, is not ours to change; the
    window left is measured in docs/architecture.md, "Signals".)"""
    raise SystemExit(130)


if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_at_start_up)


def started() -> None:
    """Python's own SIGINT handling back, once a console script's main() runs."""
    if _signal.getsignal(_signal.SIGINT) is _interrupted_at_start_up:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)


def main() -> None:
    started()
    try:
        _main()
    except KeyboardInterrupt:  # before `run` installs its relay, or in another command
        sys.exit(130)


def _main() -> None:
    _standard_streams()
    args = sys.argv[1:]
    if args[:1] == ["bwrap"]:  # bubblewrap's language, its own parser (cli/bwrap.py)
        from .bwrap import main as bwrap_main

        bwrap_main(args[1:])
    if args[:1] == ["run"]:
        import gc

        gc.disable()  # a short-lived process: collections only cost time (and COW faults after fork)
        from .options import parse_run

        parsed = parse_run(args[1:])
        if parsed is not None:
            from .run import execute_run

            execute_run(*parsed)
    import click

    from ..errors import JailpyError, render
    from .commands import main as click_main

    try:
        click_main(prog_name="jailpy", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        # Bad command-line input is jailpy's own failure: one line, status 125.
        hint = None
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f"see '{exc.ctx.command_path} --help'"
        sys.stderr.write(render(JailpyError(exc.format_message(), hint=hint)))
        sys.exit(125)


def _standard_streams() -> None:
    """Give closed fds 0-2 /dev/null before anything else opens a file.

    A caller may start jailpy with stdin, stdout or stderr closed. Left so, the
    first file jailpy opens would take that number (the report pipe, a profile)
    and the command would inherit it as its stdout; and Python has set the
    matching sys.std* to None, so the first message would be a traceback. With
    /dev/null in place, output and errors are discarded, the exit status still
    tells the story (125 for jailpy's own failures), and the command sees an
    empty stdin or a discarding stdout/stderr. Text the output encoding cannot
    represent (an argument that is not UTF-8, shown by --explain) is escaped.
    """
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open("/dev/null", os.O_RDWR)  # the lowest free number: this one
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False,
                                    errors="backslashreplace"))
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
