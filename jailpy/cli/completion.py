"""`jailpy completion SHELL`: print the completion script the package installs.

The scripts live in the source tree's completions/ and are installed twice by
the wheel: as share/ data files where bash-completion, zsh and fish look for
them, and inside the package (jailpy/completions) so this command can print
them for a shell that does not look there (a pipx install, a venv). Each
script asks jailpy itself (click's completion protocol, `_JAILPY_COMPLETE`)
for options and values, hands path arguments back to the shell's own
file-name completion, and after `--` completes the command as if it were
typed alone.
"""

from __future__ import annotations

import os

#: Shell -> script file name, as installed under share/.
SCRIPTS = {"bash": "jailpy.bash", "zsh": "_jailpy", "fish": "jailpy.fish"}


def directory() -> str:
    """The installed package's completions/, or the source tree's."""
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    packaged = os.path.join(package, "completions")
    return packaged if os.path.isdir(packaged) else \
        os.path.join(os.path.dirname(package), "completions")


def script(shell: str) -> str:
    with open(os.path.join(directory(), SCRIPTS[shell]), encoding="utf-8") as f:
        return f.read()
