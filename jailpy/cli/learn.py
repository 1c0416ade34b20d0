"""`jailpy learn`: run a command while watching it, write the profile it needs, check it.

    1. run CMD under strace in a permissive variant of the base profile (host
       filesystem read-only, the working directory and --writable paths
       writable, seccomp and Landlock off so strace may ptrace, the base's
       network); strace writes its record into a pipe that this process
       reads, and nothing the command can reach leads to that pipe (below);
    2. read the record (profile/learn.py: untrusted input, parsed strictly),
       refuse it when strace stopped before the command ended, write a
       profile that extends the base (merged with --merge's);
    3. run CMD again under the written profile and say whether it ended the
       same way.

The command is untrusted, so its record must be strace's alone:
- the pipe's write end reaches the sandbox only as a descriptor of strace's;
  a shell between strace and the command closes it before the command runs
  (its lines are left out of the record), and strace's -o output is never
  the command's stdout or stderr;
- strace is started from a copy that is execute-only, so the kernel makes
  it non-dumpable: the command (same uid, no capability) is refused
  PTRACE_ATTACH, /proc/PID/fd, /proc/PID/mem and process_vm_writev on it;
- the command may still kill strace: every process strace saw start must
  have its end in the record, or no profile is written.

docs/learn.md has the mechanism, its cost and its limits.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile

from ..errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, CommandError, ConfigError

#: Where the learn run finds strace's execute-only copy (a read-only bind).
TRACER_DIR = "/tmp/.jailpy-learn"
#: strace: follow forks, no attach chatter (each process's end is kept: it
#: proves the record whole), every string as \xHH, fds and AT_FDCWD with their
#: paths, strings up to 128 bytes (a sun_path is at most 108).
STRACE_OPTIONS = ("-f", "-q", "-xx", "-y", "-s", "128")
#: Between strace and the command: close the record's descriptor, become the command.
#: (The shell's own redirection syntax takes one digit.)
CLOSER = ("/bin/sh", "-c", 'exec {fd}>&-; exec "$@"', "sh")


def _say(text: str) -> None:
    sys.stderr.write(f"jailpy learn: {text}\n")
    sys.stderr.flush()


def permissive_layer(cwd: str, writable: tuple[str, ...], tracer_dir: str):
    """The profile layer that turns the base into the learn run's permissive variant;
    its mount ops (as MountOps) tell learn() which paths were scratch."""
    from ..profile import learn
    from ..profile.merge import Layer

    mounts = [{"ro-bind": "/"}, {"dev": "/dev"}, {"proc": "/proc"},
              {"tmpfs": "/tmp", "mode": "1777"}, {"tmpfs": "/var/tmp", "mode": "1777"}]
    for path in ((cwd,) if cwd != "/" else ()) + writable:
        mounts.append({"bind": learn.escape(path)})
    mounts.append({"ro-bind": learn.escape(tracer_dir), "dest": TRACER_DIR})
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
        # Checked as the profile it is, so that what read_learned skips or misreads
        # (a string for a list, a mount that is no table) is an error naming the key,
        # not a file rewritten from half of it.
        load_policy(os.path.abspath(merge))
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
    tracer_dir = tempfile.mkdtemp(prefix="jailpy-learn-")
    try:
        learning = load_policy(base, permissive_layer(cwd, writable, tracer_dir))
        _check_base_out_of_reach(base, learning)
        _say(f"learning: {shlex.join(command)} (under strace, in a permissive variant of "
             f"{base})")
        traced, record = _traced_run(learning, strace, tracer_dir, command, cwd)
    finally:
        shutil.rmtree(tracer_dir, ignore_errors=True)
    if not record.lines:
        raise ConfigError(f"strace left no record (exit {traced.exit_code})",
                          origin="jailpy learn", hint="is ptrace allowed here? see docs/learn.md")
    if record.unended:
        raise ConfigError(f"the record is incomplete: strace stopped before {len(record.unended)} "
                          f"of the watched processes ended (was it killed?); no profile written",
                          origin="jailpy learn",
                          hint="the command must not kill its tracer; see docs/learn.md")
    if not record.started:  # the closer said why on stderr (not found, not executable)
        raise CommandError(f"{command[0]}: the command did not start (exit {traced.exit_code});"
                           f" no profile written", exit_code=traced.exit_code
                           if traced.exit_code in (EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND)
                           else EXIT_NOT_FOUND, origin="command")
    seen = record.seen
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
    learned_policy = load_policy(os.path.abspath(target))
    if learn.BaseView(learned_policy.filesystem.ops).source(os.path.realpath(target)) \
            == ("host", True):
        _say(f"warning: {target} is writable under the profile it holds, so the command "
             "could rewrite its own profile: keep it outside the directories it binds")
    checked = Sandbox(learned_policy).run(command, forward_signals=True)
    if _text_of(target) != text:  # the command rewrote its profile: ours goes back
        _write(target, text)
        _say(f"NOT verified: the verifying run changed {target}; written again as learned")
        return 1
    if checked.exit_code == traced.exit_code:
        _say(f"verified: exit {checked.exit_code} under the learned profile, as while learning")
        return 0
    _say(f"NOT verified: exit {checked.exit_code} under the learned profile, "
         f"{traced.exit_code} while learning; run the code paths it missed with --merge")
    return 1


def _check_base_out_of_reach(base: str, learning) -> None:
    """Refuse a base whose files (it and what it extends) the learn run makes
    writable: the command could rewrite them, and the learned profile extends
    them, so the verifying run and every later one would be built from what
    the command wrote (a bind of the home directory, say)."""
    from ..policy import Caller
    from ..profile.expand import standard_variables
    from ..profile.learn import BaseView
    from ..profile.loader import load_layers

    caller = Caller.current()
    view = BaseView(learning.filesystem.ops)
    for layer in load_layers(base, caller.env, standard_variables(caller)):
        if view.source(os.path.realpath(layer.source)) == ("host", True):
            raise ConfigError(
                f"the profile {layer.source} is where the watched command may write while "
                "learning (the working directory or --writable), and the learned profile "
                "would extend it", origin="-p / --profile",
                hint="keep BASE and what it extends outside the directories learn makes writable")


def _traced_run(learning, strace: str, tracer_dir: str, command: list[str], cwd: str):
    """The learn run: (its Result, the TraceReader that read strace's record).

    strace writes into a pipe read here, by a thread, while the sandbox runs
    (strace blocks when the pipe is full; the record never touches a disk)."""
    import fcntl
    import threading

    from ..api import Sandbox
    from ..profile import learn

    tracer = os.path.join(tracer_dir, "strace")
    shutil.copyfile(strace, tracer)
    os.chmod(tracer, 0o111)  # unreadable: execve makes strace non-dumpable
    read_end, pipe_write = os.pipe()
    write_end = fcntl.fcntl(pipe_write, fcntl.F_DUPFD_CLOEXEC, 3)  # the lowest free
    os.close(pipe_write)
    if write_end > 9:
        os.close(read_end)
        os.close(write_end)
        raise ConfigError("too many open descriptors: the record's must be below 10",
                          origin="jailpy learn")
    reader = learn.TraceReader(cwd, wrapped=True)
    failed: list[BaseException] = []

    def drain() -> None:
        with open(read_end, encoding="ascii", errors="replace") as lines:
            for line in lines:
                if not failed:
                    try:
                        reader.feed(line)
                    except Exception as exc:  # keep draining, or strace would block
                        failed.append(exc)

    thread = threading.Thread(target=drain, name="jailpy-learn-record", daemon=True)
    thread.start()
    closer = [part.format(fd=write_end) for part in CLOSER]
    try:
        traced = Sandbox(learning).run(
            [f"{TRACER_DIR}/strace", *STRACE_OPTIONS, "-o", f"/proc/self/fd/{write_end}",
             "--", *closer, *command], forward_signals=True, pass_fds=(write_end,))
    finally:
        os.close(write_end)  # the sandbox is gone: the reader meets the end of the record
        thread.join()
    if failed:
        raise failed[0]
    return traced, reader


def _text_of(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


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
