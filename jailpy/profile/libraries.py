"""The shared libraries a program needs, read from ELF headers on this machine.

firejail's `private-lib` replaces /usr/lib with the libraries the sandboxed
programs link against. The import (profile/firejail.py) resolves that set at
conversion time, as it resolves `private-bin`: for each program, the dynamic
loader it names (PT_INTERP) and the transitive DT_NEEDED entries, each found
the way ld.so finds it (the object's DT_RPATH/DT_RUNPATH with $ORIGIN, then
the directories of /etc/ld.so.conf, then the default /lib and /usr/lib).

Read with a small parser rather than `ldd`: ldd runs the program's loader,
which for a hostile or foreign binary means running code, and it cannot be
asked about a library for another ABI. The parser only reads: the ELF header,
the program headers, the dynamic segment and its string table.

Libraries loaded with dlopen() (GTK's and GIO's modules, gconv, pixbuf
loaders) are not in any DT_NEEDED entry; PLUGIN_DIRS names the directory of
modules each well-known library loads, bound with it (docs/firejail.md).
"""

from __future__ import annotations

import glob
import os
import struct
from dataclasses import dataclass

#: Program header and dynamic entry types read here (elf(5)).
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 15, 29
#: The directories ld.so searches last, after ld.so.conf's.
DEFAULT_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")
#: A library -> the directory of modules it loads at run time, relative to the
#: directory the library was found in. Bound (with the modules' own libraries)
#: whenever the library is.
PLUGIN_DIRS = {
    "libc.so.6": "gconv", "libgtk-3.so.0": "gtk-3.0", "libgtk-x11-2.0.so.0": "gtk-2.0",
    "libgdk_pixbuf-2.0.so.0": "gdk-pixbuf-2.0", "libgio-2.0.so.0": "gio",
    "libgstreamer-1.0.so.0": "gstreamer-1.0", "libpulse.so.0": "pulseaudio",
    "libasound.so.2": "alsa-lib", "libsasl2.so.2": "sasl2", "libQt5Core.so.5": "qt5",
}
#: Most files one plugin directory may contribute ELF dependencies from.
MAX_PLUGIN_FILES = 4000


@dataclass(frozen=True)
class Elf:
    """What the dynamic loader reads from one ELF file."""

    kind: tuple[int, int, int]    # (class, data encoding, machine): an ABI
    interpreter: str | None       # PT_INTERP: the loader of an executable
    needed: tuple[str, ...]       # DT_NEEDED sonames, in order
    search: tuple[str, ...]       # DT_RPATH (when no DT_RUNPATH) or DT_RUNPATH dirs


def read_elf(path: str) -> Elf | None:
    """The dynamic-linking facts of `path`; None for a file that is not ELF or is
    malformed (a script, a truncated file): nothing is loaded for it."""
    try:
        with open(path, "rb") as f:
            return _parse(f)
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None


