"""Import firejail profiles: firejail's deny-list language in, a jailpy profile out.

    read()     one firejail profile with its includes, `ignore`, `?CONDITIONAL:`
               lines and macros resolved: a flat list of Directives, each with
               the "FILE:LINE" it came from
    convert()  those Directives -> a Conversion: the jailpy profile document
               (extending the shipped `gui`), an origin comment per value, and a
               Note for every directive jailpy cannot express
    render()   a Conversion as TOML text (emit.py), notes as comments on top

The two models differ at the root: firejail starts from the host and hides
(blacklist), jailpy starts from nothing and binds what the app may see. So a
firejail home is converted to binds of exactly the paths the profile
whitelists, or, for a profile that only blacklists, of the paths it
explicitly un-hides (noblacklist): everything else of home stays unbound,
which hides at least what firejail hides. docs/firejail.md has the table.
Not on the `jailpy run` path: nothing here is imported by a run.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..plan.seccomp import GROUPS, SOCKET_FAMILIES

#: Where firejail looks for a profile or include named without a directory.
SYSTEM_DIR = "/etc/firejail"
#: Nested includes deeper than this are a loop (firejail's own limit is 16).
MAX_DEPTH = 16
#: ?CONDITIONAL: values, as firejail decides them with its default firejail.config
#: and no command-line option (HAS_* mirror options a converted profile never has).
CONDITIONS = {"HAS_APPIMAGE": False, "HAS_NET": False, "HAS_NODBUS": False,
              "HAS_NOSOUND": False, "HAS_PRIVATE": False, "HAS_X11": False,
              "ALLOW_TRAY": False, "BROWSER_DISABLE_U2F": True, "BROWSER_ALLOW_DRM": False}
#: firejail macros -> jailpy variables (the same places; see jailpy-profile(5)).
MACROS = {"${HOME}": "${HOME}", "${RUNUSER}": "${XDG_RUNTIME_DIR}",
          "${DESKTOP}": "${DESKTOP}", "${DOCUMENTS}": "${DOCUMENTS}",
          "${DOWNLOADS}": "${DOWNLOADS}", "${MUSIC}": "${MUSIC}",
          "${PICTURES}": "${PICTURES}", "${VIDEOS}": "${VIDEOS}", "${CFG}": SYSTEM_DIR}
#: ${PATH} stands for each directory of firejail's fixed search path.
PATH_DIRS = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/games", "/usr/local/games",
             "/usr/local/sbin", "/usr/sbin", "/sbin")
#: The XDG user directories jailpy grants by name (desktop.user_dirs).
USER_DIRS = {"${DESKTOP}": "desktop", "${DOCUMENTS}": "documents",
             "${DOWNLOADS}": "downloads", "${MUSIC}": "music", "${PICTURES}": "pictures",
             "${VIDEOS}": "videos"}
#: What the shipped `default` profile binds from the host, read-only; every other
#: top-level directory is simply not there (or a private tmpfs).
BOUND_SYSTEM = ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib64")
#: Directories private-bin replaces: firejail's ${PATH} (/bin and /sbin are the
#: `default` root's symlinks into /usr).
BIN_DIRS = ("/usr/local/bin", "/usr/bin", "/usr/games", "/usr/local/games", "/usr/local/sbin",
            "/usr/sbin")
#: Directories private-lib replaces (/lib and /lib64 are symlinks into /usr).
LIB_DIRS = ("/usr/lib", "/usr/lib64")
#: The top-level symlinks of jailpy's `default` root: a path through one of them is
#: the same file as the path it points to (hidden once, under /usr).
ROOT_LINKS = {"/bin": "/usr/bin", "/sbin": "/usr/sbin", "/lib": "/usr/lib",
              "/lib64": "/usr/lib64"}
#: What a private /etc always has, besides the profile's list: the dynamic
#: loader's cache and the user database every program looks itself up in.
ETC_ESSENTIALS = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group",
                  "nsswitch.conf", "localtime")

# Directives that jailpy's `default`/`gui` base already does (or does more of),
# with the reason shown by --origins-style comments in docs/firejail.md.
ALREADY = {
    "caps.drop": "jailpy drops every capability", "nonewprivs": "always set",
    "noroot": "the user namespace maps only the caller",
    "nogroups": "only the caller's group is mapped",
    "seccomp.block-secondary": "bad_arch_action = kill-process",
    "private-dev": "jailpy's /dev is minimal", "private-tmp": "private /tmp",
    "nodvd": "no /dev/sr* in jailpy's /dev", "notv": "no /dev/dvb in jailpy's /dev",
    "nou2f": "no /dev/hidraw* in jailpy's /dev", "novideo": "no /dev/video* in jailpy's /dev",
    "noinput": "no /dev/input in jailpy's /dev", "ipc-namespace": "new IPC namespace",
    "disable-mnt": "/mnt, /media, /run/media are not bound", "rmenv": "the environment is cleared",
    "restrict-namespaces": "@namespaces denied, allow_userns = false",
    "private-srv": "/srv is not bound", "quiet": "", "noprinters": "no printer devices",
    "private-cache": "home (and ~/.cache) is empty", "read-write": "binds are writable",
    "keep-dev-shm": "/dev/shm is kept", "keep-var-tmp": "/var/tmp is private",
}
# Directives jailpy cannot express, and why (a comment in the output, a note on stderr).
UNSUPPORTED = {
    "apparmor": "jailpy uses Landlock, not AppArmor (no setuid helper to load a profile)",
    "apparmor-replace": "jailpy uses Landlock, not AppArmor",
    "netfilter": "no host firewall rules without privileges",
    "tracelog": "no LD_PRELOAD logging library",
    "machine-id": "the host's /etc/machine-id stays visible",
    "noexec": "no noexec remount of a single path",
    "writable-var": "/var is not bound", "writable-var-log": "/var/log is not bound",
    "writable-etc": "/etc is read-only", "writable-run-user": "the runtime dir is private",
    "join-or-start": "each jailpy run is a new sandbox",
    "deterministic-shutdown": "jailpy's pid 1 always kills what is left",
    "allusers": "other users' homes are never bound", "allow-debuggers": "@ptrace stays denied",
    "tab": "no shell completion inside", "keep-fd": "use jailpy run --pass-fd",
    "keep-config-pulse": "the PulseAudio client.conf is generated",
    "private-cwd": "jailpy chooses the working directory itself",
    "seccomp.32": "foreign ABIs are killed (bad_arch_action)",
    "seccomp.keep": "use [seccomp] default_action = \"deny\" with an allow list",
    "caps": "jailpy drops every capability", "x11": "only the host display is passed",
}


@dataclass(frozen=True)
class Directive:
    keyword: str
    argument: str
    origin: str      # FILE:LINE

    @property
    def text(self) -> str:
        return f"{self.keyword} {self.argument}".strip()


@dataclass(frozen=True)
class Note:
    keyword: str
    origin: str
    text: str        # the directive as written
    reason: str


@dataclass
class Conversion:
    source: str
    data: dict
    origins: dict[str, str] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)


# --- reading ---------------------------------------------------------------------


def search_dirs(home: str) -> tuple[str, ...]:
    return (os.path.join(home, ".config", "firejail"), SYSTEM_DIR)


def locate(ref: str, home: str) -> str:
    """A profile FILE, or NAME (firefox, firefox.profile) on firejail's search path."""
    if os.sep in ref:
        if not os.path.isfile(ref):
            raise ConfigError(f"no firejail profile {ref}", origin="import-firejail")
        return ref
    name = ref if ref.endswith((".profile", ".inc", ".local")) else f"{ref}.profile"
    for directory in search_dirs(home):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise ConfigError(f"no firejail profile {name} in {' or '.join(search_dirs(home))}",
                      origin="import-firejail",
                      hint="install firejail-profiles, or give the profile's path")


