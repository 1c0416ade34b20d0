"""`jailpy changes list|show|commit|discard` and the `--review` at the end of a run.

The commands read a run directory through runtime/changes.py, which holds
every rule about what may reach the host; this module only renders (plain
text, JSON, unified diffs, rich on a terminal) and asks.
"""

from __future__ import annotations

import os
import sys

from ..runtime.changes import Change, Run, refuses

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

#: Text files larger than this are summarised, not diffed.
_DIFF_LIMIT = 1 << 20


def root_of(directory: str | None) -> str:
    from ..errors import ConfigError
    from ..plan import Caller
    from ..plan.changes import changes_root

    root = changes_root(Caller.current(), directory)
    if root is None:
        raise ConfigError("no state directory: set XDG_STATE_HOME or pass --dir",
                          origin="jailpy changes")
    return root


def human(size: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{size}B"


def describe(change: Change) -> str:
    """One line: action, type, size, path (and what commit does about it)."""
    size = human(change.size) if change.type == "file" else ""
    text = f"{change.action:<9} {change.type:<7} {size:>7}  {change.path}"
    if change.target is not None:
        text += f" -> {change.target}"
    if change.removes:
        text += f" (removes {len(change.removes)} host entries beneath)"
    if change.problem:
        text += f"  [{change.problem}]"
    return text


def as_json(run: Run, changes: list[Change]) -> str:
    import json

    return json.dumps({
        "run": run.id, "dir": run.dir, "paths": run.paths, "argv": run.meta.get("argv"),
        "changes": [{"path": c.path, "action": c.action, "type": c.type, "size": c.size,
                     "mode": f"{c.mode:04o}", "target": c.target, "problem": c.problem or None,
                     "commits": not refuses(c), "removes": [f"{run.paths[c.index]}/{r}"
                                                             for r in c.removes]}
                    for c in changes]}, indent=2)


def _text(data: bytes) -> list[str] | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def diff(run: Run, change: Change) -> str:
    """A unified diff of the host file against the upper one; a summary for binary,
    large or non-file entries. Neither side is read through a symlink."""
    import difflib

    if change.type != "file" and change.action != "deleted":
        return f"--- {change.action} {change.type} {change.path}\n"
    new = b"" if change.action == "deleted" else _read(run.fd, f"upper/{change.index}/"
                                                      f"{change.rel}")
    old = b""
    if change.action != "added":
        old = _read_host(change.path) or b""
    if new is None or len(old) > _DIFF_LIMIT or len(new) > _DIFF_LIMIT:
        return f"--- {change.path}: too large to diff\n"
    before, after = _text(old), _text(new)
    if before is None or after is None:
        return f"--- binary file {change.path} differs\n"
    label = change.path
    lines = difflib.unified_diff(before, after, f"a{label}" if change.action != "added"
                                 else "/dev/null", f"b{label}" if change.action != "deleted"
                                 else "/dev/null")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def _read(dir_fd: int, path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    with open(fd, "rb") as f:
        return f.read(_DIFF_LIMIT + 1)


def _read_host(path: str) -> bytes | None:
    parent, name = os.path.split(path)
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read(fd, name)
    finally:
        os.close(fd)


def review(run: Run, ask: "Callable[[str], str] | None" = None) -> list[str]:
    """Per-change accept/skip with its diff, on a terminal with rich; returns the
    accepted paths (committed by the caller in one go, so the checks still hold)."""
    from rich.console import Console
    from rich.prompt import Prompt
    from rich.syntax import Syntax

    console = Console(stderr=True)
    accepted: list[str] = []
    changes = run.changes()
    if not changes:
        console.print(f"[bold]jailpy:[/] the command changed nothing in {', '.join(run.paths)}")
        return accepted
    for n, change in enumerate(changes, 1):
        console.rule(f"[bold]{n}/{len(changes)}[/] {change.action} {change.path}")
        console.print(describe(change), markup=False, highlight=False)
        if refuses(change):
            console.print("[yellow]never committed; skipped[/]")
            continue
        console.print(Syntax(diff(run, change), "diff", theme="ansi_dark", word_wrap=True))
        answer = (ask or (lambda q: Prompt.ask(q, choices=["a", "s", "q"], default="s",
                                               console=console)))(
            "a = accept, s = skip, q = quit")
        if answer == "q":
            break
        if answer == "a":
            accepted.append(change.path)
    return accepted


def after_run(run_dir: str, want_review: bool) -> None:
    """What `jailpy run --changes` prints when the command is done (stderr), and
    the review when asked for on a terminal."""
    from ..runtime.changes import ChangesError, commit

    root, run_id = os.path.split(run_dir)
    try:
        run = Run(root, run_id)
    except ChangesError as err:
        sys.stderr.write(f"jailpy: changes of this run unreadable: {err}\n")
        return
    try:
        count = len(run.changes())
        if want_review and sys.stdin.isatty() and sys.stderr.isatty() and count:
            chosen = review(run)
            if chosen:
                commit(run, chosen)
                sys.stderr.write(f"jailpy: committed {len(chosen)} of {count} changes\n")
            count = len(run.changes())
        elif want_review:
            sys.stderr.write("jailpy: --review needs a terminal; nothing committed\n")
        sys.stderr.write(f"jailpy: {count} change(s) kept in run {run_id} ({run_dir}): "
                         f"jailpy changes show {run_id}\n")
    except ChangesError as err:
        from ..errors import render

        sys.stderr.write(render(err))
    finally:
        run.close()
