"""Kept overlay changes: the run directory, the recorded lower state, and commit.

`prepare(plan)` (before the launch) creates the run directory and records
the state of every overlaid host tree at run start (type, mode, size, mtime,
ctime, inode of each entry) in run.json, so a run killed at any moment is
still reviewable and a later commit can tell "the command changed this" from
"someone changed this on the host meanwhile".

Everything in an upper layer was written by the sandbox and is untrusted:
it is read through directory fds without following symlinks, and commit
writes the host through directory fds opened component by component with
O_NOFOLLOW from the recorded root, so no planted link can send a write
outside the committed tree. The rules commit enforces are listed in
docs/overlays.md; each refusal aborts the whole commit before anything is
written.
"""

from __future__ import annotations

import json
import os
import stat

from ..errors import ConfigError, JailpyError
from ..record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

    from ..plan import Plan
    from ..plan.changes import ChangesPlan

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_META = "run.json"
#: user.overlay.opaque = "y": a directory whose lower contents are hidden (userxattr).
_OPAQUE = "user.overlay.opaque"
_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


class ChangesError(JailpyError):
    """`jailpy changes` refused: nothing was written."""


# -- the run directory --------------------------------------------------------------


def _private_dir(path: str, create: bool) -> int:
    """An fd for `path`, a directory only this user can write, never through a symlink."""
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    fd = os.open(path, _DIR_FLAGS)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise ChangesError(f"{path} is not a private directory of this user",
                           origin="changes directory",
                           hint="it must belong to you and not be group/world-writable")
    return fd


