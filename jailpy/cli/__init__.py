"""Console-script entry point: the fast path for `jailpy run`, click for the rest."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        import gc

        gc.disable()  # a short-lived process: collections only cost time (and COW faults after fork)
        from .fastrun import parse_run

        parsed = parse_run(args[1:])
        if parsed is not None:
            from .run import execute_run

            execute_run(*parsed)
    import click

    from .commands import main as click_main

    try:
        click_main(prog_name="jailpy", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        # Bad command-line input is jailpy's own failure: one line, status 125.
        sys.stderr.write(f"jailpy: {exc.format_message()}\n")
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            sys.stderr.write(f"  hint: see '{exc.ctx.command_path} --help'\n")
        sys.exit(125)
