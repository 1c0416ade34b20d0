"""One cgroup per sandbox, under a parent the caller may write to.

Both cgroup versions are driven through the same steps:

    find    which hierarchy has each controller (v2 if the unified hierarchy
            offers it, else a v1 hierarchy) and a delegated parent in it
    create  mkdir <parent>/jailpy-<pid>-<n> in every hierarchy used, write the
            limits, and open each cgroup.procs for the namespace child
    join    the namespace child writes "0" (itself) to those fds right after
            fork, before unshare: pid 1 and the target are born inside, and the
            new cgroup namespace is rooted at the sandbox's cgroup
    finish  read peak memory and limit events, kill anything left, rmdir

Delegation differs between versions, and `jailpy check` explains both:

- v1: a directory per controller owned by the user (by default
  /<controller-mount>/jailpy/<user>); a process may move any process of its
  own uid into a cgroup whose cgroup.procs it can write.
- v2: the kernel only lets a process move another between cgroups when it can
  write cgroup.procs of their common ancestor, so the parent must contain the
  caller's own cgroup: a systemd scope with Delegate=yes, or a chowned subtree
  the caller was started in. A v2 cgroup with controllers enabled for its
  children may hold no processes, so when the parent is the caller's own
  cgroup jailpy first moves itself into a leaf `jailpy-supervisor` below it.

The parent is `limits.cgroup_parent`, else $JAILPY_CGROUP_PARENT, else found:
/jailpy/<user>, then (v2) the caller's own cgroup when the caller owns it.
"""

from __future__ import annotations

import errno
import itertools
import os
import pwd
import _signal as signal  # the C module: `signal` would import enum (ms at start-up)
import time

from ..errors import SetupError, UnsupportedError
from ..policy import Limits
from ..record import Record

#: Controllers jailpy uses, and the limits keys that need each.
CONTROLLER_KEYS = {"memory": ("memory_max", "memory_swap_max"), "pids": ("pids_max",),
                   "cpu": ("cpus",)}
SUPERVISOR_LEAF = "jailpy-supervisor"
_sequence = itertools.count(1)


class Hierarchy(Record):
    """One mounted cgroup hierarchy."""

    version: int
    mount: str
    root: str
    controllers: frozenset[str]

    def directory(self, cgroup_path: str) -> str:
        """The directory of a cgroup path as /proc/self/cgroup shows it."""
        rel = cgroup_path
        if self.root != "/" and (rel == self.root or rel.startswith(self.root + "/")):
            rel = rel[len(self.root):]
        return os.path.join(self.mount, rel.lstrip("/"))

    @property
    def label(self) -> str:
        return "v2" if self.version == 2 else f"v1 {','.join(sorted(self.controllers))}"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def hierarchies(mountinfo: str = "/proc/self/mountinfo") -> list[Hierarchy]:
    """Mounted cgroup hierarchies, first mount of each."""
    found: list[Hierarchy] = []
    seen: set[str] = set()
    for line in (_read(mountinfo) or "").splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        device, root, mount = fields[2], fields[3].replace("\\040", " "), fields[4]
        if device in seen:
            continue
        seen.add(device)
        if tail[0] == "cgroup2":
            ctrls = frozenset((_read(os.path.join(mount, "cgroup.controllers")) or "").split())
            found.append(Hierarchy(2, mount, root, ctrls))
        else:
            opts = set(tail[2].split(",")) & {"memory", "pids", "cpu", "cpuacct"}
            found.append(Hierarchy(1, mount, root, frozenset(opts)))
    return found


def own_cgroups(path: str = "/proc/self/cgroup") -> dict[str, str]:
    """Controller -> cgroup path of this process ("" is the v2 hierarchy)."""
    result: dict[str, str] = {}
    for line in (_read(path) or "").splitlines():
        _, ctrls, cgpath = line.split(":", 2)
        for ctrl in (ctrls.split(",") if ctrls else [""]):
            result[ctrl] = cgpath
    return result


def choose_hierarchies(controllers: tuple[str, ...],
                       found: list[Hierarchy]) -> tuple[dict[str, Hierarchy], list[str]]:
    """Controller -> hierarchy (v2 preferred), and the controllers nowhere available."""
    chosen: dict[str, Hierarchy] = {}
    missing = []
    for ctrl in controllers:
        v2 = [h for h in found if h.version == 2 and ctrl in h.controllers]
        v1 = [h for h in found if h.version == 1 and ctrl in h.controllers]
        if v2 or v1:
            chosen[ctrl] = (v2 or v1)[0]
        else:
            missing.append(ctrl)
    return chosen, missing


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _writable(directory: str) -> bool:
    return (os.path.isdir(directory) and os.access(directory, os.W_OK)
            and os.access(os.path.join(directory, "cgroup.procs"), os.W_OK))


