"""Command line: parse, call the API, render errors. Nothing else lives here.

`jailpy run` options become one more profile layer on top of the chosen
profile (same merge rules as `extends`), so a flag and a profile key always
mean the same thing. Filesystem options keep their command-line order, as in
bubblewrap: `--size`/`--perms` modify the next op.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from .errors import EXIT_JAILPY_FAILURE, ConfigError, JailpyError

#: Filesystem options: name -> (op kind, number of arguments, -try form).
_FS_OPTIONS: dict[str, tuple[str, int, bool]] = {
    "bind": ("bind", 2, False), "bind_try": ("bind", 2, True),
    "ro_bind": ("ro-bind", 2, False), "ro_bind_try": ("ro-bind", 2, True),
    "dev_bind": ("dev-bind", 2, False), "dev_bind_try": ("dev-bind", 2, True),
    "tmpfs": ("tmpfs", 1, False), "proc": ("proc", 1, False), "dev": ("dev", 1, False),
    "mqueue": ("mqueue", 1, False), "symlink": ("symlink", 2, False), "dir": ("dir", 1, False),
    "file": ("file", 2, False), "remount_ro": ("remount-ro", 1, False),
    "chmod": ("chmod", 2, False),
}
_MODIFIERS = ("size", "perms")
_NAMESPACES = ("user", "mount", "pid", "ipc", "uts", "net", "cgroup")


class _OrderedCommand(click.Command):
    """Records the order in which options appeared, for ordered mount ops."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        parser = self.make_parser(ctx)
        _, _, order = parser.parse_args(args=list(args))
        ctx.meta["jailpy.order"] = [p.name for p in order]
        return super().parse_args(ctx, args)