def _state_of(st: os.stat_result) -> list[int]:
    return [st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def record_tree(path: str) -> dict[str, list[int]]:
    """rel path -> [mode, size, mtime_ns, ctime_ns, ino] of everything under path
    ("" is the root itself), never following symlinks."""
    found: dict[str, list[int]] = {"": _state_of(os.lstat(path))}
    pending = [("", path)]
    while pending:
        rel, full = pending.pop()
        try:
            entries = list(os.scandir(full))
        except OSError:
            continue  # unreadable for the user: the sandbox cannot read it either
        for entry in entries:
            sub = f"{rel}/{entry.name}" if rel else entry.name
            found[sub] = _state_of(entry.stat(follow_symlinks=False))
            if entry.is_dir(follow_symlinks=False):
                pending.append((sub, entry.path))
    return found


class ChangesSession:
    """The host side of one `--changes` run: the run directory exists, with the
    recorded state, before the sandbox starts; close() says where it is."""

    def __init__(self, spec: "ChangesPlan", argv: tuple[str, ...]) -> None:
        import time

        self.spec = spec
        root_fd = _private_dir(spec.root, create=True)
        try:
            os.mkdir(spec.run_id, 0o700, dir_fd=root_fd)
        finally:
            os.close(root_fd)
        for sub in ("upper", "work"):
            os.mkdir(f"{spec.run_dir}/{sub}", 0o700)
            for i in range(len(spec.paths)):
                os.mkdir(f"{spec.run_dir}/{sub}/{i}", 0o700)
        meta = {"version": 1, "started_ns": time.time_ns(), "argv": list(argv),
                "paths": list(spec.paths),
                "state": [record_tree(path) for path in spec.paths]}
        _write_meta(spec.run_dir, meta)

    def host_step(self, pid: int) -> None:
        """Nothing to do once the sandbox has unshared."""

    def close(self) -> None:
        pass


def prepare(plan: "Plan") -> ChangesSession:
    assert plan.changes is not None
    try:
        return ChangesSession(plan.changes, plan.argv)
    except OSError as exc:
        raise ConfigError(f"cannot create the changes directory {plan.changes.run_dir}: "
                          f"{exc.strerror}", origin="changes.dir / --changes-dir") from exc


def _write_meta(run_dir: str, meta: dict) -> None:
    """run.json, replaced atomically."""
    tmp = f"{run_dir}/.{_META}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, f"{run_dir}/{_META}")


# -- reading a run ------------------------------------------------------------------


class Change(Record):
    """One entry of an upper layer, as the host would see it after commit."""

    path: str           # the host path
    index: int          # which overlaid path (upper/<index>)
    rel: str            # beneath that path
    action: str         # added, modified, deleted, replaced (an opaque directory)
    type: str           # file, dir, symlink, device, fifo, socket
    size: int
    mode: int
    target: str | None = None   # a symlink's target
    #: Why commit refuses or alters this entry ("" when it commits as it is).
    problem: str = ""
    #: For a replaced directory: the host entries beneath it that commit deletes.
    removes: tuple[str, ...] = ()


class Run:
    """One run directory: its recorded state and its upper layers."""

    def __init__(self, root: str, run_id: str) -> None:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ChangesError(f"not a run name: {run_id!r}", origin="jailpy changes",
                               hint="see 'jailpy changes list'")
        self.root, self.id, self.dir = root, run_id, os.path.join(root, run_id)
        try:
            root_fd = _private_dir(root, create=False)
        except FileNotFoundError:
            raise ChangesError(f"no run {run_id}: {root} does not exist",
                               origin="jailpy changes") from None
        try:
            self.fd = os.open(run_id, _DIR_FLAGS, dir_fd=root_fd)
            with open(os.open(_META, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=self.fd), encoding="utf-8") as f:
                self.meta = json.load(f)
        except FileNotFoundError:
            raise ChangesError(f"no run {run_id} in {root}", origin="jailpy changes",
                               hint="see 'jailpy changes list'") from None
        except (OSError, ValueError) as exc:
            raise ChangesError(f"run {run_id} is unreadable: {exc}",
                               origin="jailpy changes") from None
        finally:
            os.close(root_fd)
        self.paths: list[str] = self.meta["paths"]
        self.state: list[dict[str, list[int]]] = self.meta["state"]

    def close(self) -> None:
        os.close(self.fd)

    def upper_fd(self, index: int) -> int:
        return os.open(f"upper/{index}", _DIR_FLAGS, dir_fd=self.fd)

    def changes(self) -> list[Change]:
        found: list[Change] = []
        for index, base in enumerate(self.paths):
            fd = self.upper_fd(index)
            try:
                found.extend(self._walk(index, base, fd, ""))
            finally:
                os.close(fd)
        return found

    def _walk(self, index: int, base: str, dir_fd: int, rel: str) -> "Iterator[Change]":
        recorded = self.state[index]
        for name in sorted(os.listdir(dir_fd)):
            sub = f"{rel}/{name}" if rel else name
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            host = f"{base}/{sub}"
            was = sub in recorded
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout
                if was:
                    old = recorded[sub]
                    yield Change(host, index, sub, "deleted", _type_name(old[0]), old[1],
                                 old[0] & 0o7777)
                continue
            kind = _type_name(st.st_mode)
            problem, target = _problem(st, sub, dir_fd, name)
            if stat.S_ISDIR(st.st_mode):
                sub_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    opaque = _is_opaque(sub_fd)
                    if opaque and was:
                        kept = set(os.listdir(sub_fd))
                        gone = tuple(sorted(p for p in recorded if p.startswith(sub + "/")
                                            and p[len(sub) + 1:].split("/")[0] not in kept))
                        yield Change(host, index, sub, "replaced", kind, 0,
                                     st.st_mode & 0o7777, removes=gone)
                    elif not was or not stat.S_ISDIR(recorded[sub][0]):
                        yield Change(host, index, sub, "added" if not was else "modified",
                                     kind, 0, st.st_mode & 0o7777)
                    elif recorded[sub][0] & 0o7777 != st.st_mode & 0o7777:
                        yield Change(host, index, sub, "modified", kind, 0,
                                     st.st_mode & 0o7777)
                    yield from self._walk(index, base, sub_fd, sub)
                finally:
                    os.close(sub_fd)
                continue
            yield Change(host, index, sub, "modified" if was else "added", kind, st.st_size,
                         st.st_mode & 0o7777, target=target, problem=problem)


def _type_name(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return _TYPES.get(stat.S_IFMT(mode), "other")


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, _OPAQUE) == b"y"
    except OSError:
        return False


def _problem(st: os.stat_result, rel: str, dir_fd: int, name: str) -> tuple[str, str | None]:
    """(why commit refuses or alters this entry, a symlink's target)."""
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=dir_fd)
        parent = os.path.dirname(rel)
        resolved = os.path.normpath(os.path.join(parent, target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"symlink pointing outside the tree ({target}): never committed", target
        return "", target
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return f"{_type_name(st.st_mode)}: never committed", None
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        return "setuid/setgid bits dropped at commit", None
    return "", None


def refuses(change: Change) -> bool:
    """Whether commit refuses this change outright (vs. committing it altered)."""
    return change.problem.endswith("never committed")


# -- the store ------------------------------------------------------------------------


def list_runs(root: str) -> list[Run]:
    """The runs under root, oldest first; unreadable entries are skipped."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    runs = []
    for name in names:
        if name.startswith("."):
            continue
        try:
            runs.append(Run(root, name))
        except ChangesError:
            continue
    return runs


def latest(root: str) -> str:
    runs = list_runs(root)
    if not runs:
        raise ChangesError(f"no runs in {root}", origin="jailpy changes",
                           hint="run a command with 'jailpy run --changes -- CMD' first")
    name = max(runs, key=lambda run: run.meta.get("started_ns", 0)).id
    for run in runs:
        run.close()
    return name


def discard(run: Run) -> None:
    """Remove the run directory (its layers and record)."""
    root_fd = _private_dir(run.root, create=False)
    try:
        _remove_tree(root_fd, run.id)
    finally:
        os.close(root_fd)


def _remove_tree(dir_fd: int, name: str) -> None:
    """rm -r name in dir_fd, never following symlinks; overlayfs' work dir may hold
    directories the user cannot list until they are made writable."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=dir_fd, follow_symlinks=False)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        if not st.st_mode & stat.S_IWUSR:
            os.fchmod(fd, 0o700)
        for entry in os.listdir(fd):
            _remove_tree(fd, entry)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


# -- commit ---------------------------------------------------------------------------


def select(changes: list[Change], chosen: list[str]) -> list[Change]:
    """The changes at or beneath each chosen path (absolute, or relative to the cwd);
    all of them when none is chosen. An unknown path is an error."""
    if not chosen:
        return changes
    picked: dict[str, Change] = {}
    for path in chosen:
        full = os.path.normpath(os.path.abspath(path))
        hits = [c for c in changes if c.path == full or c.path.startswith(full + "/")]
        if not hits:
            raise ChangesError(f"no change at {full}", origin=path,
                               hint="see 'jailpy changes show'")
        picked.update((c.path, c) for c in hits)
    return [c for c in changes if c.path in picked]


class _Host:
    """The host side of one overlaid path, walked without following symlinks."""

    def __init__(self, base: str, recorded: dict[str, list[int]]) -> None:
        self.base, self.recorded = base, recorded
        self.fd = os.open(base, _DIR_FLAGS)
        st = os.fstat(self.fd)
        if st.st_ino != recorded[""][4]:
            os.close(self.fd)
            raise ChangesError(f"{base} is no longer the directory the run overlaid",
                               origin="jailpy changes commit")

    def parent(self, rel: str, create: bool = False) -> int:
        """An fd for rel's parent directory, each component opened with O_NOFOLLOW
        (a symlink anywhere on the way is an error, never followed)."""
        fd = os.dup(self.fd)
        for part in rel.split("/")[:-1]:
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                raise
            os.close(fd)
            fd = nxt
        return fd

    def lstat(self, rel: str) -> os.stat_result | None:
        try:
            fd = self.parent(rel)
        except FileNotFoundError:
            return None
        try:
            return os.stat(rel.rsplit("/", 1)[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def conflict(self, rel: str) -> str:
        """Why rel's host side is not as the run found it ("" when it is)."""
        try:
            now = self.lstat(rel)
        except OSError as exc:  # ELOOP/ENOTDIR: a symlink or file where a directory was
            return f"its parent on the host is no longer a directory ({exc.strerror})"
        was = self.recorded.get(rel)
        if was is None:
            return "" if now is None else "created on the host since the run started"
        if now is None:
            return "deleted on the host since the run started"
        if stat.S_ISDIR(was[0]) and stat.S_ISDIR(now.st_mode):
            return ""  # what matters beneath a directory is checked entry by entry
        if _state_of(now) != was:
            return "changed on the host since the run started"
        return ""

    def close(self) -> None:
        os.close(self.fd)


def _conflicts(host: _Host, change: Change) -> list[str]:
    rels = [change.rel]
    if change.action == "deleted" and change.type == "dir" or change.action == "replaced":
        prefix = change.rel + "/"
        rels += [p for p in host.recorded if p.startswith(prefix)]
        rels += [p for p in _host_entries(host, change.rel) if p not in host.recorded]
    return [f"{host.base}/{rel}: {why}" for rel in rels if (why := host.conflict(rel))]


def _host_entries(host: _Host, rel: str) -> list[str]:
    """Everything beneath the host directory rel now (to spot files created there)."""
    st = host.lstat(rel)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return []
    try:
        return [rel + "/" + sub for sub in record_tree(f"{host.base}/{rel}") if sub]
    except OSError:
        return []


def commit(run: Run, chosen: list[str]) -> list[Change]:
    """Apply the chosen changes to the host, all or nothing as far as checking goes:
    every refusal and conflict is found before the first write."""
    picked = select(run.changes(), chosen)
    refused = [f"{c.path}: {c.problem}" for c in picked if refuses(c)]
    hosts = {i: _Host(path, run.state[i]) for i, path in enumerate(run.paths)
             if any(c.index == i for c in picked)}
    try:
        conflicts = [line for c in picked for line in _conflicts(hosts[c.index], c)]
        if refused or conflicts:
            lines = refused + conflicts
            raise ChangesError(
                "nothing committed: " + "; ".join(lines[:5])
                + (f" (and {len(lines) - 5} more)" if len(lines) > 5 else ""),
                origin=f"run {run.id}",
                hint="commit the other paths by name, or discard the run")
        for change in picked:
            _apply(run, hosts[change.index], change)
        _forget(run, picked, hosts)
    finally:
        for host in hosts.values():
            host.close()
    return picked


def _apply(run: Run, host: _Host, change: Change) -> None:
    name = change.rel.rsplit("/", 1)[-1]
    parent = host.parent(change.rel, create=True)
    try:
        if change.action == "deleted":
            _remove_tree(parent, name)
        elif change.type == "dir":
            if change.action == "replaced":
                for rel in change.removes:
                    if "/" not in rel[len(change.rel) + 1:]:
                        _remove_tree(parent, f"{name}/{rel[len(change.rel) + 1:]}")
            st = host.lstat(change.rel)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=parent)
                st = None
            if st is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            os.chmod(name, change.mode & 0o777, dir_fd=parent, follow_symlinks=False)
        else:
            _replace(run, change, parent, name)
    finally:
        os.close(parent)


def _replace(run: Run, change: Change, parent: int, name: str) -> None:
    """Write a file or symlink to a temporary name in its host directory, then
    rename it over the old one: the host path holds the old or the new entry,
    never a half-written one."""
    tmp = f".{name}.jailpy-commit-{os.getpid()}"
    upper = os.open(f"upper/{change.index}/{change.rel}", os.O_RDONLY | os.O_NOFOLLOW
                    | os.O_CLOEXEC | (os.O_PATH if change.type == "symlink" else 0),
                    dir_fd=run.fd)
    try:
        if change.type == "symlink":
            assert change.target is not None
            os.symlink(change.target, tmp, dir_fd=parent)
        else:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=parent)
            try:
                while os.sendfile(out, upper, None, 1 << 20):
                    pass
                os.fchmod(out, change.mode & 0o777)  # never setuid, setgid or sticky
                os.fsync(out)
            finally:
                os.close(out)
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            _remove_tree(parent, name)
        os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=parent)
        except OSError:
            pass
        raise
    finally:
        os.close(upper)


def _forget(run: Run, done: list[Change], hosts: dict[int, _Host]) -> None:
    """Drop committed entries from the upper layers and record their new host state,
    so the run lists only what is left and a later commit checks against now."""
    for change in sorted(done, key=lambda c: c.rel.count("/"), reverse=True):
        upper = f"upper/{change.index}/{change.rel}"
        if change.type == "dir" and change.action != "deleted":
            fd = os.open(upper, _DIR_FLAGS, dir_fd=run.fd)
            try:
                if change.action == "replaced":
                    os.removexattr(fd, _OPAQUE)
                empty = not os.listdir(fd)
            finally:
                os.close(fd)
            if empty:
                os.rmdir(upper, dir_fd=run.fd)
        else:
            _remove_tree(run.fd, upper)
        host, recorded = hosts[change.index], run.state[change.index]
        for rel in [change.rel, *change.removes]:
            recorded.pop(rel, None)
            for sub in [p for p in recorded if p.startswith(rel + "/")]:
                del recorded[sub]
        parts = change.rel.split("/")
        for rel in ("/".join(parts[:n]) for n in range(1, len(parts) + 1)):
            st = host.lstat(rel)  # the entry, and the parents commit may have created
            if st is not None:
                recorded[rel] = _state_of(st)
    _write_meta(run.dir, run.meta)