def _inside(parent: str, child: str) -> bool:
    return parent == "/" or child == parent or child.startswith(parent.rstrip("/") + "/")


def configured_parent(limits: Limits | None) -> tuple[str | None, str]:
    """The configured parent cgroup path and where it was configured."""
    if limits is not None and limits.cgroup_parent:
        return limits.cgroup_parent, limits.origin_of("cgroup_parent")
    env = os.environ.get("JAILPY_CGROUP_PARENT")
    return (env, "JAILPY_CGROUP_PARENT") if env else (None, "")


class Parent(Record):
    """A usable parent in one hierarchy: its cgroup path and directory."""

    hierarchy: Hierarchy
    path: str
    directory: str


class NoParent(Exception):
    """No delegated parent in a hierarchy; the message says why."""


def find_parent(h: Hierarchy, configured: str | None, own: dict[str, str]) -> Parent:
    """The parent cgroup in hierarchy `h`, or NoParent explaining what is missing."""
    default = f"/jailpy/{_user()}"
    if h.version == 1:
        path = configured or default
        directory = h.directory(path)
        if not _writable(directory):
            raise NoParent(f"{directory} is missing or not writable by uid {os.getuid()}")
        return Parent(h, path, directory)
    mine = own.get("", "/")
    if os.path.basename(mine) == SUPERVISOR_LEAF:
        mine = os.path.dirname(mine)
    candidates = [configured] if configured else [default, mine]
    reasons = []
    for path in candidates:
        directory = h.directory(path)
        if not _writable(directory):
            reasons.append(f"{directory} is missing or not writable by uid {os.getuid()}")
        elif not _inside(path, own.get("", "/")):
            reasons.append(f"jailpy runs in {own.get('', '/')}, outside {path} (cgroup v2 only "
                           "moves processes inside a subtree the caller owns)")
        else:
            return Parent(h, path, directory)
    raise NoParent("; ".join(reasons))


def delegation_hint(version: int) -> str:
    """How to give the caller a parent it may write to."""
    user = _user()
    if version == 1:
        return (f"as root: for c in memory pids cpu; do mkdir -p /sys/fs/cgroup/$c/jailpy/{user}"
                f" && chown -R {user} /sys/fs/cgroup/$c/jailpy/{user}; done "
                "(or set JAILPY_CGROUP_PARENT to a cgroup path you own)")
    return ("run jailpy in a delegated scope: systemd-run --user --scope -p Delegate=yes "
            "jailpy run ...; or, as root, create and chown /sys/fs/cgroup/jailpy/"
            f"{user} with +memory +pids +cpu in the cgroup.subtree_control of / and /jailpy, "
            "and start the caller inside it (see docs/limits.md)")


def _write(directory: str, name: str, value: str) -> None:
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _enable_controllers(parent: Parent, controllers: list[str], own: dict[str, str]) -> None:
    """v2: make `controllers` available to the parent's children."""
    enabled = set((_read(os.path.join(parent.directory, "cgroup.subtree_control")) or "").split())
    wanted = [c for c in controllers if c not in enabled]
    if not wanted:
        return
    offered = set((_read(os.path.join(parent.directory, "cgroup.controllers")) or "").split())
    lacking = [c for c in wanted if c not in offered]
    if lacking:
        raise NoParent(f"{parent.directory} is not given the {', '.join(lacking)} controller by "
                       "its parent (enable it in the cgroup.subtree_control above)")
    value = " ".join(f"+{c}" for c in wanted)
    try:
        _write(parent.directory, "cgroup.subtree_control", value)
    except OSError as exc:
        if exc.errno != errno.EBUSY or own.get("") != parent.path:
            raise NoParent(f"cannot enable {', '.join(wanted)} in {parent.directory}: "
                           f"{exc.strerror}") from exc
        # Our own cgroup: move ourselves into a leaf so it may have child cgroups.
        leaf = os.path.join(parent.directory, SUPERVISOR_LEAF)
        try:
            os.makedirs(leaf, exist_ok=True)
            _write(leaf, "cgroup.procs", "0")
            _write(parent.directory, "cgroup.subtree_control", value)
        except OSError as exc2:
            raise NoParent(f"{parent.directory} holds other processes besides jailpy, so it "
                           f"cannot have child cgroups ({exc2.strerror}); run jailpy as the "
                           "scope's only process") from exc2


