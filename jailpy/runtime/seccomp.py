"""Seccomp: compile a RuleSet to classic BPF, cache it, load it.

    prepare(spec)     supervisor, before fork: the program, from this process's
                      memo, the cache, or resolved and compiled (a cache miss)
    apply(program)    target, after no_new_privs, right before execve: load it

Compiling needs libseccomp (through pyseccomp), whose import alone costs
tens of milliseconds. The compiled program depends only on the seccomp
policy section, the code that resolves and compiles it, the kernel
architecture and the libseccomp library, so it is cached as raw BPF under
$XDG_CACHE_HOME/jailpy and loaded with the seccomp(2) syscall directly.

The cache key is computed without resolving anything: a hash of the policy
record (its repr is deterministic), jailpy's and Python's versions, the size
and mtime of the rule tables and of this compiler, and the architecture. The
files the compiler loaded (libseccomp.so and pyseccomp) are recorded inside
the entry with their stat identity and checked with one stat each on a hit,
so a `jailpy run` that hits the cache neither imports the rule tables or
pyseccomp nor loads libseccomp, and an upgraded library is a miss. Rule
errors (unknown groups, actions or syscalls) are raised while compiling, so a
policy that has an entry is one that compiled.

The cache is trusted only when the directory and the file belong to the
caller and are writable by nobody else; entries carry a hash of their
content, so a truncated or foreign file is recompiled, never loaded.

The guard and the main filter are compiled separately and composed into
one program: every "allow" of the guard becomes a jump to the start of the
main filter. Foreign ABIs (i386 through int 0x80, x32 syscall numbers)
reach the bad-arch action of whichever part sees them first.
"""

from __future__ import annotations

import os
import struct
import sys

from .. import __version__
from ..errors import ConfigError, SetupError
from ..linux import syscalls as sc
from ..record import Record
from ..usercache import cache_dir, open_dir, read_entry, sha256 as _sha256, write_entry

TYPE_CHECKING = False  # the rule tables are imported only to compile (a cache miss)
if TYPE_CHECKING:
    from ..policy import SeccompPolicy
    from ..plan.seccomp import Rule, RuleSet

#: Bump when the compiler or the file layout changes.
FORMAT = b"jailpy-seccomp-3"
_MAGIC = b"JPSECBP3"
_MAX_INSNS = 4096

#: Syscalls newer than some libseccomp releases; since Linux 5.1 new syscalls
#: share one number on x86_64, aarch64 and the other asm-generic architectures.
NEWER_SYSCALLS = {
    "statmount": 457, "listmount": 458, "lsm_get_self_attr": 459, "lsm_set_self_attr": 460,
    "lsm_list_modules": 461, "mseal": 462, "setxattrat": 463, "getxattrat": 464,
    "listxattrat": 465, "removexattrat": 466, "open_tree_attr": 467, "file_getattr": 468,
    "file_setattr": 469,
}
_UNIFIED_NUMBERING = ("x86_64", "aarch64")
_MACHINE = os.uname().machine


class Compiled(Record):
    program: bytes
    #: Syscalls in the rules that do not exist on this architecture.
    skipped: tuple[str, ...] = ()


# --- compiling (imports pyseccomp) ---------------------------------------------------


def _action(lib, action: str) -> int:
    from ..plan.seccomp import errno_value

    if action == "allow":
        return lib.ALLOW
    if action.startswith("errno:"):
        return lib.ERRNO(errno_value(action))
    return {"kill-process": lib.KILL_PROCESS, "kill-thread": lib.KILL_THREAD,
            "trap": lib.TRAP, "log": lib.LOG}[action]


class _Names:
    """Syscall name -> number on this architecture, with did-you-mean."""

    def __init__(self, lib) -> None:
        self.lib = lib
        self._all: list[str] | None = None

    def number(self, rule: Rule) -> int | None:
        """The syscall number; None when the name exists only on other architectures."""
        nr = self.lib.resolve_syscall(self.lib.Arch.NATIVE, rule.syscall)
        if nr >= 0:
            return nr
        if nr == -1:
            if rule.syscall in NEWER_SYSCALLS and _MACHINE in _UNIFIED_NUMBERING:
                return NEWER_SYSCALLS[rule.syscall]
            if not rule.group:  # a name the user wrote; group members may predate libseccomp
                self._unknown(rule)
        return None

    def _unknown(self, rule: Rule) -> None:
        from ..errors import suggest
        from ..plan.seccomp import GROUPS

        if self._all is None:
            self._all = sorted(native_syscalls(self.lib)) + list(GROUPS)
        raise ConfigError(f"unknown syscall {rule.syscall!r}", origin=rule.origin or "seccomp",
                          hint=suggest(rule.syscall, self._all))


