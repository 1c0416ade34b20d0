"""`jailpy wrap`: make sandboxing the default way an app is started.

For an app APP this writes
  - a shell wrapper BIN_DIR/APP (default ~/.local/bin/APP) that runs the real
    binary, found in $PATH outside BIN_DIR, through `jailpy run --profile P`;
  - a copy of the app's .desktop entry in ~/.local/share/applications (which
    shadows the system one) with Exec= and TryExec= pointing at the wrapper
    and D-Bus activation turned off, so menus and file managers start the app
    sandboxed too.

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

MARKER = "# jailpy-wrapper 1"
DESKTOP_KEY = "X-Jailpy-Wrapper"


@dataclass
class Wrapped:
    """What one wrapper records about itself."""

    app: str
    wrapper: Path
    binary: str
    profile: str
    desktop: str | None = None
    created: list[str] = field(default_factory=list)


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
                   meta.get("desktop") or None,
                   [d for d in meta.get("created", "").split(":") if d])


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


def _program_matches(token: str, app: str, binary: str) -> bool:
    token = token.strip('"')
    return token == binary or os.path.basename(token) == app or \
        (token.startswith("/") and _real(Path(token)) == _real(Path(binary)))


def find_desktop_entry(app: str, binary: str, places: Places) -> Path | None:
    """The system .desktop file that starts APP: APP.desktop, else one whose Exec runs it."""
    dirs = [d / "applications" for d in places.data_dirs if (d / "applications").is_dir()]
    for directory in dirs:
        exact = directory / f"{app}.desktop"
        if exact.is_file():
            return exact
    for directory in dirs:
        for entry in sorted(directory.glob("*.desktop")):
            try:
                text = entry.read_text(errors="replace")
            except OSError:
                continue
            for line in _main_group(text.splitlines()):
                if line.startswith("Exec="):
                    span = _exec_program(line[5:])
                    if span and _program_matches(line[5:][span[0]:span[1]], app, binary):
                        return entry
    return None


def _main_group(lines: list[str]) -> list[str]:
    out, inside = [], False
    for line in lines:
        if line.startswith("["):
            inside = line.strip() == "[Desktop Entry]"
        elif inside:
            out.append(line)
    return out


def rewrite_desktop_entry(text: str, app: str, binary: str, wrapper: Path,
                          source: Path) -> str:
    """The entry with every Exec/TryExec pointed at the wrapper; refuses what it cannot route."""
    quoted = _desktop_quote(str(wrapper))
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
            if span is None or not _program_matches(value[span[0]:span[1]], app, binary):
                raise SetupError(f"{source}: cannot route '{line.strip()}' through the wrapper "
                                 f"(it does not start {app})", origin="jailpy wrap",
                                 hint="wrap the program that line starts, or write the entry "
                                 "by hand")
            line = f"Exec={value[:span[0]]}{quoted}{value[span[1]:]}"
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
            f"# desktop={w.desktop or ''}", f"# created={':'.join(w.created)}"]
    command = [*_jailpy_command(), "run", "--profile", w.profile, "--", w.binary]
    return "\n".join([
        "#!/bin/sh", MARKER, *meta,
        f"# Written by 'jailpy wrap {w.app}'; remove it with 'jailpy unwrap {w.app}'.",
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
    """Write the wrapper and the desktop entry copy; returns them and notes for the user."""
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
    binary = find_real_binary(app, places)
    chosen = _choose_profile(name, profile, env)
    notes: list[str] = []
    record = Wrapped(name, wrapper, binary, chosen,
                     created=existing.created if existing else [])

    source = find_desktop_entry(name, binary, places)
    desktop_text = None
    if source is None:
        notes.append(f"no desktop entry found for {name}; only the wrapper was written")
    else:
        target = places.applications / source.name
        if target.exists() and _desktop_owner(target) != str(wrapper):
            raise SetupError(f"{target} exists and was not written by jailpy wrap",
                             origin="jailpy wrap", hint="move it away to wrap this app")
        desktop_text = rewrite_desktop_entry(source.read_text(errors="replace"), name, binary,
                                             wrapper, source)
        record.desktop = str(target)

    # Each ends up in a line of a shell script or a .desktop entry: a newline in any
    # of them would start a line of its own, run outside every sandbox.
    for label, value in (("app name", name), ("program path", binary),
                         ("profile", chosen), ("wrapper path", str(wrapper)),
                         ("desktop entry path", record.desktop or "")):
        refuse_control(value, "jailpy wrap", f"the {label} {value!r}")
    record.created += [d for d in _makedirs(places.bin_dir) if d not in record.created]
    if desktop_text is not None:
        record.created += [d for d in _makedirs(places.applications)
                           if d not in record.created]
    _write_atomic(wrapper, wrapper_text(record), 0o755)
    if desktop_text is not None and record.desktop:
        _write_atomic(Path(record.desktop), desktop_text, 0o644)
    from ..usercache import record_written

    record_written(env, [str(wrapper), *([record.desktop] if record.desktop else [])])
    found = _which(name, places)
    if found is not None and _real(Path(found)) != _real(wrapper):
        notes.append(f"{places.bin_dir} comes after {os.path.dirname(found)} in PATH: "
                     f"typing '{name}' still starts {found} unsandboxed")
    return record, notes


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
    """Remove the wrapper and its desktop entry copy (only files jailpy wrote)."""
    env = dict(os.environ if env is None else env)
    places = Places.from_env(env, bin_dir)
    wrapper = places.bin_dir / os.path.basename(app)
    record = read_wrapper(wrapper)
    if record is None:
        raise ConfigError(f"{app} is not wrapped in {places.bin_dir}", origin="jailpy unwrap",
                          hint="see 'jailpy wrap --list'")
    if record.desktop and _desktop_owner(Path(record.desktop)) == str(wrapper):
        os.unlink(record.desktop)
    wrapper.unlink()
    from ..usercache import record_written

    record_written(env, [str(wrapper), *([record.desktop] if record.desktop else [])],
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
    return [w for w in found if w is not None]
