"""One error hierarchy for everything jailpy itself refuses or fails to do.

Each error carries the exit status the CLI must use and the origin (profile
file and key, or CLI option) that caused it, so the message a user sees
always points back at the line or flag to change.
"""

from __future__ import annotations

EXIT_JAILPY_FAILURE = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_TIMEOUT = 124


class JailpyError(Exception):
    """Base class: a failure of jailpy, not of the sandboxed command."""

    exit_code = EXIT_JAILPY_FAILURE

    def __init__(self, message: str, origin: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.origin = origin
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}" if self.origin else self.message


class ConfigError(JailpyError):
    """Bad input: malformed TOML, unknown keys, bad values, conflicting options."""


class SetupError(JailpyError):
    """A kernel operation needed to build the sandbox was refused."""


class UnsupportedError(JailpyError):
    """The profile asks for something this kernel or machine cannot apply."""


class CommandError(JailpyError):
    """The command could not be executed inside the sandbox (126/127)."""

    def __init__(self, message: str, exit_code: int, origin: str | None = None):
        super().__init__(message, origin)
        self.exit_code = exit_code


def render(err: JailpyError) -> str:
    """What a user sees for a failure: one line naming the cause and its origin,
    then a hint line where one helps. Every command prints its errors through here."""
    text = f"jailpy: {err}\n"
    return text + f"  hint: {err.hint}\n" if err.hint else text


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """'did you mean ...?' for a near miss, else None."""
    import difflib  # only on the error path: it costs start-up time

    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def refuse_control(text: str, origin: str, what: str = "") -> None:
    """ConfigError when text holds a control character: a newline in a name that
    ends up in a shell script, a .desktop entry or a status path starts a new line
    that something else reads as its own."""
    for char in text:
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            raise ConfigError(f"{what or repr(text)} contains the control character "
                              f"{char!r}", origin=origin)