def read(path: str, home: str) -> list[Directive]:
    """Every directive of `path` and its includes in firejail's order, with `ignore`
    and conditionals applied."""
    ignored: list[str] = []
    out: list[Directive] = []
    _read_into(path, home, ignored, out, 0)
    return out


def _read_into(path: str, home: str, ignored: list[str], out: list[Directive],
               depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ConfigError("includes nested too deep (a loop?)", origin=path)
    key = (path, home, tuple(ignored))
    if key not in _EXPANDED:  # the disable-*.inc files are read for most profiles
        start_out, start_ignored = len(out), len(ignored)
        _expand_file(path, home, ignored, out, depth)
        _EXPANDED[key] = (tuple(out[start_out:]), tuple(ignored[start_ignored:]))
        return
    directives, added = _EXPANDED[key]
    out.extend(directives)
    ignored.extend(added)


def _expand_file(path: str, home: str, ignored: list[str], out: list[Directive],
                 depth: int) -> None:
    for number, line in _lines(path):
        origin = f"{path}:{number}"
        if line.startswith("?"):
            condition, colon, rest = line[1:].partition(":")
            if not colon or not CONDITIONS.get(condition.strip(), False):
                continue
            line = rest.strip()
        if ignored and any(line == word or line.startswith((word + " ", word + ","))
                           for word in ignored):
            continue
        keyword, _, argument = line.partition(" ")
        argument = argument.strip()
        if keyword == "ignore":
            ignored.append(argument)
        elif keyword == "include":
            target = _include_path(argument, path, home)
            if target is not None:
                _read_into(target, home, ignored, out, depth + 1)
            elif not argument.endswith(".local"):
                raise ConfigError(f"include {argument}: file not found", origin=origin)
        else:
            out.append(Directive(keyword, argument, origin))


#: Expanded includes by (file, home, active ignores): one conversion run (--all)
#: expands each shared include once. Files are keyed by their stat in _LINES.
_EXPANDED: dict[tuple, tuple[tuple[Directive, ...], tuple[str, ...]]] = {}


def _lines(path: str) -> tuple[tuple[int, str], ...]:
    """The numbered directive lines of a file, comments dropped; read once per file
    and conversion run (--all reads disable-programs.inc for most profiles)."""
    try:
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in _LINES:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            _LINES[key] = tuple(
                (number, line) for number, line in
                ((n, raw.split("\t#", 1)[0].split(" #", 1)[0].strip())
                 for n, raw in enumerate(text.splitlines(), 1))
                if line and not line.startswith("#"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", origin="import-firejail") \
            from exc
    return _LINES[key]


_LINES: dict[tuple[str, int, int], tuple[tuple[int, str], ...]] = {}


def _include_path(argument: str, including: str, home: str) -> str | None:
    name = argument.replace("${CFG}", SYSTEM_DIR).replace("${HOME}", home)
    if name.startswith("~/"):
        name = os.path.join(home, name[2:])
    candidates = [name] if os.path.isabs(name) else \
        [os.path.join(d, name) for d in (*search_dirs(home), os.path.dirname(including))]
    return next((c for c in candidates if os.path.isfile(c)), None)


# --- paths -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def jailpy_paths(argument: str) -> tuple[str, ...]:
    """firejail path (macros, ~, ${PATH}) -> jailpy paths with jailpy variables."""
    text = argument.strip()
    if text.startswith("~/"):
        text = "${HOME}/" + text[2:]
    for macro, variable in MACROS.items():
        text = text.replace(macro, variable)
    if "${PATH}" in text:
        return tuple(os.path.normpath(text.replace("${PATH}", d)) for d in PATH_DIRS)
    return (text.rstrip("/") or "/",)


@functools.lru_cache(maxsize=16384)
def _in_home(path: str) -> bool:
    return path == "${HOME}" or path.startswith("${HOME}/") or path.split("/")[0] in USER_DIRS


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


@functools.lru_cache(maxsize=16384)
def _sandbox_path(path: str) -> str:
    """The path without the `default` root's top-level symlinks: /usr/bin/x for /bin/x."""
    top = _top(path)
    return ROOT_LINKS[top] + path[len(top):] if top in ROOT_LINKS else path


@functools.lru_cache(maxsize=16384)
def _top(path: str) -> str:
    """The top-level directory of an absolute path: /usr for /usr/share/x."""
    return "/" + path.split("/", 2)[1] if path.startswith("/") else path


@functools.lru_cache(maxsize=16384)
def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


@functools.lru_cache(maxsize=4096)
def _glob_match(glob_text: str) -> tuple[str, object]:
    """(the text before the first wildcard, the matcher): most paths fail the prefix."""
    import re

    prefix = glob_text[:min(glob_text.find(c) % (len(glob_text) + 1) for c in "*?[")]
    return prefix, re.compile(fnmatch.translate(glob_text)).match


class _Patterns:
    """A set of paths and globs, matched as firejail matches a blacklist entry:
    the same path, or a path the glob matches (globs compiled once, together)."""

    def __init__(self, paths: set[str]):
        self.paths = paths
        # (the text before the first wildcard, the matcher): most paths fail the prefix
        self.globs = [_glob_match(p) for p in paths if _is_glob(p)]

    def __contains__(self, path: str) -> bool:
        return path in self.paths or any(path.startswith(prefix) and match(path)
                                         for prefix, match in self.globs)


# --- converting ---------------------------------------------------------------------


class _Builder:
    """Collects the jailpy document from the directives, with origins and notes."""

    def __init__(self, source: str, directives: list[Directive]):
        self.source = source
        self.directives = directives
        self.mounts: list[tuple[dict, str]] = []
        self.mounted: set[tuple] = set()
        self.sections: dict[str, dict] = {}
        self.origins: dict[str, str] = {}
        self.notes: list[Note] = []
        self.noted: set[tuple[str, str]] = set()
        self.index: dict[str, list[Directive]] = {}
        self.position = {id(d): i for i, d in enumerate(directives)}
        for d in directives:
            self.index.setdefault(d.keyword, []).append(d)

    def note(self, d: Directive, reason: str) -> None:
        if (d.origin, reason) in self.noted:  # ${PATH} expands one line to several paths
            return
        self.noted.add((d.origin, reason))
        self.notes.append(Note(d.keyword, d.origin, d.text, reason))

    def set(self, section: str, key: str, value, origin: str) -> None:
        self.sections.setdefault(section, {})[key] = value
        self.origins[f"{section}.{key}"] = origin

    def append(self, section: str, key: str, value, origin: str) -> None:
        items = self.sections.setdefault(section, {}).setdefault(key, [])
        if value in items:
            return
        self.origins[f"{section}.{key}[{len(items)}]"] = origin
        items.append(value)

    def mount(self, table: dict, origin: str) -> None:
        key = tuple(table.items())
        if key in self.mounted:
            return
        self.mounted.add(key)
        self.mounts.append((table, origin))

    def by(self, *keywords: str) -> list[Directive]:
        if len(keywords) == 1:
            return self.index.get(keywords[0], [])
        found = [d for k in keywords for d in self.index.get(k, [])]
        return sorted(found, key=lambda d: self.position[id(d)]) if len(keywords) > 1 else found


def convert(path: str, home: str) -> Conversion:
    """The jailpy profile document for the firejail profile at `path`."""
    b = _Builder(path, read(path, home))
    handled = {"include", "ignore", "noblacklist", "nowhitelist", "blacklist",
               "blacklist-nolog", "whitelist", "mkdir", "mkfile", "read-only", "private",
               "private-bin", "private-lib", "private-etc", "private-opt", "seccomp",
               "seccomp.drop", "memory-deny-write-execute", "protocol", "net", "caps.keep", "dbus-user",
               "dbus-system", "dbus-user.talk", "dbus-user.own", "dbus-user.see",
               "dbus-user.call", "dbus-user.broadcast", "dbus-system.talk",
               "dbus-system.own", "dbus-system.see", "dbus-system.call",
               "dbus-system.broadcast", "nosound", "no3d", "x11", "hostname", "env",
               "whitelist-ro"}
    _home(b)
    _system_paths(b)
    _private_dirs(b)
    _security(b)
    _network(b)
    _desktop(b)
    for d in b.directives:
        if d.keyword in handled:
            continue
        if d.keyword in ALREADY:
            continue
        b.note(d, UNSUPPORTED.get(d.keyword) or "unknown to the converter")
    _drop_covered_hides(b)
    data: dict = {"description": _description(os.path.basename(path), b),
                  "extends": ["gui"]}
    if b.mounts:
        b.sections.setdefault("filesystem", {})["mounts"] = [t for t, _ in b.mounts]
        for i, (_, origin) in enumerate(b.mounts):
            b.origins[f"filesystem.mounts[{i}]"] = origin
    for name in ("filesystem", "process", "environment", "capabilities", "seccomp",
                 "landlock", "network", "desktop"):
        if name in b.sections:
            data[name] = b.sections[name]
    return Conversion(path, data, b.origins, b.notes)


def _drop_covered_hides(b: _Builder) -> None:
    """Drop each hide that another one covers already: /etc/ssh/* under /etc/ssh,
    ${PATH}/gccgo under ${PATH}/gcc* (a hidden directory is empty, a glob covers
    every match when the sandbox starts)."""
    hidden = _covered(tuple(t["hide"] for t, _ in b.mounts if "hide" in t))
    if hidden:
        b.mounts = [(t, o) for t, o in b.mounts if t.get("hide") not in hidden]


@functools.lru_cache(maxsize=64)
def _covered(hides: tuple[str, ...]) -> frozenset[str]:
    """The hides of `hides` that another one covers (most profiles share theirs, from
    firejail's disable-*.inc: computed once per set)."""
    plain = set(hides)
    globs: dict[str, list] = {}
    for pattern in hides:
        if _is_glob(pattern):
            parent, _, name = pattern.rpartition("/")
            globs.setdefault(parent, []).append((pattern, _glob_match(name)[1]))

    def covered(path: str) -> bool:
        ancestor = path
        while ancestor.count("/") > 1:
            parent, _, name = ancestor.rpartition("/")
            if ancestor != path and ancestor in plain:
                return True
            for pattern, match in globs.get(parent, ()):
                # as the runtime matches: a leading dot only by a pattern with one
                if pattern != path and match(name) and (
                        not name.startswith(".") or pattern.rpartition("/")[2][:1] == "."):
                    return True
            ancestor = parent
        return False

    return frozenset(path for path in plain if covered(path))


def _home(b: _Builder) -> None:
    """Home: bind what the profile whitelists there, or else what it un-hides."""
    unhidden = {p for d in b.by("noblacklist") for p in jailpy_paths(d.argument)}
    unlisted = {p for d in b.by("nowhitelist") for p in jailpy_paths(d.argument)}
    read_only = {p for d in b.by("read-only", "whitelist-ro") for p in jailpy_paths(d.argument)}
    created = {p for d in b.by("mkdir") for p in jailpy_paths(d.argument)}
    private_cache = bool(b.by("private-cache"))
    if b.by("private"):
        for d in b.by("private"):
            if d.argument:
                b.note(d, "a host directory as home is not converted: home stays empty")
        return
    wanted = [(p, d) for d in b.by("whitelist", "whitelist-ro")
              for p in jailpy_paths(d.argument) if _in_home(p) and p not in unlisted]
    if not wanted:
        wanted = [(p, d) for d in b.by("noblacklist") for p in jailpy_paths(d.argument)
                  if _in_home(p) and p != "${HOME}"]
    blacklisted = _Patterns({p for d in b.by("blacklist", "blacklist-nolog")
                             for p in jailpy_paths(d.argument) if _in_home(p)} - unhidden)
    for path, d in wanted:
        if path in blacklisted:
            b.note(d, "blacklisted as well: stays hidden")
            continue
        if private_cache and _under(path, "${HOME}/.cache"):
            b.note(d, "private-cache hides ~/.cache")
            continue
        writable = not any(_under(path, r) for r in read_only)
        if path in USER_DIRS:
            dirs = b.sections.setdefault("desktop", {}).setdefault("user_dirs", {})
            dirs[USER_DIRS[path]] = "rw" if writable else "ro"
            b.origins[f"desktop.user_dirs.{USER_DIRS[path]}"] = d.origin
        elif _is_glob(path):
            b.note(d, "a glob in home: jailpy binds named paths only")
        elif path in created and writable:
            b.append("desktop", "app_dirs", path, d.origin)
        else:
            b.mount({"bind-try" if writable else "ro-bind-try": path}, d.origin)


def _system_paths(b: _Builder) -> None:
    """Blacklists and whitelists outside home, against jailpy's `default` root."""
    unhidden = _Patterns({p for d in b.by("noblacklist") for p in jailpy_paths(d.argument)})
    unhidden_system = [p for p in unhidden.paths if not _in_home(p)]
    # private-bin / private-lib build these directories themselves
    replaced = tuple(d + "/" for d in (*(BIN_DIRS if b.by("private-bin") else ()),
                                       *(LIB_DIRS if b.by("private-lib") else ())))
    for d in b.by("blacklist", "blacklist-nolog"):
        for path in dict.fromkeys(map(_sandbox_path, jailpy_paths(d.argument))):
            if _in_home(path) or _top(path) not in BOUND_SYSTEM:
                continue  # not bound, so hidden
            if (path + "/").startswith(replaced) or path in unhidden:
                continue
            if not (_is_glob(path) and any(_glob_match(path)[1](p) for p in unhidden_system)):
                b.mount({"hide": path}, d.origin)
                continue
            # A glob the profile un-hides part of: firejail hides the rest, as found
            # when the sandbox starts; the conversion hides the rest found now.
            b.note(d, "a glob partly un-hidden by noblacklist: the other matches are "
                      "resolved on the converting machine")
            for match in sorted(glob.glob(path)):
                if match not in unhidden:
                    b.mount({"hide": match}, d.origin)
    _system_whitelists(b)
    for d in b.by("mkdir", "mkfile"):
        if not all(_in_home(p) for p in jailpy_paths(d.argument)):
            b.note(d, "directories outside home are not created")


def _system_whitelists(b: _Builder) -> None:
    """A whitelist under /usr/share, /usr/libexec, /opt... leaves only the whitelisted
    entries in that directory, as firejail does: a tmpfs there with each entry bound
    read-only (a glob resolved on the converting machine, as firejail resolves it
    when the sandbox starts). Elsewhere outside home: noted."""
    unlisted = {p for d in b.by("nowhitelist") for p in jailpy_paths(d.argument)}
    by_dir: dict[str, list[tuple[str, Directive]]] = {}
    for d in b.by("whitelist", "whitelist-ro"):
        for path in map(_sandbox_path, jailpy_paths(d.argument)):
            if _in_home(path) or path in unlisted:
                continue
            if _top(path) not in BOUND_SYSTEM:
                b.note(d, "not bound: outside home jailpy binds only /usr, /etc, /opt and "
                          "the desktop pieces")
                continue
            parts = path.split("/")
            directory = "/".join(parts[:3] if parts[1] == "usr" else parts[:2])
            if directory != path:
                by_dir.setdefault(directory, []).append((path, d))
    for directory, entries in by_dir.items():
        origin = entries[0][1].origin
        if os.path.isdir(directory) and not os.path.islink(directory):
            b.mount({"tmpfs": directory}, origin)
        else:  # no mount point for a tmpfs here: covered in case it exists there
            b.mount({"hide": directory}, origin)
            continue
        for path, d in entries:
            for match in sorted(glob.glob(path)) if _is_glob(path) else [path]:
                b.mount({"ro-bind-try": match}, d.origin)


def _private_dirs(b: _Builder) -> None:
    """private-bin, private-lib, private-etc and private-opt: a tmpfs with only the
    listed entries bound."""
    programs = _private_bin(b)
    if b.by("private-lib"):
        _private_lib(b, programs)
    for keyword, directory, essentials in (("private-etc", "/etc", ETC_ESSENTIALS),
                                           ("private-opt", "/opt", ())):
        entries = [(n.strip().strip("/"), d) for d in b.by(keyword)
                   for n in d.argument.split(",") if n.strip()]
        if not entries:
            continue
        origin = b.by(keyword)[0].origin
        b.mount({"tmpfs": directory}, origin)
        for name in essentials:
            b.mount({"ro-bind-try": f"{directory}/{name}"}, origin)
        for name, d in entries:
            if name.startswith("@"):
                b.note(d, f"{keyword} groups are not expanded")
            elif "/" in name or _is_glob(name) or name in ("", ".", ".."):
                b.note(d, f"{keyword} entry {name!r} is not a plain name")
            else:
                b.mount({"ro-bind-try": f"{directory}/{name}"}, d.origin)


def _private_bin(b: _Builder) -> list[str]:
    """A tmpfs over each BIN_DIRS directory with the named programs bound; returns the
    programs' host paths (private-lib resolves their libraries)."""
    names = [(n.strip(), d) for d in b.by("private-bin") for n in d.argument.split(",")
             if n.strip() and "/" not in n]
    if not names:
        return []
    programs = []
    origin = b.by("private-bin")[0].origin
    for bin_dir in BIN_DIRS:
        if os.path.islink(bin_dir):
            continue
        if not os.path.isdir(bin_dir):
            # Not here: no mount point for a tmpfs in the read-only /usr; covered in
            # case it exists where the profile runs.
            b.mount({"hide": bin_dir}, origin)
            continue
        # Left writable (it is the sandbox's own tmpfs), so `jailpy run --ro-bind`
        # can still add a program to it.
        b.mount({"tmpfs": bin_dir}, origin)
        for name, d in names:
            # A plain name is bound if present where the profile runs; a glob is
            # resolved against this machine now (firejail resolves it at start-up).
            found = sorted(glob.glob(os.path.join(bin_dir, name))) if _is_glob(name) \
                else [os.path.join(bin_dir, name)]
            for path in found:
                b.mount({"ro-bind-try": path}, d.origin)
                programs.append(path)
    return programs


def _private_lib(b: _Builder, programs: list[str]) -> None:
    """private-lib: a tmpfs over /usr/lib (and /usr/lib64) with only the libraries
    the programs load bound, resolved now from their ELF headers (libraries.py):
    the private-bin programs (or, without private-bin, the program named like the
    profile, which firejail's private-lib follows), the entries listed, the
    module directories of the libraries that load modules, and LIB_ALWAYS."""
    from . import libraries

    resolver = _resolver()
    directives = b.by("private-lib")
    origin = directives[0].origin
    if not programs:
        stem = os.path.basename(b.source).removesuffix(".profile")
        programs = [p for p in (os.path.join(d, stem) for d in PATH_DIRS)
                    if os.path.isfile(p)][:1]
    lib_dirs = [d for d in dict.fromkeys(resolver.dirs) if any(
        _under(_sandbox_path(d), top) for top in LIB_DIRS)]
    bound: dict[str, str] = {}   # host path -> the origin of its bind
    for name, d in ((n.strip(), d) for d in directives for n in d.argument.split(",")):
        if not name:
            continue
        if ".." in name.split("/"):  # would reach out of the library directories
            b.note(d, f"private-lib entry {name!r} names a parent directory; skipped")
            continue
        patterns = [name] if name.startswith("/") else [os.path.join(x, name)
                                                         for x in lib_dirs]
        matches = [m for pattern in patterns for m in sorted(glob.glob(pattern))]
        if not matches:
            b.note(d, f"private-lib entry {name!r} is not on this machine")
        for match in matches:
            bound.setdefault(match, d.origin)
    listed = [p for p in bound if os.path.isfile(p)]
    listed += [f for p in bound if os.path.isdir(p) for f in libraries.elf_files(p)]
    found, missing = resolver.closure([*programs, *listed])
    for directory in libraries.plugin_dirs(found):
        bound.setdefault(directory, origin)
        more, gone = resolver.closure(libraries.elf_files(directory))
        found += more
        missing += gone
    for path in (*found, *LIB_ALWAYS):
        bound.setdefault(path, origin)
    for directive in directives[:1]:
        for soname in dict.fromkeys(missing):
            b.note(directive, f"library {soname} is not on this machine")
    for lib_dir in LIB_DIRS:
        if os.path.isdir(lib_dir) and not os.path.islink(lib_dir):
            b.mount({"tmpfs": lib_dir}, origin)
    directories = [_sandbox_path(p) for p in bound if os.path.isdir(p)]
    for path, source in sorted(bound.items(), key=lambda item: _sandbox_path(item[0])):
        dest = _sandbox_path(path)
        if not any(_under(dest, top) for top in LIB_DIRS):
            continue  # /usr/local/lib and the like stay as they are
        if any(_under(dest, d) and dest != d for d in directories):
            continue  # in a directory bound whole
        if dest != path and os.path.exists(dest) and os.path.samefile(dest, path):
            path = dest  # /lib is /usr/lib here too: one name for both
        b.mount({"ro-bind-try": path} if dest == path else
                {"ro-bind-try": path, "dest": dest}, source)


@functools.lru_cache(maxsize=1)
def _resolver():
    """One library resolver per conversion run (--all reads the same libraries again
    and again); it remembers what it read from each file."""
    from .libraries import Resolver

    return Resolver()


#: What a private /usr/lib always has: the locales (data every program may load)
#: and os-release (/etc/os-release links to it).
LIB_ALWAYS = ("/usr/lib/locale", "/usr/lib/os-release")


def _security(b: _Builder) -> None:
    deny: list[tuple[str, str]] = []
    for d in b.by("seccomp", "seccomp.drop"):
        for name in (n.strip() for n in d.argument.split(",") if n.strip()):
            if name.startswith("!") or name.startswith("@") and name not in GROUPS:
                b.note(d, f"seccomp entry {name!r} has no jailpy equivalent")
            elif ":" in name:
                b.note(d, f"per-syscall errno {name!r} is not converted")
            else:
                deny.append((name, d.origin))
    for d in b.by("memory-deny-write-execute"):
        deny.append(("@memory-deny-write-execute", d.origin))
    protocols = b.by("protocol")
    if protocols:
        d = protocols[-1]
        wanted = {p.strip().lstrip("+-") for p in d.argument.split(",") if p.strip()}
        for name in sorted(wanted - set(SOCKET_FAMILIES)):
            b.note(d, f"unknown protocol {name!r}")
        deny.append(("@socket-other", d.origin))
        deny += [(f"@socket-{name}", d.origin) for name in SOCKET_FAMILIES if name not in wanted]
    for name, origin in deny:
        b.append("seccomp", "deny", name, origin)
    for d in b.by("caps.keep"):
        names = {n.strip().lower().removeprefix("cap_") for n in d.argument.split(",")}
        names.discard("")
        if names and names <= SANDBOX_HELPER_CAPABILITIES:
            # Chromium/Electron's setuid chrome-sandbox keeps these under firejail to
            # build its own sandbox; inside jailpy that sandbox is built in a user
            # namespace instead, which holds no capability over the host.
            b.set("seccomp", "allow_userns", True, d.origin)
            continue
        for name in sorted(names):
            b.append("capabilities", "keep", f"CAP_{name.upper()}", d.origin)
    for d in b.by("hostname"):
        b.set("process", "hostname", d.argument, d.origin)
    for d in b.by("env"):
        name, eq, value = d.argument.partition("=")
        if eq and name:
            b.sections.setdefault("environment", {}).setdefault("set", {})[name] = value
            b.origins[f"environment.set.{name}"] = d.origin
        else:
            b.note(d, "env takes NAME=VALUE")


#: What firejail keeps for the setuid chrome-sandbox helper of Chromium-based apps.
SANDBOX_HELPER_CAPABILITIES = frozenset({"sys_admin", "sys_chroot"})


def _description(name: str, b: _Builder) -> str:
    """The converted profile's description, saying where it is weaker than default
    beyond what gui already says (tests/unit/test_shipped_strictness.py reads
    every description along the extends chain)."""
    shared = []
    if b.sections.get("network", {}).get("mode") == "host":
        shared.append("the host's net namespace (firejail's default network)")
    if b.sections.get("seccomp", {}).get("allow_userns"):
        shared.append("user namespaces for the app's own sandbox")
    text = f"Converted from firejail {name}"
    return f"{text}; allows " + " and ".join(shared) if shared else text


def _network(b: _Builder) -> None:
    nets = b.by("net")
    last = nets[-1] if nets else None
    if last is not None and last.argument == "none":
        b.set("network", "mode", "none", last.origin)
        return
    if last is not None:
        b.note(last, "a firejail bridge or interface needs root; the host network is shared")
    origin = f"{b.source}: no `net none`"
    b.set("network", "mode", "host", origin)
    # Sharing the host's network namespace, X clients reach the X server through its
    # abstract socket first; Landlock's scope would refuse that (profiles/firefox.toml).
    b.set("landlock", "scope_abstract_unix", False, origin)


def _desktop(b: _Builder) -> None:
    b.append("desktop", "optional", "x11", f"{b.source}: firejail runs without a display")
    for d in b.by("x11"):
        if d.argument == "none":
            b.set("desktop", "x11", False, d.origin)
            b.set("desktop", "wayland", False, d.origin)
        else:
            b.note(d, "x11 servers (xpra, xephyr, xvfb) are not started; the host display "
                      "is passed when there is one")
    for d in b.by("nosound"):
        b.set("desktop", "pulseaudio", False, d.origin)
        b.set("desktop", "pipewire", False, d.origin)
    for d in b.by("no3d"):
        b.set("desktop", "gpu", False, d.origin)
    for bus, prefix, key in (("dbus-user", "dbus", "dbus"), ("dbus-system", "dbus_system",
                                                            "dbus_system")):
        modes = b.by(bus)
        mode = modes[-1].argument if modes else ""
        if modes:
            origin = modes[-1].origin
            if key == "dbus":
                b.set("desktop", "dbus", mode == "filter", origin)
            else:
                b.set("desktop", "dbus_system", "filtered" if mode == "filter" else "none",
                      origin)
                if mode == "filter":  # as `gui` does for the session bus
                    b.append("desktop", "optional", "dbus_system", origin)
            if mode not in ("filter", "none"):
                b.note(modes[-1], f"{bus} {mode}: jailpy never passes an unfiltered bus")
        for rule in ("talk", "own", "see", "call", "broadcast"):
            for d in b.by(f"{bus}.{rule}"):
                if mode != "filter":
                    continue
                if rule == "own" and key == "dbus_system":
                    b.note(d, "owning names on the system bus is not allowed")
                    continue
                b.append("desktop", f"{prefix}_{rule}", d.argument, d.origin)


# --- output ------------------------------------------------------------------------


def render(conversion: Conversion) -> str:
    """The converted profile as TOML: notes first, then the document with origins."""
    from .emit import dumps

    header = [f"jailpy profile converted from firejail: {conversion.source}",
              "by `jailpy profile import-firejail`; each value names the line it came from."]
    by_reason: dict[str, list[Note]] = {}
    for note in conversion.notes:
        by_reason.setdefault(note.reason, []).append(note)
    for reason, notes in by_reason.items():
        header += ["", f"Not converted: {reason} (docs/firejail.md)"]
        header += [f"  {n.origin}: {n.text}" for n in notes]
    return dumps(conversion.data, conversion.origins.get, header)


def stderr_lines(conversion: Conversion) -> list[str]:
    """One line per kind of directive not converted: keyword, count, first line, why."""
    seen: dict[tuple[str, str], list[Note]] = {}
    for note in conversion.notes:
        seen.setdefault((note.keyword, note.reason), []).append(note)
    lines = []
    for (keyword, reason), notes in seen.items():
        more = f" (and {len(notes) - 1} more)" if len(notes) > 1 else ""
        lines.append(f"note: {notes[0].origin}: {keyword} not converted{more}: {reason}")
    return lines


def summary(notes: list[Note]) -> dict[str, int]:
    """Notes per keyword, most frequent first."""
    counts: dict[str, int] = {}
    for note in notes:
        counts[note.keyword] = counts.get(note.keyword, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# --- commands ------------------------------------------------------------------------


def user_home() -> str:
    """The caller's home from the passwd entry (firejail's own ~/.config/firejail)."""
    import pwd

    return pwd.getpwuid(os.getuid()).pw_dir


def import_one(ref: str, out: str | None, home: str) -> tuple[Conversion, str]:
    """Convert one profile; write it to `out` (when given) and check it as `jailpy
    profile check` would. Returns the conversion and the TOML text."""
    conversion = convert(locate(ref, home), home)
    text = render(conversion)
    if out is not None:
        write_checked(text, out)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="jailpy-import-") as scratch:
            write_checked(text, os.path.join(scratch, "converted.toml"))
    return conversion, text


def write_checked(text: str, out: str) -> None:
    """Write the profile, then load it the way `jailpy run --profile out` would."""
    from ..policy import Caller
    from .commands import check

    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}", origin="-o") from exc
    check(out, Caller.current())


@dataclass
class Summary:
    """What `--all` did: converted profiles, failures by reason, notes by keyword."""

    converted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        total = len(self.converted) + len(self.failed)
        share = 100.0 * len(self.converted) / total if total else 0.0
        out = [f"converted {len(self.converted)} of {total} profiles ({share:.1f}%)"]
        for name, reason in sorted(self.failed.items()):
            out.append(f"  failed {name}: {reason}")
        if self.notes:
            out.append("not converted, by keyword (directive lines):")
            out += [f"  {keyword}: {count}" for keyword, count in
                    sorted(self.notes.items(), key=lambda item: (-item[1], item[0]))]
        return out


def import_all(directory: str, out_dir: str, home: str) -> Summary:
    """Convert every *.profile in `directory` into OUT_DIR/NAME.toml, each checked."""
    from ..errors import JailpyError, render as render_error

    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".profile"))
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: {exc.strerror}", origin="--all") from exc
    result = Summary()
    for name in names:
        stem = name[:-len(".profile")]
        try:
            conversion, _ = import_one(os.path.join(directory, name),
                                       os.path.join(out_dir, f"{stem}.toml"), home)
        except JailpyError as err:
            result.failed[stem] = render_error(err).splitlines()[0]
            continue
        result.converted.append(stem)
        for keyword, count in summary(conversion.notes).items():
            result.notes[keyword] = result.notes.get(keyword, 0) + count
    return result