def _parse(f) -> Elf | None:
    ident = f.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) \
            or ident[5] not in (1, 2):
        return None
    wide = ident[4] == 2
    order = "<" if ident[5] == 1 else ">"
    machine = struct.unpack_from(order + "H", ident, 18)[0]
    if wide:
        phoff, = struct.unpack_from(order + "Q", ident, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
        header, dyn = order + "IIQQQQQQ", order + "qQ"
    else:
        phoff, = struct.unpack_from(order + "I", ident, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
        header, dyn = order + "IIIIIIII", order + "iI"
    segments = []   # (type, offset, vaddr, filesz)
    for index in range(min(phnum, 256)):
        f.seek(phoff + index * phentsize)
        fields = struct.unpack(header, f.read(struct.calcsize(header)))
        if wide:
            p_type, _, offset, vaddr, _, filesz, _, _ = fields
        else:
            p_type, offset, vaddr, _, filesz, _, _, _ = fields
        segments.append((p_type, offset, vaddr, filesz))
    interpreter = None
    entries: list[tuple[int, int]] = []
    for p_type, offset, _, filesz in segments:
        if p_type == PT_INTERP:
            f.seek(offset)
            interpreter = f.read(min(filesz, 4096)).split(b"\0", 1)[0].decode()
        elif p_type == PT_DYNAMIC:
            f.seek(offset)
            raw = f.read(min(filesz, 1 << 20))
            size = struct.calcsize(dyn)
            for start in range(0, len(raw) - size + 1, size):
                tag, value = struct.unpack_from(dyn, raw, start)
                if tag == DT_NULL:
                    break
                entries.append((tag, value))
    kind = (ident[4], ident[5], machine)
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab is None:
        return Elf(kind, interpreter, (), ())
    # DT_STRTAB is an address: the PT_LOAD segment holding it gives its file offset.
    base = next((offset + strtab - vaddr for p_type, offset, vaddr, filesz in segments
                 if p_type == PT_LOAD and vaddr <= strtab < vaddr + filesz), None)
    if base is None:
        return Elf(kind, interpreter, (), ())
    f.seek(base)
    strings = f.read(min(next((v for t, v in entries if t == DT_STRSZ), 1 << 20), 1 << 22))

    def string(at: int) -> str:
        return strings[at:strings.index(b"\0", at)].decode()

    needed = tuple(string(v) for t, v in entries if t == DT_NEEDED)
    runpath = [string(v) for t, v in entries if t == DT_RUNPATH]
    paths = runpath or [string(v) for t, v in entries if t == DT_RPATH]
    search = tuple(d for p in paths for d in p.split(":") if d)
    return Elf(kind, interpreter, needed, search)


def ld_so_conf(path: str = "/etc/ld.so.conf", depth: int = 0) -> list[str]:
    """The library directories of ld.so.conf, its `include` globs followed."""
    dirs: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
    except OSError:
        return dirs
    for line in filter(None, lines):
        if line.startswith("include") and depth < 8:
            pattern = line.split(None, 1)[1] if " " in line or "\t" in line else ""
            pattern = os.path.join(os.path.dirname(path), pattern) \
                if pattern and not pattern.startswith("/") else pattern
            for included in sorted(glob.glob(pattern)):
                dirs += ld_so_conf(included, depth + 1)
        elif line.startswith("/"):
            dirs.append(line.rstrip("/"))
    return dirs


class Resolver:
    """Finds libraries as the dynamic loader would, remembering what it read."""

    def __init__(self) -> None:
        self.dirs = [*dict.fromkeys([*ld_so_conf(), *DEFAULT_DIRS])]
        self._elf: dict[str, Elf | None] = {}
        self._real: dict[str, str] = {}

    def realpath(self, path: str) -> str:
        if path not in self._real:
            self._real[path] = os.path.realpath(path)
        return self._real[path]

    def elf(self, path: str) -> Elf | None:
        if path not in self._elf:
            self._elf[path] = read_elf(path)
        return self._elf[path]

    def find(self, soname: str, loader_path: str, kind: tuple) -> str | None:
        """The path `soname` resolves to for the object at `loader_path`."""
        if "/" in soname:
            return soname if os.path.isfile(soname) else None
        loader = self.elf(loader_path)
        origin = os.path.dirname(self.realpath(loader_path))
        own = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
               for d in (loader.search if loader else ())]
        for directory in (*own, *self.dirs):
            candidate = os.path.join(directory, soname)
            if os.path.isfile(candidate) and getattr(self.elf(candidate), "kind", None) == kind:
                return candidate
        return None

    def closure(self, programs: list[str]) -> tuple[list[str], list[str]]:
        """(every file `programs` load: their loader and libraries, each as found
        on its search path; the sonames found nowhere)."""
        found: dict[str, None] = {}
        missing: dict[str, None] = {}
        pending = [p for p in programs if os.path.isfile(p)]
        seen: set[str] = set()
        while pending:
            path = pending.pop()
            real = self.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            elf = self.elf(path)
            if elf is None:
                pending += self._script_interpreter(path)
                continue
            if elf.interpreter:
                found[elf.interpreter] = None
                pending.append(elf.interpreter)
            for soname in elf.needed:
                library = self.find(soname, path, elf.kind)
                if library is None:
                    missing[soname] = None
                    continue
                found[library] = None
                pending.append(library)
        return list(found), list(missing)

    @staticmethod
    def _script_interpreter(path: str) -> list[str]:
        """A script's `#!` interpreter (and env's program), to follow instead."""
        try:
            with open(path, "rb") as f:
                first = f.readline(256)
        except OSError:
            return []
        if not first.startswith(b"#!"):
            return []
        words = first[2:].decode(errors="replace").split()
        if not words:
            return []
        if os.path.basename(words[0]) == "env" and len(words) > 1:
            from shutil import which

            return [p for p in (words[0], which(words[1])) if p]
        return [words[0]]


def plugin_dirs(libraries: list[str]) -> list[str]:
    """The module directories (PLUGIN_DIRS) of the libraries that have one here."""
    out = []
    for library in libraries:
        sub = PLUGIN_DIRS.get(os.path.basename(library))
        if sub:
            directory = os.path.join(os.path.dirname(library), sub)
            if os.path.isdir(directory):
                out.append(directory)
    return out


def elf_files(directory: str) -> list[str]:
    """The ELF files under a directory (a plugin or a private-lib directory),
    at most MAX_PLUGIN_FILES of them."""
    out = []
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            path = os.path.join(root, name)
            if ".so" in name and not os.path.islink(path):
                out.append(path)
                if len(out) >= MAX_PLUGIN_FILES:
                    return out
    return out