def native_syscalls(lib=None) -> set[str]:
    """Every syscall name this architecture has (libseccomp's table, plus the newer
    calls it may not know yet): the kernel's count `jailpy learn` reports."""
    if lib is None:
        import pyseccomp as lib
    names = set()
    for nr in range(1024):
        try:
            names.add(lib.resolve_syscall(lib.Arch.NATIVE, nr).decode())
        except ValueError:
            continue
    if _MACHINE in _UNIFIED_NUMBERING:
        names.update(NEWER_SYSCALLS)
    return names


def _export(lib, filt) -> bytes:
    fd = os.memfd_create("jailpy-seccomp", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as f:
            filt.export_bpf(f)
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def _build(lib, names: _Names, default: str, bad_arch: str, rules: tuple[Rule, ...],
           skipped: list[str]) -> bytes:
    filt = lib.SyscallFilter(_action(lib, default))
    filt.set_attr(lib.Attr.ACT_BADARCH, _action(lib, bad_arch))
    filt.set_attr(lib.Attr.CTL_OPTIMIZE, 2)
    for rule in rules:
        nr = names.number(rule)
        if nr is None:
            skipped.append(rule.syscall)
            continue
        args = [lib.Arg(m.arg, lib.MASKED_EQ, m.mask, m.value) for m in rule.match]
        filt.add_rule(_action(lib, rule.action), nr, *args)
    return _export(lib, filt)


def compose(first: bytes, second: bytes) -> bytes:
    """One program that runs `first` and, wherever it would allow, runs `second`."""
    allow = 0x7FFF0000
    out = bytearray()
    count = len(first) // 8
    for i in range(count):
        code, jt, jf, k = struct.unpack_from("<HBBI", first, i * 8)
        if code == 0x06 and k == allow:            # BPF_RET|BPF_K ALLOW
            out += struct.pack("<HBBI", 0x05, 0, 0, count - i - 1)  # BPF_JMP|BPF_JA
        elif code & 0x07 == 0x06 and code != 0x06:  # a RET of a register: cannot rewrite
            raise SetupError("cannot compose seccomp filters (unexpected return form)",
                             origin="seccomp")
        else:
            out += first[i * 8:i * 8 + 8]
    out += second
    if len(out) // 8 > _MAX_INSNS:
        raise ConfigError(f"the seccomp filter has {len(out) // 8} instructions; the kernel "
                          f"accepts at most {_MAX_INSNS}", origin="seccomp")
    return bytes(out)


def compile_rules(rules: RuleSet) -> Compiled:
    """Validate names and compile (guard, then main) to one raw BPF program."""
    import pyseccomp as lib

    names = _Names(lib)
    skipped: list[str] = []
    main = _build(lib, names, rules.default_action, rules.bad_arch_action, rules.main, skipped)
    if rules.guard:
        guard = _build(lib, names, "allow", rules.bad_arch_action, rules.guard, skipped)
        program = compose(guard, main)
    else:
        program = main
    return Compiled(program, tuple(sorted(set(skipped))))


# --- cache ------------------------------------------------------------------------


def libseccomp_version() -> str:
    """The libseccomp version, read without importing pyseccomp (for `jailpy check`)."""
    try:
        return "%d.%d.%d" % sc.libseccomp_version()
    except OSError as exc:
        raise SetupError("libseccomp is not installed", origin="seccomp",
                         hint="install libseccomp2 (Debian/Ubuntu) or libseccomp (Fedora/Arch)"
                         ) from exc


def _source_stamp() -> str:
    """Size and mtime of the rule tables and of this compiler, read without importing."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for path in (os.path.join(os.path.dirname(here), "plan", "seccomp.py"), __file__):
        try:
            st = os.stat(path)
        except OSError:
            parts.append(f"{path}:?")
            continue
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return "\0".join(parts)


def cache_key(spec: SeccompPolicy) -> str:
    """The cache name of a policy's filter; origins only word errors, so they are left out."""
    h = _sha256(FORMAT)
    for part in (repr(spec.replace(origins=())), __version__, sys.version, _MACHINE,
                 _source_stamp()):
        h.update(b"\0" + part.encode())
    return h.hexdigest()


def _file_id(path: str) -> str | None:
    """The stat identity of a file: a replaced or upgraded file gets another one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _compiler_files() -> list[str] | None:
    """The libseccomp.so this process mapped (and pyseccomp's source), after compiling."""
    import pyseccomp

    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read().decode(errors="replace")
    except OSError:
        return None
    libs = sorted({line.split(None, 5)[5] for line in maps.splitlines()
                   if len(line.split(None, 5)) == 6 and "/libseccomp.so" in line})
    if len(libs) != 1 or not libs[0].startswith("/"):
        return None
    return [libs[0], os.path.abspath(pyseccomp.__file__)]


def _dependencies() -> bytes | None:
    """Entry metadata: one "path\0identity" line per file the compiler used."""
    files = _compiler_files()
    if files is None:
        return None
    lines = []
    for path in files:
        ident = _file_id(path)
        if ident is None or "\n" in path or "\0" in path:
            return None
        lines.append(f"{path}\0{ident}")
    return "\n".join(lines).encode()


def _dependencies_unchanged(meta: bytes) -> bool:
    try:
        lines = meta.decode().split("\n")
    except UnicodeDecodeError:
        return False
    for line in lines:
        path, _, ident = line.partition("\0")
        if not path.startswith("/") or _file_id(path) != ident:
            return False
    return bool(lines)


def _encode_entry(meta: bytes, program: bytes) -> bytes:
    body = struct.pack("<H", len(meta)) + meta + program
    return _MAGIC + _sha256(body).digest() + body


def _read_entry(dir_fd: int, name: str) -> bytes | None:
    """A cached program, if its stored checksum matches (a torn or foreign file does not)
    and the libseccomp it was compiled with is still the installed one."""
    data = read_entry(dir_fd, name, limit=64 + 4096 + _MAX_INSNS * 8)
    if data is None:
        return None
    header, digest, body = data[:8], data[8:40], data[40:]
    if header != _MAGIC or len(body) < 2 or _sha256(body).digest() != digest:
        return None
    (meta_len,) = struct.unpack_from("<H", body)
    meta, program = body[2:2 + meta_len], body[2 + meta_len:]
    if len(meta) != meta_len or not program or len(program) % 8:
        return None
    if not _dependencies_unchanged(meta):
        return None
    return program


def program_for(spec: SeccompPolicy, env: dict[str, str] | None = None) -> bytes | None:
    """The compiled filter of a policy section (None when seccomp is disabled), from the
    cache when a trusted entry exists; resolving and compiling happen only on a miss."""
    if not spec.enabled:
        return None
    path = cache_dir(env)
    dir_fd = open_dir(path, create=True) if path else None
    try:
        key = cache_key(spec) if dir_fd is not None else ""
        if dir_fd is not None:
            cached = _read_entry(dir_fd, key + ".bpf")
            if cached is not None:
                return cached
        from ..plan.seccomp import resolve

        rules = resolve(spec)
        if rules is None:
            return None
        program = compile_rules(rules).program
        meta = _dependencies() if dir_fd is not None else None
        if dir_fd is not None and meta is not None:
            write_entry(dir_fd, key + ".bpf", _encode_entry(meta, program))
        return program
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


#: Programs already found in this process, by policy section: a program that
#: starts many sandboxes resolves and reads the cache once.
_PROGRAMS: dict[SeccompPolicy, bytes | None] = {}


def prepare(spec: SeccompPolicy) -> bytes | None:
    """The supervisor's step before fork: the filter to load (None: seccomp off)."""
    if spec not in _PROGRAMS:
        if len(_PROGRAMS) > 32:
            _PROGRAMS.clear()
        _PROGRAMS[spec] = program_for(spec)
    return _PROGRAMS[spec]


# --- loading (in the target, after no_new_privs, right before execve) -----------------


def apply(program: bytes, through_prctl: bool = False) -> None:
    """Load one filter; through_prctl for a client's raw program (bwrap's way, which
    its filters are written for: they may allow prctl but not seccomp(2))."""
    try:
        if through_prctl:
            sc.seccomp_set_filter_prctl(program)
        else:
            sc.seccomp_set_filter(program)
    except OSError as exc:
        raise SetupError(f"cannot load the seccomp filter: {os.strerror(exc.errno)}",
                         origin="seccomp") from exc
