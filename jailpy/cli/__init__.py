"""The command line: argv in, text and exit status out.

  __init__.py  main(): a well-formed `jailpy run` without click (options.parse_run), click else
  options.py   THE `jailpy run` option table (each row names its profile key) and the fast parser
  layer.py     parsed options -> one profile layer, generic over the rows
  run.py       `jailpy run` once parsed: policy, sandbox, exit status; commands.py: click, every
               command; render.py: tables and --explain; wrap.py: `jailpy wrap`/`unwrap`
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
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
