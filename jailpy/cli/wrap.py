"""`jailpy wrap`: make sandboxing the default way an app is started.

For an app APP this writes
  - a shell wrapper BIN_DIR/APP (default ~/.local/bin/APP) that runs the real
    binary, found in $PATH outside BIN_DIR, through `jailpy run --profile P`;
  - a wrapper of the same kind for every other command in $PATH that starts
    the same program (soffice and lowriter for libreoffice, firefox-esr for
    firefox, x-www-browser for the default browser): what a command starts is
    decided by the file it resolves to, through symlinks and small launcher
    scripts, never by its name (see Launchers);
  - a copy of every .desktop entry whose Exec= starts the app, in
    ~/.local/share/applications (which shadows the system one), with Exec= and
    TryExec= pointing at the wrappers and D-Bus activation turned off, so
    menus, file managers and "open with" start the app sandboxed too.

Everything needed to undo it is written into the wrapper itself (comment
lines after a marker), so `jailpy unwrap` and `wrap --list` need no state
file and never touch a file jailpy did not write.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EXIT_NOT_FOUND, CommandError, ConfigError, SetupError, refuse_control

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

MARKER = "# jailpy-wrapper 1"
DESKTOP_KEY = "X-Jailpy-Wrapper"


@dataclass
class Wrapped:
    """What one wrapper records about itself. The app's own wrapper lists the
    desktop entries and the other commands' wrappers it wrote; those other
    wrappers name the app they are `part_of`."""

    app: str
    wrapper: Path
    binary: str
    profile: str
    desktops: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    part_of: str | None = None


@dataclass(frozen=True)
class Places:
    """Where wrappers and desktop entries go, derived from the caller's environment."""

    home: Path
    bin_dir: Path
    applications: Path
    data_dirs: tuple[Path, ...]
    path: tuple[str, ...]

    @classmethod
    def from_env(cls, env: dict[str, str], bin_dir: str | None = None) -> "Places":
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        data_home = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
        data_dirs = env.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
        return cls(home=home,
                   bin_dir=Path(bin_dir).expanduser().absolute() if bin_dir
                   else home / ".local" / "bin",
                   applications=data_home / "applications",
                   data_dirs=tuple(Path(d) for d in data_dirs.split(":") if d.startswith("/")),
                   path=tuple(p for p in (env.get("PATH") or os.defpath).split(":") if p))


# -- reading wrappers ---------------------------------------------------------------


def read_wrapper(path: Path) -> Wrapped | None:
    """The metadata of a jailpy wrapper, or None if `path` is not one."""
    try:
        with open(path, errors="replace") as f:
            head = f.read(8192)
    except OSError:
        return None
    lines = head.splitlines()
    if len(lines) < 2 or lines[1] != MARKER:
        return None
    meta: dict[str, str] = {}
    for line in lines[2:]:
        if not line.startswith("# ") or "=" not in line:
            break
        key, _, value = line[2:].partition("=")
        meta[key] = value
    if not {"app", "binary", "profile"} <= meta.keys():
        return None
    return Wrapped(meta["app"], path, meta["binary"], meta["profile"],
                   _items(meta.get("desktop", "")), _items(meta.get("created", "")),
                   _items(meta.get("commands", "")), meta.get("part-of") or None)


def _items(value: str) -> list[str]:
    return [item for item in value.split(":") if item]


