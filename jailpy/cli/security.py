"""`jailpy profile show --seccomp/--landlock/--export-bpf NAME`.

Kept out of cli.py so that file only needs one registration call
(`attach_profile_commands`); the `jailpy run` options of the privilege layers
are rows in runopts.py. When the CLI already has a `profile show` command,
the three options are added to it and handled here when given, so the two
merge without either knowing the other's internals.
"""

from __future__ import annotations

import sys

import click

from ..errors import JailpyError


@click.group("profile")
def profile_group() -> None:
    """Inspect profiles."""


@profile_group.command("show")
@click.argument("name", metavar="NAME|FILE", default="default")
@click.option("--seccomp", "show_seccomp", is_flag=True,
              help="List the resolved seccomp rules, in evaluation order.")
@click.option("--landlock", "show_landlock", is_flag=True,
              help="List the Landlock rules and what this kernel enforces of them.")
@click.option("--export-bpf", "export_bpf", metavar="FILE",
              help="Write the compiled seccomp filter (raw BPF, as bwrap --seccomp reads).")
def profile_show(name: str, show_seccomp: bool, show_landlock: bool,
                 export_bpf: str | None) -> None:
    """Show what profile NAME resolves to."""
    show_security(name, show_seccomp, show_landlock, export_bpf, everything_by_default=True)


_OUR_OPTIONS = ("show_seccomp", "show_landlock", "export_bpf")


def attach_profile_commands(main: click.Group) -> None:
    """Add `profile show` with our options, or our options to an existing one."""
    group = main.commands.get("profile")
    if not isinstance(group, click.Group):
        main.add_command(profile_group)
        return
    show = group.commands.get("show")
    if show is None:
        group.add_command(profile_show)
        return
    names = {p.name for p in show.params}
    show.params.extend(p for p in profile_show.params
                       if isinstance(p, click.Option) and p.name not in names)
    argument = next((p.name for p in show.params if isinstance(p, click.Argument)), None)
    original = show.callback

    def callback(**kwargs):
        ours = {key: kwargs.pop(key, None) for key in _OUR_OPTIONS}
        if not any(ours.values()):
            return original(**kwargs)
        name = kwargs.get(argument) if argument else None
        show_security(name or "default", bool(ours["show_seccomp"]),
                      bool(ours["show_landlock"]), ours["export_bpf"])

    show.callback = callback


def show_security(name: str, show_seccomp: bool, show_landlock: bool, export_bpf: str | None,
                  everything_by_default: bool = False) -> None:
    try:
        from ..api import load_policy

        policy = load_policy(name)
        if export_bpf:
            _export(policy, export_bpf)
        everything = everything_by_default and not (show_seccomp or show_landlock or export_bpf)
        if show_seccomp or everything:
            click.echo("\n".join(seccomp_listing(policy)))
        if show_landlock or everything:
            click.echo("\n".join(landlock_listing(policy)))
    except JailpyError as err:
        click.echo(f"jailpy: {err}" + (f"\n  hint: {err.hint}" if err.hint else ""), err=True)
        sys.exit(err.exit_code)


def seccomp_listing(policy) -> list[str]:
    from ..runtime.seccomp import compile_rules
    from ..plan.seccomp import render, resolve

    rules = resolve(policy.seccomp)
    if rules is None:
        return [f"profile {policy.name}: seccomp disabled"]
    compiled = compile_rules(rules)
    skipped = {name: "not on this architecture or unknown to this libseccomp"
               for name in compiled.skipped}
    return [f"profile {policy.name}: seccomp ({len(compiled.program) // 8} BPF instructions)",
            *render(rules, skipped)]


def landlock_listing(policy) -> list[str]:
    from ..plan.landlock import derive, describe
    from ..linux.landlock import abi_version

    from ..api import Sandbox

    abi, why = abi_version()
    plan = Sandbox(policy).plan(["true"])  # with the ops the planner adds (desktop, ...)
    return [f"profile {policy.name}: landlock",
            *describe(derive(policy, plan.mount_ops), abi, why)]


def _export(policy, path: str) -> None:
    from ..errors import ConfigError
    from ..runtime.seccomp import compile_rules
    from ..plan.seccomp import resolve

    rules = resolve(policy.seccomp)
    if rules is None:
        raise ConfigError("the profile disables seccomp: there is no filter to export",
                          origin="--export-bpf")
    program = compile_rules(rules).program
    try:
        with open(path, "wb") as f:
            f.write(program)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}", origin="--export-bpf") from exc
    click.echo(f"wrote {len(program) // 8} BPF instructions to {path}", err=True)
