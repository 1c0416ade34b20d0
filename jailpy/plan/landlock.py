"""Landlock policy as data: rules derived from the mount plan, plus explicit ones.

Pure and kernel-independent: access is expressed in four words (read,
write, execute, ioctl) that runtime/landlock.py translates to the rights the
running kernel's ABI has. Derivation follows what each mount op allows, as
its row in policy.MOUNT_TABLE grants it:

    ro-bind            read, execute
    bind, tmpfs        read, write, execute
    dev-bind           read, write, execute, ioctl
    proc, mqueue       read, write            (mounted noexec)
    dev                read, write, ioctl     (/dev/shm also execute)
    dir, file          read (write too when the root stays writable)
    ro-bind-data       read                   (jailpy's generated files)
    the root itself    list directories only (everything when writable)

Without a mount namespace the sandbox sees the host's mounts as they are, and
the derived rule is simply everything beneath /.

A later op on the same destination replaces the earlier one's rule, as the
later mount covers the earlier one. Landlock rights only ever add up along a
path, so a remount-ro below a writable mount narrows nothing here; the
read-only mount itself still refuses the write.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..policy import EXECUTE, IOCTL, MOUNT_TABLE, READ, WRITE, MountOp, Policy
from ..record import Record

#: The root when it is read-only: its directories can be listed, nothing more.
LIST = "list"
_EVERYTHING = frozenset({READ, WRITE, EXECUTE})

#: Minimum Landlock ABI per feature.
ABI_FILESYSTEM, ABI_TCP, ABI_SCOPES = 1, 4, 6


class PathRule(Record):
    path: str
    access: frozenset[str]
    optional: bool
    origin: str


class Requirement(Record):
    feature: str
    abi: int
    origin: str
    #: True when the setting that asked for it is best-effort.
    optional: bool = False


class LandlockRules(Record):
    paths: tuple[PathRule, ...]
    connect_tcp: tuple[int, ...] | None
    bind_tcp: tuple[int, ...] | None
    scope_signals: bool
    scope_abstract_unix: bool
    requirements: tuple[Requirement, ...]
    best_effort: bool


def _from_mounts(ops: tuple[MountOp, ...], root_readonly: bool) -> list[PathRule]:
    writable_root = not root_readonly
    rules: dict[str, PathRule] = {
        "/": PathRule("/", _EVERYTHING if writable_root else frozenset({LIST}), False,
                      "filesystem.root_readonly")}
    # Rule paths by each of their ancestors, so a mount finds what it hides
    # without scanning every rule (linear in the ops, not quadratic).
    beneath: dict[str, set[str]] = {}

    def put(rule: PathRule) -> None:
        rules[rule.path] = rule
        parent = rule.path
        while parent != "/":
            parent = parent.rpartition("/")[0] or "/"
            beneath.setdefault(parent, set()).add(rule.path)

    for op in ops:
        origin = op.origin or f"{op.kind} {op.dest}"
        kind = MOUNT_TABLE[op.kind]
        if kind.mounts:
            # A new mount hides whatever earlier ops put beneath it: their rules
            # would name paths that no longer exist in the sandbox.
            for path in beneath.pop(op.dest, ()):
                rules.pop(path, None)
            if kind.grants:  # a hide grants nothing: jailpy's state stays out of reach
                put(PathRule(op.dest, kind.grants, op.optional, origin))
            if op.kind == "dev":
                put(PathRule(op.dest.rstrip("/") + "/shm", _EVERYTHING, False, origin))
        elif kind.grants:  # created in place: in a writable root, as writable as the root
            access = _EVERYTHING if writable_root else kind.grants
            put(PathRule(op.dest, access, False, origin))
        elif op.kind == "remount-ro" and op.dest in rules:
            old = rules[op.dest]
            rules[op.dest] = PathRule(op.dest, old.access - {WRITE}, old.optional, old.origin)
    return list(rules.values())


def _ports(*lists: tuple[int, ...] | None) -> tuple[int, ...] | None:
    given = [p for p in lists if p is not None]
    if not given:
        return None
    return tuple(sorted({port for ports in given for port in ports}))


#: Why --explain shows Landlock off for a nesting sandbox.
NESTING_OFF = ("off: namespaces.nested = true (a Landlock domain may not mount, so the "
               "sandboxes built inside could not be; the mount namespace, seccomp and "
               "dropped capabilities still bound the tree)")


def derive(policy: Policy, ops: tuple[MountOp, ...] | None = None) -> LandlockRules | None:
    """The Landlock rules a policy asks for (None when Landlock is off).

    `ops` are the plan's mount ops when there is a plan: they include what the
    planner adds to the profile's own (desktop sockets, the workspace).
    """
    spec = policy.landlock
    net = policy.network
    # A process in a Landlock domain may not change mount topology (mount,
    # pivot_root, umount: EPERM), so a tree that builds sandboxes of its own
    # cannot be landlocked: nesting turns Landlock off (docs/security.md).
    turned_off_by = "namespaces.nested" if policy.namespaces.nested else \
        spec.origin_of("enabled") if not spec.enabled else None
    if turned_off_by:
        if net.allow_connect_tcp is not None or net.allow_bind_tcp is not None:
            raise ConfigError("network.allow_connect_tcp/allow_bind_tcp are enforced with "
                              "Landlock, which is turned off", origin=turned_off_by,
                              hint="keep landlock.enabled = true or drop the port lists")
        return None
    if not spec.from_mounts:
        paths: list[PathRule] = []
    elif not policy.namespaces.mount:
        # The host's own mounts are the sandbox's: nothing to derive a narrower view from.
        paths = [PathRule("/", _EVERYTHING | {IOCTL}, False, "namespaces.mount = false")]
    else:
        paths = _from_mounts(policy.filesystem.ops if ops is None else ops,
                             policy.filesystem.root_readonly)
    for key, access in (("read", {READ}), ("write", {READ, WRITE}),
                        ("execute", {READ, EXECUTE})):
        for i, path in enumerate(getattr(spec, key)):
            paths.append(PathRule(path, frozenset(access), False, spec.origin_of(f"{key}[{i}]")))
    connect = _ports(spec.connect_tcp, net.allow_connect_tcp)
    bind = _ports(spec.bind_tcp, net.allow_bind_tcp)
    lax = spec.best_effort
    needs = [Requirement("filesystem rules", ABI_FILESYSTEM, spec.origin_of("enabled"), lax)]
    for key, ports, theirs in (("connect_tcp", spec.connect_tcp, net.allow_connect_tcp),
                               ("bind_tcp", spec.bind_tcp, net.allow_bind_tcp)):
        feature = f"TCP {key.split('_')[0]} ports"
        if ports is not None:
            needs.append(Requirement(feature, ABI_TCP, spec.origin_of(key), lax))
        if theirs is not None:  # asked for by the network settings, with their own leniency
            origin = net.origin_of(f"allow_{key}")
            needs.append(Requirement(feature, ABI_TCP, origin, net.best_effort))
    if spec.scope_signals:
        needs.append(Requirement("signal scoping", ABI_SCOPES, spec.origin_of("scope_signals"),
                                 lax))
    if spec.scope_abstract_unix:
        needs.append(Requirement("abstract unix socket scoping", ABI_SCOPES,
                                 spec.origin_of("scope_abstract_unix"), lax))
    return LandlockRules(tuple(paths), connect, bind, spec.scope_signals,
                         spec.scope_abstract_unix, tuple(needs), spec.best_effort)


def describe(rules: LandlockRules | None, abi: int, why: str = "",
             off_because: str = "") -> list[str]:
    """Lines for --explain: what will be enforced on a kernel with this ABI."""
    if rules is None:
        return [f"landlock    {off_because or 'off'}"]
    fatal = any(need.abi > abi and not need.optional for need in rules.requirements)
    if abi == 0:
        state = "UNAVAILABLE: run fails" if fatal else "NOT APPLIED (best effort)"
        return [f"landlock    {state}: {why}"]
    lines = [f"landlock    ABI {abi}" + (" (best effort)" if rules.best_effort else "")]
    for need in rules.requirements:
        if need.abi > abi:
            verdict = "skipped (best effort)" if need.optional else "UNSUPPORTED: run fails"
            lines.append(f"            {need.feature}: needs ABI {need.abi}, {verdict}")
    for rule in rules.paths:
        access = ",".join(sorted(rule.access))
        lines.append(f"            {rule.path:<20} {access:<26} [{rule.origin}]")
    if rules.connect_tcp is not None:
        lines.append(f"            tcp connect: {list(rules.connect_tcp) or 'none'}")
    if rules.bind_tcp is not None:
        lines.append(f"            tcp bind: {list(rules.bind_tcp) or 'none'}")
    scoped = [name for name, on in (("signals", rules.scope_signals),
                                    ("abstract unix sockets", rules.scope_abstract_unix)) if on]
    if scoped:
        lines.append(f"            scoped: {', '.join(scoped)}")
    return lines