class CgroupStats:
    """What the sandbox's cgroup saw, read just before it is removed."""

    def __init__(self, version: int, peak_memory: int | None = None, oom_kills: int = 0,
                 pids_max_hits: int = 0):
        self.version = version
        self.peak_memory = peak_memory
        self.oom_kills = oom_kills
        self.pids_max_hits = pids_max_hits


class SandboxCgroup:
    """The cgroup(s) of one sandbox: one directory per hierarchy used."""

    def __init__(self, version: int, directories: list[str]):
        self.version = version
        self.directories = directories
        self.join_fds: list[int] = []

    # -- supervisor, before fork --------------------------------------------------

    @classmethod
    def create(cls, limits: Limits) -> tuple["SandboxCgroup | None", list[str]]:
        """Create and configure the sandbox's cgroup, and list the limits left out
        (best-effort only; otherwise a limit that cannot be applied raises
        UnsupportedError). The cgroup is None when nothing could be applied."""
        skipped: list[str] = []
        controllers = list(limits.cgroup_controllers)
        chosen, missing = choose_hierarchies(tuple(controllers), hierarchies())
        for ctrl in missing:
            _refuse(limits, ctrl, f"no cgroup hierarchy offers the {ctrl} controller",
                    "enable it in the kernel/boot configuration", skipped)
        configured, _ = configured_parent(limits)
        own = own_cgroups()
        parents: dict[str, Parent] = {}
        for ctrl, h in chosen.items():
            try:
                parents[ctrl] = find_parent(h, configured, own)
            except NoParent as exc:
                _refuse(limits, ctrl, f"no delegated cgroup parent for {ctrl} ({h.label}): {exc}",
                        delegation_hint(h.version), skipped)
        for h in {p.hierarchy for p in parents.values() if p.hierarchy.version == 2}:
            group = [c for c, p in parents.items() if p.hierarchy == h]
            try:
                _enable_controllers(parents[group[0]], group, own)
            except NoParent as exc:
                for ctrl in group:
                    parents.pop(ctrl)
                    _refuse(limits, ctrl, str(exc), delegation_hint(2), skipped)
        if not parents:
            return None, skipped
        placements: dict[str, tuple[Parent, list[str]]] = {}
        for ctrl, parent in parents.items():
            placements.setdefault(parent.directory, (parent, []))[1].append(ctrl)
        return cls.in_parents(list(placements.values()), limits, skipped), skipped

    @classmethod
    def in_parents(cls, placements: list[tuple[Parent, list[str]]], limits: Limits,
                   skipped: list[str]) -> "SandboxCgroup":
        """mkdir the sandbox's cgroup under each parent, write the limits of the
        controllers placed there, and open cgroup.procs for join()."""
        name = f"jailpy-{os.getpid()}-{next(_sequence)}"
        for parent, _ in placements:
            _sweep(parent.directory)
        cg = cls(max(p.hierarchy.version for p, _ in placements),
                 [os.path.join(p.directory, name) for p, _ in placements])
        try:
            for (parent, ctrls), directory in zip(placements, cg.directories):
                try:
                    os.mkdir(directory, 0o755)
                except OSError as exc:
                    raise SetupError(f"cannot create the sandbox cgroup {directory}: "
                                     f"{exc.strerror}", origin="limits",
                                     hint="check the parent's delegation with 'jailpy check'"
                                     ) from exc
                for ctrl in ctrls:
                    _apply(limits, ctrl, parent.hierarchy.version, directory, skipped)
            cg.join_fds = [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                           for d in cg.directories]
        except BaseException:
            cg.close_join_fds()
            cg.remove()
            raise
        return cg

    def close_join_fds(self) -> None:
        for fd in self.join_fds:
            os.close(fd)
        self.join_fds = []

    # -- namespace child, before unshare ------------------------------------------

    def join(self) -> None:
        """Move the calling process into every sandbox cgroup."""
        join(self.join_fds)
        self.join_fds = []

    # -- supervisor, while the sandbox waits for its request (runtime/pool.py) -------

    def lower(self, limits: Limits) -> None:
        """Write tighter memory/pids limits for one pooled request. The caller
        checked they are within the profile's: this only ever lowers a limit."""
        for d in self.directories:
            version = 2 if os.path.exists(os.path.join(d, "cgroup.controllers")) else 1
            for ctrl, probe in (("memory", ("memory.max", "memory.limit_in_bytes")),
                                ("pids", ("pids.max",))):
                wanted = getattr(limits, CONTROLLER_KEYS[ctrl][0]) is not None
                if wanted and any(os.path.exists(os.path.join(d, f)) for f in probe):
                    _apply(limits, ctrl, version, d, [])

    # -- supervisor, after the sandbox ended --------------------------------------

    def stats(self) -> CgroupStats:
        stats = CgroupStats(self.version)
        for d in self.directories:
            peak = _read(os.path.join(d, "memory.peak")) or \
                _read(os.path.join(d, "memory.max_usage_in_bytes"))
            if peak is not None and peak.strip().isdigit():
                stats.peak_memory = int(peak)
            events = _keyed(os.path.join(d, "memory.events")) or \
                _keyed(os.path.join(d, "memory.oom_control"))
            stats.oom_kills += events.get("oom_kill", 0)
            stats.pids_max_hits += _keyed(os.path.join(d, "pids.events")).get("max", 0)
        return stats

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.directories:
            found.update(int(p) for p in (_read(os.path.join(d, "cgroup.procs")) or "").split())
        return found

    def kill_all(self, exclude: tuple[int, ...] = ()) -> None:
        """SIGKILL every process in the sandbox's cgroups (except `exclude`)."""
        if not exclude and all(_kill_via_kernel(d) for d in self.directories):
            return
        for pid in self.pids() - set(exclude):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, attempts: int = 200) -> None:
        """rmdir every sandbox cgroup, killing leftovers (bounded: ~2 s)."""
        for d in self.directories:
            for _ in range(attempts):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    self.kill_all()
                    time.sleep(0.01)


