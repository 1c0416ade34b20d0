"""`jailpy run --explain`: the resolved plan as text, and nothing run.

Each feature area contributes a section renderer; the plan is printed in
the order the runtime applies it, so what a user reads is what will happen.
"""

from __future__ import annotations


from ..plan import Plan
from ..policy import BIND_KINDS, MountOp

Section = tuple[str, list[str]]


def short_origin(origin: str) -> str:
    """An origin for display: the shipped profiles' directory and $HOME abbreviated."""
    import os

    from ..profile.loader import shipped_profiles_dir

    shipped = f"{shipped_profiles_dir()}/"
    if origin.startswith(shipped):
        return "(shipped) " + origin[len(shipped):]
    home = os.environ.get("HOME")
    if home and home != "/" and origin.startswith(home.rstrip("/") + "/"):
        return "~" + origin[len(home.rstrip("/")):]
    return origin


def human_size(size: int) -> str:
    """64M rather than 67108864, when the size is a whole number of units."""
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def describe_op(op: MountOp) -> str:
    if op.kind in BIND_KINDS:
        text = f"{op.kind:<10} {op.source} -> {op.dest}"
    elif op.kind == "symlink":
        text = f"{op.kind:<10} {op.dest} -> {op.source}"
    else:
        text = f"{op.kind:<10} {op.dest}"
    extras = []
    if op.size is not None:
        extras.append(f"size={human_size(op.size)}")
    if op.mode is not None:
        extras.append(f"mode={op.mode:04o}")
    if op.lower:
        extras.append(f"lower={':'.join(op.lower)}")
    if op.upper is not None:
        extras.append(f"upper={op.upper}")
    if op.optional:
        extras.append("optional")
    if extras:
        text += f" ({', '.join(extras)})"
    return f"{text}    [{op.origin}]" if op.origin else text


def _shorten(line: str) -> str:
    """Abbreviate the trailing "[origin]" that section lines of every area end with."""
    head, sep, origin = line.rpartition("    [")
    if not sep or not origin.endswith("]"):
        return line
    return f"{head}    [{short_origin(origin[:-1])}]"


def core_sections(plan: Plan) -> list[Section]:
    names = ("user", "mount", "pid", "ipc", "uts", "net", "cgroup")
    namespaces = [f"{n:<7} {'new' if plan.unshares(n) else 'SHARED with the host'}"
                  for n in names]
    identity = [f"uid {plan.uid_inside} inside <- {plan.uid_outside} outside",
                f"gid {plan.gid_inside} inside <- {plan.gid_outside} outside",
                "setgroups denied" if not plan.map_all else
                "full subordinate range mapped with newuidmap/newgidmap"]
    mounts = [describe_op(op) for op in plan.mount_ops]
    mounts.append(f"root       read-{'only' if plan.root_readonly else 'write'}")
    env = [f"{k}={v}" for k, v in sorted(plan.env.items())]
    process = [f"command     {' '.join(plan.argv)}",
               f"hostname    {plan.hostname or '(host)'}",
               f"cwd         {plan.cwd or '/'}"
               + ("" if plan.cwd_identity is None else " (if visible inside, else /)"),
               f"new session {'yes' if plan.new_session else 'no'}",
               f"terminal    {'a pseudo-terminal of its own' if plan.tty else 'none'}",
               f"die with parent {'yes' if plan.die_with_parent else 'no'}",
               f"runs until  {'the last process exits' if plan.wait_all else 'the command exits'}",
               f"capabilities kept: {', '.join(plan.keep_caps) or 'none'}"]
    return [("namespaces", namespaces), ("identity", identity), ("filesystem", mounts),
            ("environment", env), ("process", process)]


def feature_sections(plan: Plan) -> list[Section]:
    """Each feature's own section (report/<feature>.py), in display order."""
    from . import features

    out: list[Section] = []
    for feature in features():
        out.extend(feature.explain_sections(plan))
    return out


#: Words --explain highlights on a terminal.
ALARMS = ("SHARED with the host", "MISSING", "SHARES THE HOST'S NETWORK NAMESPACE")


#: Words with which a section above says a piece of the plan cannot apply.
UNAPPLIABLE = ("UNAVAILABLE", "PROBLEM")


def machine_section(plan: Plan, above: list[Section] = ()) -> list[Section]:
    """What this plan needs that `jailpy check` reports missing on this machine, and
    what the sections above already found unappliable (so the two never disagree).
    It cannot promise the rest: a mount can still fail when run (a mount point in a
    read-only directory), and says so then."""
    from .check import collect

    missing = [row for row in collect() if not row.ok and row.needed_by(plan)]
    lines = []
    for row in missing:
        lines.append(f"MISSING {row.area}: {row.name}: {row.detail}")
        if row.hint:
            lines.append(f"  fix: {row.hint}")
    for title, body in above:
        lines += [f"{title}: {line.strip()}" for line in body
                  if any(word in line for word in UNAPPLIABLE)]
    return [("cannot apply on this machine",
             lines or ["nothing found missing (what 'jailpy check' tests); "
                       "the mounts are tried when the sandbox is built"])]


def blocks(plan: Plan) -> list[Section]:
    """Every section, in display order, ending with what this machine lacks."""
    out: list[Section] = []
    for provider in (core_sections, feature_sections):
        out.extend((title, [_shorten(line) for line in body]) for title, body in provider(plan))
    out.extend(machine_section(plan, out))
    return out


def title(plan: Plan) -> str:
    return f"profile: {plan.profile}"