def _is_executable(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def find_real_binary(app: str, places: Places) -> str:
    """APP in $PATH, skipping BIN_DIR and any jailpy wrapper, so a wrapper never runs itself."""
    if "/" in app:
        path = Path(app).expanduser().absolute()
        if not _is_executable(path) or read_wrapper(path):
            raise CommandError(f"{app}: not an executable program", EXIT_NOT_FOUND,
                               origin="jailpy wrap")
        return str(path)
    skip = _real(places.bin_dir)
    for directory in places.path:
        if not directory.startswith("/") or _real(Path(directory)) == skip:
            continue
        candidate = Path(directory) / app
        if _is_executable(candidate) and read_wrapper(candidate) is None:
            return str(candidate)
    raise CommandError(f"{app}: command not found in PATH (outside {places.bin_dir})",
                       EXIT_NOT_FOUND, origin="jailpy wrap")


def _real(path: Path) -> str:
    return os.path.realpath(path)


# -- what starts the app ----------------------------------------------------------

#: Larger files are not read as launcher scripts (Debian's chromium script is 5 KiB).
SCRIPT_LIMIT = 16384


def _lookup(program: str, places: Places) -> str | None:
    """An Exec= or script command word as a file: absolute, or found in $PATH
    outside BIN_DIR (where a wrapper of ours may already be)."""
    if program.startswith("/"):
        return program if _is_executable(Path(program)) else None
    if "/" in program or not program:
        return None
    skip = _real(places.bin_dir)
    for directory in places.path:
        if directory.startswith("/") and _real(Path(directory)) != skip:
            candidate = Path(directory) / program
            if _is_executable(candidate):
                return str(candidate)
    return None


def _script_targets(path: str, places: Places) -> set[str]:
    """The programs a small shell launcher script hands its arguments to, as real
    paths: on a line that passes "$@" on, the word after `exec` (`exec
    firefox-esr "$@"`), or an absolute path as the line's first word
    (`/usr/lib/libreoffice/program/soffice --writer "$@"`). Other command words
    (`[`, echo) are not launches."""
    try:
        with open(path, "rb") as f:
            head = f.read(SCRIPT_LIMIT + 1)
    except OSError:
        return set()
    if not head.startswith(b"#!") or len(head) > SCRIPT_LIMIT:
        return set()
    found = set()
    for line in head.decode(errors="replace").splitlines()[1:]:
        if '"$@"' not in line or line.lstrip().startswith("#"):
            continue
        words = line.split()
        if "exec" in words:
            words = words[words.index("exec") + 1:]
            while words and "=" in words[0]:
                words = words[1:]
        elif not words[0].startswith("/"):
            continue
        target = _lookup(words[0].strip('"'), places) if words else None
        if target is not None:
            found.add(_real(Path(target)))
    return found


class Launchers:
    """Decides whether a command or an Exec= program starts the app.

    The app is the real file behind its binary, plus what the binary hands its
    arguments to when it is a launcher script (/usr/bin/firefox runs
    firefox-esr). A program starts the app when it resolves, through symlinks,
    to one of those files, or is itself a launcher script for one of them.
    """

    def __init__(self, binary: str, places: Places) -> None:
        self.places = places
        real = _real(Path(binary))
        self.core = {real, *_script_targets(real, places)}

    def starts_app(self, program: str) -> bool:
        path = _lookup(program, self.places)
        if path is None:
            return False
        real = _real(Path(path))
        return real in self.core or bool(_script_targets(real, self.places) & self.core)

    def commands(self) -> dict[str, str]:
        """Every command in $PATH (outside BIN_DIR) that starts the app: name -> path.
        The first directory in $PATH wins a name, as it would for a shell."""
        found: dict[str, str] = {}
        seen_dirs = {_real(self.places.bin_dir)}
        for directory in self.places.path:
            real_dir = _real(Path(directory))
            if not directory.startswith("/") or real_dir in seen_dirs:
                continue
            seen_dirs.add(real_dir)
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                path = os.path.join(directory, name)
                if name not in found and not name.startswith(".") and \
                        read_wrapper(Path(path)) is None and self.starts_app(path):
                    found[name] = path
        return found

    def desktop_entries(self) -> list[Path]:
        """Every system .desktop entry whose main Exec= starts the app, by file id
        (an earlier data dir shadows a later one, as the menus do)."""
        found: dict[str, Path] = {}
        for data_dir in self.places.data_dirs:
            directory = data_dir / "applications"
            if not directory.is_dir():
                continue
            for entry in sorted(directory.glob("*.desktop")):
                if entry.name in found:
                    continue
                found[entry.name] = entry
        return [entry for entry in found.values() if self._entry_starts_app(entry)]

    def _entry_starts_app(self, entry: Path) -> bool:
        try:
            text = entry.read_text(errors="replace")
        except OSError:
            return False
        for line in _main_group(text.splitlines()):
            if line.startswith("Exec="):
                span = _exec_program(line[5:])
                return span is not None and self.starts_app(line[5:][span[0]:span[1]].strip('"'))
        return False


# -- desktop entries ---------------------------------------------------------------


def _exec_program(value: str) -> tuple[int, int] | None:
    """Span of the program token in an Exec value (after `env VAR=...`), or None."""
    pos = 0
    while True:
        while pos < len(value) and value[pos] == " ":
            pos += 1
        if pos >= len(value):
            return None
        if value[pos] == '"':
            end = pos + 1
            while end < len(value) and value[end] != '"':
                end += 2 if value[end] == "\\" else 1
            end += 1
        else:
            end = value.find(" ", pos)
            end = len(value) if end < 0 else end
        token = value[pos:end].strip('"')
        if os.path.basename(token) == "env" or ("=" in token and pos > 0):
            pos = end
            continue
        return pos, end


def _main_group(lines: list[str]) -> list[str]:
    out, inside = [], False
    for line in lines:
        if line.startswith("["):
            inside = line.strip() == "[Desktop Entry]"
        elif inside:
            out.append(line)
    return out


def rewrite_desktop_entry(text: str, app: str, route: "Callable[[str], Path | None]",
                          wrapper: Path, source: Path) -> str:
    """The entry with every Exec/TryExec pointed at a wrapper; refuses what it cannot route.

    `route(program)` names the wrapper for an Exec= program that starts the app
    (None: it does not); `wrapper` is the app's own, which owns the copy.
    """
    out: list[str] = []
    in_main = False
    for line in text.splitlines():
        if line.startswith("["):
            in_main = line.strip() == "[Desktop Entry]"
            out.append(line)
            if in_main:
                out.append(f"{DESKTOP_KEY}={wrapper}")
            continue
        key = line.split("=", 1)[0].strip()
        if key == "Exec":
            value = line.split("=", 1)[1]
            span = _exec_program(value)
            target = route(value[span[0]:span[1]].strip('"')) if span else None
            if span is None or target is None:
                raise SetupError(f"{source}: cannot route '{line.strip()}' through the wrapper "
                                 f"(it does not start {app})", origin="jailpy wrap",
                                 hint="wrap the program that line starts, or write the entry "
                                 "by hand")
            line = f"Exec={value[:span[0]]}{_desktop_quote(str(target))}{value[span[1]:]}"
        elif key == "TryExec":
            line = f"TryExec={wrapper}"
        elif key == "DBusActivatable" and in_main:
            # D-Bus activation would start the real app directly, around the wrapper.
            line = "DBusActivatable=false"
        out.append(line)
    return "\n".join(out) + "\n"


def _desktop_quote(path: str) -> str:
    if not any(c in path for c in ' \t"\'\\><~|&;$*?#()`'):
        return path
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") \
        .replace("$", "\\$")
    return f'"{escaped}"'


# -- writing ---------------------------------------------------------------------------


def _jailpy_command() -> list[str]:
    """How the wrapper calls this very jailpy (its console script, else python -m jailpy)."""
    script = Path(sys.argv[0])
    if script.name == "jailpy" and script.is_absolute() and _is_executable(script):
        return [str(script)]
    return [sys.executable, "-m", "jailpy"]


def wrapper_text(w: Wrapped) -> str:
    meta = [f"# app={w.app}", f"# binary={w.binary}", f"# profile={w.profile}",
            f"# desktop={':'.join(w.desktops)}", f"# created={':'.join(w.created)}",
            f"# commands={':'.join(w.commands)}", f"# part-of={w.part_of or ''}"]
    command = [*_jailpy_command(), "run", "--profile", w.profile, "--", w.binary]
    owner = w.part_of or w.app
    return "\n".join([
        "#!/bin/sh", MARKER, *meta,
        f"# Written by 'jailpy wrap {owner}'; remove it with 'jailpy unwrap {owner}'.",
        f"exec {' '.join(shlex.quote(a) for a in command)} \"$@\"", ""])


def _makedirs(path: Path) -> list[str]:
    """mkdir -p; the directories that were created, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    return [str(p) for p in reversed(missing)]


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Never through a link: a fresh file (O_EXCL|O_NOFOLLOW) renamed over `path`,
    which replaces a symlink planted there rather than writing where it points."""
    from ..usercache import write_file

    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_file(fd, path.name, text.encode(), mode)
        os.chmod(path.name, mode, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _choose_profile(app: str, profile: str | None, env: dict[str, str]) -> str:
    """The profile the wrapper will use; it must resolve now, not at the app's first start."""
    from ..api import load_policy
    from ..profile.loader import locate

    if profile is None:
        try:
            locate(app, env, origin="jailpy wrap")
        except ConfigError:
            raise ConfigError(f"no profile named '{app}'", origin="jailpy wrap",
                              hint="choose one with --profile (e.g. --profile gui)") from None
        profile = app
    elif "/" in profile or profile.endswith(".toml"):
        profile = str(Path(profile).expanduser().absolute())
    load_policy(profile)
    return profile


def wrap(app: str, profile: str | None = None, bin_dir: str | None = None,
         env: dict[str, str] | None = None) -> tuple[Wrapped, list[str]]:
    """Write the wrappers and the desktop entry copies; returns the app's own
    wrapper record (listing the rest) and notes for the user."""
    env = dict(os.environ if env is None else env)
    places = Places.from_env(env, bin_dir)
    name = os.path.basename(app)
    if not name or name.startswith("."):
        raise ConfigError(f"bad app name {app!r}", origin="jailpy wrap")
    wrapper = places.bin_dir / name
    existing = read_wrapper(wrapper)
    if wrapper.exists() and existing is None:
        raise SetupError(f"{wrapper} exists and is not a jailpy wrapper", origin="jailpy wrap",
                         hint="move it away, or choose another --bin-dir")
    if existing is not None and existing.part_of and existing.part_of != name:
        raise SetupError(f"{wrapper} belongs to the wrap of {existing.part_of}",
                         origin="jailpy wrap", hint="it is covered: see 'jailpy wrap --list'")
    binary = find_real_binary(app, places)
    chosen = _choose_profile(name, profile, env)
    notes: list[str] = []
    record = Wrapped(name, wrapper, binary, chosen,
                     created=existing.created if existing else [])
    launchers = Launchers(binary, places)

    aliases: dict[str, Wrapped] = {}
    for command, path in launchers.commands().items():
        target = places.bin_dir / command
        if command == name:
            continue
        if target.exists() and getattr(read_wrapper(target), "part_of", None) != name:
            notes.append(f"{command} ({path}) also starts {name}, but {target} is not "
                         "ours: it stays unwrapped")
            continue
        aliases[command] = Wrapped(command, target, path, chosen, part_of=name)
    record.commands = sorted(aliases)

    def route(program: str) -> Path | None:
        if not launchers.starts_app(program):
            return None
        return aliases[os.path.basename(program)].wrapper \
            if os.path.basename(program) in aliases else wrapper

    copies: dict[Path, str] = {}
    for source in launchers.desktop_entries():
        target = places.applications / source.name
        if target.exists() and _desktop_owner(target) != str(wrapper):
            notes.append(f"{target} exists and was not written by jailpy wrap: "
                         f"{source.name} stays unwrapped")
            continue
        try:
            copies[target] = rewrite_desktop_entry(source.read_text(errors="replace"), name,
                                                   route, wrapper, source)
        except SetupError as err:
            notes.append(f"{err.message}; {source.name} stays unwrapped")
    if not copies:
        notes.append(f"no desktop entry found for {name}; only the wrapper was written")
    record.desktops = [str(target) for target in copies]

    # Each ends up in a line of a shell script or a .desktop entry: a newline in any
    # of them would start a line of its own, run outside every sandbox.
    values = [("app name", name), ("program path", binary), ("profile", chosen),
              ("wrapper path", str(wrapper))]
    values += [(label, str(value)) for alias in aliases.values()
               for label, value in (("program path", alias.binary),
                                    ("wrapper path", alias.wrapper))]
    values += [("desktop entry path", str(target)) for target in copies]
    for label, value in values:
        refuse_control(value, "jailpy wrap", f"the {label} {value!r}")
    try:
        record.created += [d for d in _makedirs(places.bin_dir) if d not in record.created]
        if copies:
            record.created += [d for d in _makedirs(places.applications)
                               if d not in record.created]
        for alias in aliases.values():
            _write_atomic(alias.wrapper, wrapper_text(alias), 0o755)
        _write_atomic(wrapper, wrapper_text(record), 0o755)
        for target, text in copies.items():
            _write_atomic(target, text, 0o644)
        if existing is not None:
            _remove_stale(existing, record)
    except OSError as exc:
        raise SetupError(f"cannot write {exc.filename}: {exc.strerror}",
                         origin="jailpy wrap") from None
    from ..usercache import record_written

    record_written(env, [str(wrapper), *(str(a.wrapper) for a in aliases.values()),
                         *(str(target) for target in copies)])
    found = _which(name, places)
    if found is not None and _real(Path(found)) != _real(wrapper):
        notes.append(f"{places.bin_dir} comes after {os.path.dirname(found)} in PATH: "
                     f"typing '{name}' still starts {found} unsandboxed")
    return record, notes


def _remove_stale(before: Wrapped, now: Wrapped) -> None:
    """What an earlier wrap of the app wrote and this one no longer covers."""
    for desktop in set(before.desktops) - set(now.desktops):
        if _desktop_owner(Path(desktop)) == str(now.wrapper):
            os.unlink(desktop)
    for command in set(before.commands) - set(now.commands):
        _remove_alias(now.wrapper.parent / command, now.app)


def _remove_alias(path: Path, app: str) -> None:
    alias = read_wrapper(path)
    if alias is not None and alias.part_of == app:
        path.unlink()


def _which(name: str, places: Places) -> str | None:
    for directory in places.path:
        candidate = Path(directory) / name
        if _is_executable(candidate):
            return str(candidate)
    return None


def _desktop_owner(path: Path) -> str | None:
    try:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(f"{DESKTOP_KEY}="):
                return line.split("=", 1)[1]
    except OSError:
        return None
    return None


def unwrap(app: str, bin_dir: str | None = None,
           env: dict[str, str] | None = None) -> Wrapped:
    """Remove the wrappers and desktop entry copies of APP (only files jailpy wrote)."""
    env = dict(os.environ if env is None else env)
    places = Places.from_env(env, bin_dir)
    wrapper = places.bin_dir / os.path.basename(app)
    record = read_wrapper(wrapper)
    if record is None:
        raise ConfigError(f"{app} is not wrapped in {places.bin_dir}", origin="jailpy unwrap",
                          hint="see 'jailpy wrap --list'")
    if record.part_of:
        raise ConfigError(f"{app} is part of the wrap of {record.part_of}",
                          origin="jailpy unwrap", hint=f"jailpy unwrap {record.part_of}")
    for desktop in record.desktops:
        if _desktop_owner(Path(desktop)) == str(wrapper):
            os.unlink(desktop)
    for command in record.commands:
        _remove_alias(places.bin_dir / command, record.app)
    wrapper.unlink()
    from ..usercache import record_written

    record_written(env, [str(wrapper), *record.desktops,
                         *(str(places.bin_dir / command) for command in record.commands)],
                   forget=True)
    for directory in reversed(record.created):
        try:
            os.rmdir(directory)
        except OSError:
            pass  # not empty (other files, other wrappers) or already gone: keep it
    return record


def list_wrapped(bin_dir: str | None = None, env: dict[str, str] | None = None) -> list[Wrapped]:
    """Wrappers in the bin dir, plus any a jailpy desktop entry points to elsewhere."""
    env = dict(os.environ if env is None else env)
    places = Places.from_env(env, bin_dir)
    candidates: dict[str, Path] = {}
    if places.bin_dir.is_dir():
        for path in sorted(places.bin_dir.iterdir()):
            candidates[str(path)] = path
    if places.applications.is_dir():
        for entry in sorted(places.applications.glob("*.desktop")):
            owner = _desktop_owner(entry)
            if owner:
                candidates.setdefault(owner, Path(owner))
    found = [read_wrapper(p) for p in candidates.values()]
    return [w for w in found if w is not None and not w.part_of]


def uncovered(record: Wrapped, bin_dir: str | None = None,
              env: dict[str, str] | None = None) -> list[str]:
    """Commands and desktop entries on this system that start the wrapped app but
    are not covered by its wrappers (installed since, or left to the user)."""
    env = dict(os.environ if env is None else env)
    places = Places.from_env(env, bin_dir)
    launchers = Launchers(record.binary, places)
    mine = {record.app, *record.commands}
    missing = [f"command {name} ({path})" for name, path in launchers.commands().items()
               if name not in mine]
    shadowed = {Path(d).name for d in record.desktops}
    missing += [f"menu {entry}" for entry in launchers.desktop_entries()
                if entry.name not in shadowed]
    return missing