def _sweep(parent: str) -> None:
    """Remove empty sandbox cgroups left by a jailpy that was killed (SIGKILL leaves
    no chance to clean up); a cgroup still in use cannot be removed, so this is safe."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "jailpy" and parts[1].isdigit() \
                and not os.path.exists(f"/proc/{parts[1]}"):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


def _kill_via_kernel(directory: str) -> bool:
    """v2 cgroup.kill (Linux 5.14): kills the whole subtree without racing forks."""
    try:
        _write(directory, "cgroup.kill", "1")
        return True
    except OSError:
        return False


def _keyed(path: str) -> dict[str, int]:
    """'key value' lines (memory.events, pids.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _refuse(limits: Limits, ctrl: str, reason: str, hint: str, skipped: list[str]) -> None:
    """A limit that cannot be applied: an error, or a note when best-effort."""
    if limits.best_effort:
        skipped.append(f"{ctrl}: {reason}")
        return
    key = next(k for k in CONTROLLER_KEYS[ctrl] if getattr(limits, k) is not None)
    raise UnsupportedError(f"cannot apply the {ctrl} limit: {reason}",
                           origin=limits.origin_of(key), hint=hint)


def _limit_files(limits: Limits, ctrl: str, version: int) -> list[tuple[str, str, bool]]:
    """(file, value, required) to write for one controller."""
    if ctrl == "pids":
        return [("pids.max", str(limits.pids_max), True)]
    if ctrl == "cpu":
        period = int(limits.cpu_period * 1_000_000)
        quota = max(1000, int((limits.cpus or 0) * period))
        if version == 2:
            return [("cpu.max", f"{quota} {period}", True)]
        return [("cpu.cfs_period_us", str(period), True), ("cpu.cfs_quota_us", str(quota), True)]
    # memory: swap defaults to none, so memory_max is the real ceiling.
    memory = limits.memory_max
    swap = limits.memory_swap_max
    swap_required = swap is not None
    swap = 0 if swap is None else swap
    if version == 2:
        files = [("memory.swap.max", str(swap), swap_required)]
        if memory is not None:
            files.insert(0, ("memory.max", str(memory), True))
        return files
    if memory is None:  # conversion requires memory_max with memory_swap_max
        return []
    return [("memory.limit_in_bytes", str(memory), True),
            ("memory.memsw.limit_in_bytes", str(memory + swap), swap_required)]


def _apply(limits: Limits, ctrl: str, version: int, directory: str, skipped: list[str]) -> None:
    for name, value, required in _limit_files(limits, ctrl, version):
        try:
            _write(directory, name, value)
        except OSError as exc:
            if not required and exc.errno in (errno.ENOENT, errno.EACCES):
                continue  # no swap accounting here: there is no swap to limit either
            _refuse(limits, ctrl, f"cannot write {value} to {os.path.join(directory, name)}: "
                    f"{exc.strerror}", "check the parent's limits and delegation "
                    "(jailpy check)", skipped)


def join(fds: list[int]) -> None:
    """Move the calling process into the cgroups whose cgroup.procs files are open
    at `fds` ("0" means "me"), closing them: a sandbox's first process, before
    it makes its cgroup namespace."""
    for fd in fds:
        os.write(fd, b"0")
        os.close(fd)