def _fail(err: JailpyError, debug: bool = False) -> NoReturn:
    if debug:
        import traceback

        traceback.print_exc()
    line = f"jailpy: {err}"
    if err.hint:
        line += f"\n  hint: {err.hint}"
    click.echo(line, err=True)
    sys.exit(err.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jailpy", prog_name="jailpy")
def main() -> None:
    """jailpy: run commands in a rootless Linux sandbox built from a TOML profile."""


def _fs_option(name: str, nargs: int, help_text: str):
    flag = "--" + name.replace("_", "-")
    return click.option(flag, name, nargs=nargs, multiple=True, help=help_text,
                        metavar=" ".join(["SRC", "DEST"][:nargs]) if nargs == 2 else "DEST")


def _run_options(func):
    helps = {
        "bind": "Bind SRC to DEST read-write.", "bind_try": "Like --bind; skipped if SRC is missing.",
        "ro_bind": "Bind SRC to DEST read-only (submounts too).",
        "ro_bind_try": "Like --ro-bind; skipped if SRC is missing.",
        "dev_bind": "Bind SRC to DEST allowing device access.",
        "dev_bind_try": "Like --dev-bind; skipped if SRC is missing.",
        "tmpfs": "Mount a tmpfs on DEST (see --size, --perms).",
        "proc": "Mount a fresh procfs on DEST.", "dev": "Mount a minimal /dev on DEST.",
        "mqueue": "Mount a POSIX message queue fs on DEST.",
        "symlink": "Create a symlink DEST pointing to SRC (the link target).",
        "dir": "Create directory DEST (see --perms).",
        "file": "Create file DEST with the text SRC (see --perms).",
        "remount_ro": "Make the mount tree at DEST read-only.",
        "chmod": "Set the mode of DEST: --chmod OCTAL DEST.",
    }
    for name, (_, nargs, _) in reversed(_FS_OPTIONS.items()):
        func = _fs_option(name, nargs, helps[name])(func)
    func = click.option("--size", "size", multiple=True, metavar="SIZE",
                        help="Size of the next --tmpfs (e.g. 64M).")(func)
    func = click.option("--perms", "perms", multiple=True, metavar="OCTAL",
                        help="Mode of the next --tmpfs/--dir/--file.")(func)
    for ns in reversed(_NAMESPACES):
        func = click.option(f"--share-{ns}", f"share_{ns}", is_flag=True, default=False,
                            help=f"Share the host's {ns} namespace.")(func)
    return func


@main.command("run", cls=_OrderedCommand,
              context_settings={"allow_interspersed_args": False})
@click.option("-p", "--profile", metavar="NAME|FILE",
              help="Profile name or path to a .toml file (default: default).")
@_run_options
@click.option("--uid", type=int, metavar="N", help="User id inside the sandbox.")
@click.option("--gid", type=int, metavar="N", help="Group id inside the sandbox.")
@click.option("--map-all", is_flag=True, default=None,
              help="Map the whole subordinate id range (needs newuidmap and /etc/subuid).")
@click.option("--hostname", metavar="NAME", help="Hostname inside the sandbox.")
@click.option("--chdir", "cwd", metavar="DIR", help="Working directory inside.")
@click.option("--argv0", metavar="NAME", help="argv[0] for the command.")
@click.option("--setenv", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Set an environment variable.")
@click.option("--unsetenv", multiple=True, metavar="NAME", help="Unset an environment variable.")
@click.option("--keep-env", multiple=True, metavar="NAME|GLOB",
              help="Keep a variable (or glob) from the caller's environment.")
@click.option("--clearenv/--inherit-env", "clear_env", default=None,
              help="Start from an empty environment, or from the caller's.")
@click.option("--new-session/--no-new-session", default=None,
              help="Run in a new session (default); opt out for job control.")
@click.option("--die-with-parent/--no-die-with-parent", default=None,
              help="Kill the sandbox when jailpy dies (default on).")
@click.option("--pass-fd", "pass_fds", type=int, multiple=True, metavar="N",
              help="Keep file descriptor N open in the sandbox.")
@click.option("--net", "net_mode", metavar="MODE", help="Network: none, host.")
@click.option("--explain", is_flag=True, help="Print the resolved plan and run nothing.")
@click.option("--debug", is_flag=True, help="Show tracebacks for jailpy's own errors.")
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
@click.pass_context
def run_cmd(ctx: click.Context, profile: str | None, command: tuple[str, ...], debug: bool,
            explain: bool, pass_fds: tuple[int, ...], **opts: Any) -> None:
    """Run CMD in a sandbox."""
    try:
        from .api import Sandbox, load_policy

        overrides = _overrides_layer(ctx.meta["jailpy.order"], opts)
        policy = load_policy(profile, overrides)
        if explain:
            from .explain import explain as render

            click.echo(render(Sandbox(policy).plan(list(command))), nl=False)
            return
        result = Sandbox(policy).run(list(command), forward_signals=True, pass_fds=pass_fds)
    except JailpyError as err:
        _fail(err, debug)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug in jailpy: say so in one line, details with --debug
        _fail(JailpyError(f"internal error: {exc!r}", hint="run with --debug and report this"),
              debug)
    sys.exit(result.exit_code)


@main.command("check")
def check_cmd() -> None:
    """Report what this machine supports, with a fix for each missing piece."""
    from .diagnostics import collect

    rows = collect()
    for row in rows:
        mark = "ok  " if row.ok else "MISSING"
        click.echo(f"{mark:<8} {row.area:<10} {row.name}: {row.detail}")
        if row.hint and not row.ok:
            click.echo(f"{'':<8} {'':<10} fix: {row.hint}")


def _overrides_layer(order: list[str], opts: dict[str, Any]):
    """CLI options -> a profile layer, with each mount op's origin the flag itself."""
    from .profile.loader import Layer
    from .profile.schema import validate_document

    mounts, origins = _ordered_mounts(order, opts)
    doc: dict[str, Any] = {
        "namespaces": {ns: False for ns in _NAMESPACES if opts[f"share_{ns}"]},
        "identity": _present({"uid": opts["uid"], "gid": opts["gid"], "map_all": opts["map_all"]}),
        "filesystem": {"mounts": mounts} if mounts else {},
        "environment": _present({
            "clear": opts["clear_env"], "keep": list(opts["keep_env"]) or None,
            "set": dict(opts["setenv"]) or None, "unset": list(opts["unsetenv"]) or None}),
        "process": _present({"hostname": opts["hostname"], "cwd": opts["cwd"],
                             "argv0": opts["argv0"], "new_session": opts["new_session"],
                             "die_with_parent": opts["die_with_parent"]}),
        "network": _present({"mode": opts["net_mode"]}),
    }
    doc = {k: v for k, v in doc.items() if v}
    validate_document(doc, "command line")
    item_origins = {"filesystem.mounts": origins}
    for key in ("uid", "gid", "map_all"):
        item_origins[f"identity.{key}"] = [f"--{key.replace('_', '-')}"]
    item_origins["network.mode"] = ["--net"]
    return Layer(doc, "command line", item_origins)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _ordered_mounts(order: list[str], opts: dict[str, Any]) -> tuple[list[dict], list[str]]:
    cursors = {name: 0 for name in (*_FS_OPTIONS, *_MODIFIERS)}
    mounts: list[dict] = []
    origins: list[str] = []
    pending: dict[str, str] = {}
    for name in order:
        if name not in cursors:
            continue
        value = opts[name][cursors[name]]
        cursors[name] += 1
        if name in _MODIFIERS:
            pending["size" if name == "size" else "mode"] = value
            continue
        kind, nargs, is_try = _FS_OPTIONS[name]
        args = (value,) if nargs == 1 else tuple(value)
        origin = f"--{name.replace('_', '-')} {' '.join(args)}"
        entry = _mount_entry(kind, is_try, args, origin)
        for key, modifier in pending.items():
            entry[key] = modifier
        pending = {}
        mounts.append(entry)
        origins.append(origin)
    if pending:
        raise ConfigError("--size/--perms must be followed by the op they modify",
                          origin=f"--{'size' if 'size' in pending else 'perms'}")
    return mounts, origins


def _mount_entry(kind: str, is_try: bool, args: tuple[str, ...], origin: str) -> dict[str, Any]:
    key = kind + "-try" if is_try else kind
    if kind in ("bind", "ro-bind", "dev-bind", "symlink"):
        return {key: args[0], "dest": args[1]}
    if kind == "file":
        return {"file": args[1], "content": args[0]}
    if kind == "chmod":
        return {"chmod": args[1], "mode": args[0]}
    return {key: args[0]}


if __name__ == "__main__":  # pragma: no cover
    main()
