"""`jailpy learn`: run a command while watching it, write the profile it needs, check it.

    1. run CMD under strace in a permissive variant of the base profile (host
       filesystem read-only, the working directory and --writable paths
       writable, seccomp and Landlock off so strace may ptrace, the base's
       network), strace writing its log to a host directory bound in;
    2. read the log (profile/learn.py: untrusted input, parsed strictly),
       write a profile that extends the base (merged with --merge's);
    3. run CMD again under the written profile and say whether it ended the
       same way.

docs/learn.md has the mechanism, its cost and its limits.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile

from ..errors import ConfigError

#: Where the host directory holding strace's log appears during the learn run.
LOG_DIR = "/tmp/.jailpy-learn"
#: strace: follow forks, no attach/exit chatter, every string as \xHH, fds and
#: AT_FDCWD with their paths, strings up to 128 bytes (a sun_path is at most 108).
STRACE_OPTIONS = ("-f", "-qq", "-xx", "-y", "-s", "128")


def _say(text: str) -> None:
    sys.stderr.write(f"jailpy learn: {text}\n")
    sys.stderr.flush()


def permissive_layer(cwd: str, writable: tuple[str, ...], log_dir: str):
    """The profile layer that turns the base into the learn run's permissive variant;
    its mount ops (as MountOps) tell learn() which paths were scratch."""
    from ..profile import learn
    from ..profile.merge import Layer

    mounts = [{"ro-bind": "/"}, {"dev": "/dev"}, {"proc": "/proc"},
              {"tmpfs": "/tmp", "mode": "1777"}, {"tmpfs": "/var/tmp", "mode": "1777"}]
    for path in ((cwd,) if cwd != "/" else ()) + writable:
        mounts.append({"bind": learn.escape(path)})
    mounts.append({"bind": learn.escape(log_dir), "dest": LOG_DIR})
    doc = {"reset": ["filesystem.mounts", "seccomp.deny", "seccomp.allow"],
           "filesystem": {"mounts": mounts},
           "seccomp": {"enabled": False}, "landlock": {"enabled": False}}
    return Layer(doc, "jailpy learn (the permissive variant)")


def execute_learn(base: str | None, output: str | None, merge: str | None,
                  writable: tuple[str, ...], command: list[str]) -> int:
    """The whole `jailpy learn`; returns the exit status."""
    from ..api import Sandbox, load_policy
    from ..plan.seccomp import names_in
    from ..profile import learn

    if merge and output and os.path.abspath(merge) != os.path.abspath(output):
        raise ConfigError("--merge writes back to its own file; -o names another",
                          origin="-o / --merge", hint="give one of them")
    target = output or merge
    if target is None:
        raise ConfigError("where to write the profile: -o OUT.toml or --merge OUT.toml",
                          origin="jailpy learn")
    earlier = None
    if merge and os.path.exists(merge):
        earlier, earlier_base = learn.read_learned(merge)
        base = base or earlier_base
    base = base or "default"
    from ..profile.loader import is_path

    if is_path(base):  # the learned profile may be read from anywhere
        base = os.path.abspath(base)
    strace = shutil.which("strace")
    if strace is None:
        raise ConfigError("strace is not installed; jailpy learn runs the command under it",
                          origin="jailpy learn", hint="apt install strace (or dnf/pacman)")
    cwd = os.getcwd()
    writable = tuple(os.path.abspath(p) for p in writable)
    for path in writable:
        if not os.path.isdir(path):
            raise ConfigError(f"not a directory: {path!r}", origin="--writable")
    base_policy = load_policy(base)
    log_dir = tempfile.mkdtemp(prefix="jailpy-learn-")
    try:
        layer = permissive_layer(cwd, writable, log_dir)
        learning = load_policy(base, layer)
        log = f"{LOG_DIR}/trace"
        _say(f"learning: {shlex.join(command)} (under strace, in a permissive variant of "
             f"{base})")
        traced = Sandbox(learning).run([strace, *STRACE_OPTIONS, "-o", log, "--", *command],
                                       forward_signals=True)
        try:
            with open(os.path.join(log_dir, "trace"), encoding="ascii",
                      errors="replace") as lines:
                seen = learn.read_trace(lines, cwd)
        except OSError as exc:
            raise ConfigError(f"strace left no log ({exc.strerror})", origin="jailpy learn",
                              hint="is ptrace allowed here? see docs/learn.md") from exc
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    from ..runtime.seccomp import native_syscalls

    native = native_syscalls()
    unknown = seen.syscalls - native
    seen.syscalls &= native
    if unknown:
        seen.skip(f"syscall names libseccomp does not know ({', '.join(sorted(unknown))})")
    home = os.path.realpath(os.environ.get("HOME") or "/")
    protected = ("/", home)
    default_denied = names_in("@default")
    learned = learn.learn(seen, base_policy.filesystem.ops, learning.filesystem.ops,
                          protected, default_denied)
    learned.runs.append(f"{shlex.join(command)} -> exit {traced.exit_code}")
    if earlier is not None:
        earlier.update(learned)
        learned = earlier
    text = learn.document(learned, base, protected, base_policy.network.mode, native)
    _write(target, text)
    import tomllib

    written = tomllib.loads(text)
    binds = sum(1 for op in written["filesystem"]["mounts"] if {"bind", "ro-bind"} & set(op))
    allowed = len(written["seccomp"]["allow"])
    _say(f"wrote {target}: {binds} binds, {allowed} of this kernel's "
         f"{len(native)} syscalls allowed, network "
         f"{'ports ' + str(sorted(learned.tcp_connect)) if learned.inet_used else 'none'}")
    _say(f"verifying: {shlex.join(command)} under {target}")
    checked = Sandbox(load_policy(os.path.abspath(target))).run(command, forward_signals=True)
    if checked.exit_code == traced.exit_code:
        _say(f"verified: exit {checked.exit_code} under the learned profile, as while learning")
        return 0
    _say(f"NOT verified: exit {checked.exit_code} under the learned profile, "
         f"{traced.exit_code} while learning; run the code paths it missed with --merge")
    return 1


def _write(path: str, text: str) -> None:
    """Replace the file whole (a reader never sees half a profile)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".learn-", suffix=".toml", dir=directory)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}", origin="-o / --merge") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        os.unlink(temporary)  # no half-written .learn-*.toml left beside the profile
        raise ConfigError(f"cannot write {path}: {exc.strerror}", origin="-o / --merge") from exc
