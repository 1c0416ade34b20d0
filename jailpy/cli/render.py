"""Terminal output: rich tables and highlights on a terminal, plain text otherwise.

rich is imported only when stdout is a terminal and a command renders
something, so `jailpy run` and scripts piping jailpy's output never pay for it.
Plain output is aligned columns without decoration, stable for scripts.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence


def fancy(stream=None) -> bool:
    """True when output goes to a terminal that wants decoration."""
    stream = stream or sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM") != "dumb"


def _console(stream=None):
    from rich.console import Console

    return Console(file=stream or sys.stdout, highlight=False, soft_wrap=False)


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns; the last column is not padded."""
    all_rows = [list(columns), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(columns) - 1)]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
          styles: Sequence[str | None] | None = None) -> None:
    """Print a table: rich on a terminal, plain columns otherwise."""
    if not fancy():
        sys.stdout.write(plain_table(columns, rows))
        return
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        grid.add_column(column, style=(styles[i] if styles else None) or None,
                        overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    _console().print(grid)


def sections(title: str, blocks: Sequence[tuple[str, Sequence[str]]],
             alarms: Sequence[str] = ()) -> None:
    """Titled blocks of lines (--explain): rich headings and highlighted alarm
    words on a terminal, '[title]' and indented lines otherwise."""
    if not fancy():
        out = [title]
        for name, lines in blocks:
            out.append(f"\n[{name}]")
            out.extend(f"  {line}" for line in lines)
        sys.stdout.write("\n".join(out) + "\n")
        return
    from rich.text import Text

    console = _console()
    console.print(Text(title, style="bold"))
    for name, lines in blocks:
        console.print()
        console.print(Text(name, style="bold cyan"))
        for line in lines:
            text = Text("  " + line)
            text.highlight_regex(r"\[[^\]]*\]$", "dim")
            text.highlight_words(list(alarms), "bold red")
            console.print(text)
