"""Command line with click: every command, help text, completion, usage errors.

`jailpy run` options are rows of the table in options.py; this module turns
them into click options, while main() in __init__.py handles a well-formed
`jailpy run` without importing click at all. Either way the parsed options go
to run.execute_run, which layers them over the profile (layer.py) with the
same merge rules as `extends`. Errors are printed by errors.render.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from .options import GROUPS, RUN_OPTIONS, Opt

#: The end of `jailpy run --help`: what people type most, as a starting point.
RUN_EXAMPLES = """\b
Examples:
  jailpy run -- bash                              a shell in the default profile
  jailpy run --bind "$PWD" "$PWD" -- make         let a build write its workspace
  jailpy run -p minimal -e LANG=C.UTF-8 -- python3 -c 'print(1)'
  jailpy run --net slirp4netns -- curl -sI https://example.org
  jailpy run --net pasta --publish 8080:80 -- python3 -m http.server 80
  jailpy run --timeout 10m --memory-max 2G --json-status - -- ./build.sh
  jailpy run -p ./my.toml --explain -- true       the plan, without running it
See man jailpy and man jailpy-profile."""


class _OrderedCommand(click.Command):
    """`jailpy run`: records the order in which options appeared (as options.parse_run
    does), for ordered mount ops, and lists its options in the table's groups."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        parser = self.make_parser(ctx)
        _, _, order = parser.parse_args(args=list(args))
        ctx.meta["jailpy.order"] = [p.name for p in order if isinstance(p, click.Option)]
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        group_of = {opt.dest: opt.group for opt in RUN_OPTIONS}
        sections: dict[str, list[tuple[str, str]]] = {group: [] for group in GROUPS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                sections[group_of.get(param.name or "", "output")].append(record)
        for group, records in sections.items():
            if records:
                with formatter.section(GROUPS[group]):
                    formatter.write_dl(records)


def _print_help_without_command(ctx: click.Context) -> None:
    """Bare `jailpy`: the help on stdout, status 0, whatever click's version would do."""
    click.echo(ctx.get_help())


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True, no_args_is_help=False)
@click.version_option(__version__, prog_name="jailpy")
@click.pass_context
def main(ctx: click.Context) -> None:
    """jailpy: run commands in a rootless Linux sandbox built from a TOML profile.

    Start with 'jailpy check' (what this machine supports), then
    'jailpy run -- bash'. Manual: man jailpy, man jailpy-profile."""
    if ctx.invoked_subcommand is None:
        _print_help_without_command(ctx)


def _complete_profile(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion: profile names from the search path, or file paths."""
    import os

    from click.shell_completion import CompletionItem

    from ..profile.loader import is_path, profile_names

    if is_path(incomplete) or incomplete.startswith("."):
        return [CompletionItem(incomplete, type="file")]
    return [CompletionItem(n) for n in profile_names(dict(os.environ)) if n.startswith(incomplete)]


def _words(kind: str, incomplete: str) -> list[str]:
    """The words shell completion offers for an option's value (Opt.complete)."""
    if kind == "network":
        from ..policy import NETWORK_MODES

        return list(NETWORK_MODES)
    if kind == "capability":
        from ..linux.capabilities import CAPABILITIES

        return list(CAPABILITIES)
    if kind == "seccomp":
        from ..plan.seccomp import GROUPS as SECCOMP_GROUPS

        return list(SECCOMP_GROUPS)
    if kind == "seccomp-action":
        from ..plan.seccomp import ACTIONS

        return list(ACTIONS)
    return []


def _completer(kind: str):
    """A click shell_complete function for one Opt.complete kind."""
    if kind == "profile":
        return _complete_profile

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
        from click.shell_completion import CompletionItem

        if kind in ("path", "dir"):  # the shell's own file-name completion
            return [CompletionItem(incomplete, type="dir" if kind == "dir" else "file")]
        upper = incomplete.upper() if kind == "capability" else incomplete
        return [CompletionItem(word) for word in _words(kind, incomplete)
                if word.startswith(upper)]
    return complete


def _click_option(opt: Opt):
    common: dict[str, Any] = {"help": opt.help}
    if opt.complete:
        common["shell_complete"] = _completer(opt.complete)
    if opt.kind == "value":
        return click.option(*opt.flags, opt.dest, type=opt.type, metavar=opt.metavar, **common)
    if opt.kind == "multi":
        kind = opt.type if opt.nargs == 1 else click.Tuple([opt.type] * opt.nargs)
        return click.option(*opt.flags, opt.dest, type=kind, nargs=opt.nargs, multiple=True,
                            metavar=opt.metavar, **common)
    if opt.kind == "flag":
        return click.option(*opt.flags, opt.dest, is_flag=True, default=opt.default, **common)
    return click.option(f"{opt.flags[0]}/{opt.off}", opt.dest, default=None, **common)


def _run_options(func):
    for opt in reversed(RUN_OPTIONS):
        func = _click_option(opt)(func)
    return func


@main.command("run", cls=_OrderedCommand, epilog=RUN_EXAMPLES,
              context_settings={"allow_interspersed_args": False})
@_run_options
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
@click.pass_context
def run_cmd(ctx: click.Context, command: tuple[str, ...], **opts: Any) -> None:
    """Run CMD in a sandbox."""
    from .run import execute_run

    execute_run(opts, ctx.meta["jailpy.order"], list(command))


@main.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as one JSON array.")
@click.option("--all", "show_optional", is_flag=True,
              help="Report optional pieces (the desktop session's) as MISSING too.")
def check_cmd(as_json: bool, show_optional: bool) -> None:
    """Report what this machine supports, with a fix for each missing piece.

    Exit status 1 when a core requirement (user namespaces, ...) is missing."""
    from ..report import check

    rows = check.collect()
    if as_json:
        import json

        click.echo(json.dumps(check.as_json(rows, show_optional), indent=2))
    else:
        # Plain lines, never a wrapping table: a fix is a command to copy whole.
        for row in rows:
            click.echo(f"{row.status(show_optional):<10} {row.area:<10} {row.name}: "
                       f"{row.detail}")
            if not row.ok and row.hint and row.status(show_optional) == "MISSING":
                click.echo(f"{'':<10} {'':<10} fix: {row.hint}")
    sys.exit(check.exit_status(rows))


@main.command("serve")
@click.option("-p", "--profile", default=None, metavar="NAME|FILE", shell_complete=_complete_profile,
              help="The profile every request runs in (default: default).")
@click.option("--listen", required=True, metavar="unix:PATH|HOST:PORT",
              help="A Unix socket, or a TCP address (needs a token).")
@click.option("--pool", "pool_size", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Sandboxes kept prepared ahead of requests.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None,
              help="Requests run at once (default: the pool size).")
@click.option("--queue", type=click.IntRange(0, 100000), default=64, show_default=True,
              help="Requests that may wait for a slot; beyond: 503 queue_full.")
@click.option("--max-request", default="1M", show_default=True, metavar="SIZE",
              help="Largest request body; beyond: 413.")
@click.option("--max-output", default="1M", show_default=True, metavar="SIZE",
              help="Most stdout (and stderr) kept per request; the rest is cut, flagged.")
@click.option("--max-timeout", default="60s", show_default=True, metavar="DURATION",
              help="Longest (and default) timeout of a request.")
@click.option("--token-file", default=None, metavar="FILE",
              help="Bearer token (file readable by its owner only); or $JAILPY_TOKEN.")
@click.option("--socket-mode", default="0600", show_default=True, metavar="MODE",
              help="Mode of the Unix socket.")
@click.option("--debug", is_flag=True, help="Show tracebacks for jailpy's own errors.")
def serve_cmd(**opts: Any) -> None:
    """Serve POST /v1/run over a warm pool of sandboxes (docs/serve.md).

    Needs the optional extra: pip install 'jailpy[serve]'. SIGTERM stops it
    gracefully: requests in flight finish, the socket is removed, exit 0.
    """
    from .serve import serve

    serve(opts)


@main.command("bwrap", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def bwrap_cmd(arguments: tuple[str, ...]) -> None:
    """Run a bubblewrap command line on jailpy (docs/bwrap.md); also `jailpy-bwrap`.

    `jailpy bwrap --help` prints bwrap's own option list. (A plain `jailpy bwrap ...`
    never reaches click: cli/__init__.py hands it to cli/bwrap.py first.)"""
    from .bwrap import main as bwrap_main

    bwrap_main(list(arguments))


@main.command("learn", context_settings={"allow_interspersed_args": False})
@click.option("-p", "--profile", "base", metavar="BASE", shell_complete=_complete_profile,
              help="The profile to learn over and extend (default: default).")
@click.option("-o", "--output", metavar="OUT.toml", help="Write the learned profile here.")
@click.option("--merge", metavar="OUT.toml",
              help="Add this run's observations to a profile learn wrote before.")
@click.option("--writable", multiple=True, metavar="DIR",
              help="Also writable while learning (the working directory always is).")
@click.option("--debug", is_flag=True, help="Show tracebacks for jailpy's own errors.")
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
def learn_cmd(base: str | None, output: str | None, merge: str | None,
              writable: tuple[str, ...], debug: bool, command: tuple[str, ...]) -> None:
    """Run CMD while watching it, write the profile it needs, and check it.

    CMD runs under strace in a permissive variant of BASE; what it opened,
    executed, connected to and which syscalls it made become a profile that
    extends BASE (docs/learn.md). Then CMD runs again under that profile and
    the exit statuses are compared: exit 0 when they match, 1 when not."""
    from ..errors import JailpyError
    from .learn import execute_learn
    from .run import fail

    try:
        sys.exit(execute_learn(base, output, merge, writable, list(command)))
    except JailpyError as err:
        fail(err, debug)
    except KeyboardInterrupt:
        sys.exit(130)


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the completion script for SHELL (the one the package installs).

    \b
      eval "$(jailpy completion bash)"      # in ~/.bashrc
      eval "$(jailpy completion zsh)"       # in ~/.zshrc, after compinit
      jailpy completion fish | source       # in ~/.config/fish/config.fish
    """
    from .completion import script

    click.echo(script(shell), nl=False)


@main.group("profile")
def profile_group() -> None:
    """List, show and check profiles."""


@profile_group.command("list")
def profile_list_cmd() -> None:
    """List the profiles on the search path: name, source, file, description."""
    import os

    from ..profile.commands import list_profiles
    from .render import table

    rows = []
    for entry in list_profiles(dict(os.environ)):
        description = entry.description
        if entry.shadowed_by is not None:
            description = f"[shadowed by {entry.shadowed_by}] {description}"
        rows.append((entry.name, entry.source, str(entry.path), description))
    table(("NAME", "SOURCE", "FILE", "DESCRIPTION"), rows, styles=("bold", None, "dim", None))


@profile_group.command("show")
@click.argument("name", metavar="NAME|FILE", shell_complete=_complete_profile)
@click.option("--origins", is_flag=True,
              help="Annotate each value with the file or option it came from.")
@click.option("--debug", is_flag=True, help="Show tracebacks for jailpy's own errors.")
@click.option("--seccomp", "show_seccomp", is_flag=True,
              help="List the resolved seccomp rules, in evaluation order.")
@click.option("--landlock", "show_landlock", is_flag=True,
              help="List the Landlock rules and what this kernel enforces of them.")
@click.option("--export-bpf", "export_bpf", metavar="FILE",
              help="Write the compiled seccomp filter (raw BPF, as bwrap --seccomp reads).")
def profile_show_cmd(name: str, origins: bool, debug: bool, show_seccomp: bool,
                     show_landlock: bool, export_bpf: str | None) -> None:
    """Print the fully merged profile NAME as TOML (variables expanded)."""
    from ..errors import JailpyError
    from ..plan import Caller
    from ..profile.commands import show
    from .run import fail

    try:
        if show_seccomp or show_landlock or export_bpf:
            _show_security(name, show_seccomp, show_landlock, export_bpf)
            return
        text = show(name, Caller.current(), origins)
    except JailpyError as err:
        fail(err, debug)
    click.echo(text, nl=False)


def _show_security(name: str, show_seccomp: bool, show_landlock: bool,
                   export_bpf: str | None) -> None:
    """`profile show --seccomp/--landlock/--export-bpf`: the privilege layers of NAME."""
    from ..api import load_policy

    policy = load_policy(name)
    if export_bpf:
        _export_bpf(policy, export_bpf)
    if show_seccomp:
        click.echo("\n".join(_seccomp_listing(policy)))
    if show_landlock:
        click.echo("\n".join(_landlock_listing(policy)))


def _seccomp_listing(policy) -> list[str]:
    from ..plan.seccomp import render, resolve
    from ..runtime.seccomp import compile_rules

    rules = resolve(policy.seccomp)
    if rules is None:
        return [f"profile {policy.name}: seccomp disabled"]
    compiled = compile_rules(rules)
    skipped = {name: "not on this architecture or unknown to this libseccomp"
               for name in compiled.skipped}
    return [f"profile {policy.name}: seccomp ({len(compiled.program) // 8} BPF instructions)",
            *render(rules, skipped)]


def _landlock_listing(policy) -> list[str]:
    from ..api import Sandbox
    from ..linux.landlock import abi_version
    from ..plan.landlock import derive, describe

    abi, why = abi_version()
    plan = Sandbox(policy).plan(["true"])  # with the ops the planner adds (desktop, ...)
    return [f"profile {policy.name}: landlock",
            *describe(derive(policy, plan.mount_ops), abi, why)]


def _export_bpf(policy, path: str) -> None:
    from ..errors import ConfigError
    from ..plan.seccomp import resolve
    from ..runtime.seccomp import compile_rules

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


@profile_group.command("check")
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                shell_complete=_complete_profile)
def profile_check_cmd(files: tuple[str, ...]) -> None:
    """Validate profiles (and what they extend) as 'jailpy run' would; exit 0 or 125."""
    from ..errors import EXIT_JAILPY_FAILURE, JailpyError, render
    from ..plan import Caller
    from ..profile.commands import check

    caller = Caller.current()
    failed = False
    for ref in files:
        try:
            _check_as_run_would(check(ref, caller), caller)
        except JailpyError as err:
            failed = True
            click.echo(render(err), err=True, nl=False)
            continue
        click.echo(f"{ref}: ok")
    sys.exit(EXIT_JAILPY_FAILURE if failed else 0)


@profile_group.command("import-firejail")
@click.argument("ref", required=False, metavar="FILE|NAME")
@click.option("-o", "--output", metavar="OUT", help="Write the profile here (with --all: the "
              "directory for NAME.toml files); default: standard output.")
@click.option("--all", "all_dir", metavar="DIR",
              help="Convert every *.profile in DIR (e.g. /etc/firejail) into -o OUTDIR.")
def profile_import_firejail_cmd(ref: str | None, output: str | None,
                                all_dir: str | None) -> None:
    """Convert a firejail profile (and its includes) into a jailpy profile."""
    from ..errors import ConfigError, JailpyError
    from ..profile import firejail
    from .run import fail

    try:
        home = firejail.user_home()
        if all_dir is not None:
            if ref is not None or output is None:
                raise ConfigError("--all DIR takes no FILE|NAME and needs -o OUTDIR",
                                  origin="--all")
            summary = firejail.import_all(all_dir, output, home)
            click.echo("\n".join(summary.lines()))
            sys.exit(0 if summary.converted and not summary.failed else 125)
        if ref is None:
            raise ConfigError("missing FILE|NAME", origin="jailpy profile import-firejail",
                              hint="a firejail profile name (firefox) or file, or --all DIR")
        conversion, text = firejail.import_one(ref, output, home)
    except JailpyError as err:
        fail(err)
    for line in firejail.stderr_lines(conversion):
        click.echo(line, err=True)
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {output} (checked)", err=True)


def _check_as_run_would(policy, caller) -> None:
    """What `jailpy run` checks after the profile: the plan (workspace, desktop,
    variables in paths) and the seccomp rules as libseccomp resolves them."""
    from ..plan import build_plan
    from ..plan.seccomp import resolve
    from ..runtime.seccomp import compile_rules

    build_plan(policy, ["true"], caller)
    rules = resolve(policy.seccomp)
    if rules is not None:
        compile_rules(rules)


@main.command("wrap")
@click.argument("app", required=False)
@click.option("-p", "--profile", metavar="NAME|FILE",
              help="Profile for the app (default: the profile named like APP).")
@click.option("--bin-dir", metavar="DIR", help="Where the wrapper goes (default ~/.local/bin).")
@click.option("--list", "list_only", is_flag=True, help="Show what is wrapped.")
def wrap_cmd(app: str | None, profile: str | None, bin_dir: str | None, list_only: bool) -> None:
    """Make APP start sandboxed: a wrapper in BIN_DIR and a rewritten .desktop entry."""
    from . import wrap
    from ..errors import ConfigError, JailpyError
    from .run import fail

    try:
        if list_only:
            for w in wrap.list_wrapped(bin_dir):
                click.echo(f"{w.app}\t{w.binary}\tprofile={w.profile}\twrapper={w.wrapper}")
                for command in w.commands:
                    click.echo(f"  command   {command}\t{w.wrapper.parent / command}")
                for desktop in w.desktops:
                    click.echo(f"  menu      {desktop}")
                for missing in wrap.uncovered(w, bin_dir):
                    click.echo(f"  NOT COVERED {missing}")
            return
        if app is None:
            raise ConfigError("missing APP", origin="jailpy wrap",
                              hint="jailpy wrap APP [--profile P], or jailpy wrap --list")
        record, notes = wrap.wrap(app, profile, bin_dir)
    except JailpyError as err:
        fail(err)
    click.echo(f"wrapped {record.app}: {record.wrapper} -> jailpy --profile {record.profile} "
               f"-- {record.binary}")
    for command in record.commands:
        click.echo(f"command: {record.wrapper.parent / command}")
    for desktop in record.desktops:
        click.echo(f"desktop entry: {desktop}")
    for note in notes:
        click.echo(f"note: {note}", err=True)


@main.command("unwrap")
@click.argument("app")
@click.option("--bin-dir", metavar="DIR", help="Where the wrapper is (default ~/.local/bin).")
def unwrap_cmd(app: str, bin_dir: str | None) -> None:
    """Remove the wrapper and desktop entry that 'jailpy wrap APP' wrote."""
    from . import wrap
    from ..errors import JailpyError
    from .run import fail

    try:
        record = wrap.unwrap(app, bin_dir)
    except JailpyError as err:
        fail(err)
    click.echo(f"unwrapped {record.app}")


@main.group("changes")
def changes_group() -> None:
    """Review, commit or discard what 'jailpy run --changes' kept (docs/overlays.md)."""


_DIR_OPTION = click.option("--dir", "directory", metavar="DIR",
                           help="The changes directory (default $XDG_STATE_HOME/jailpy/changes).")


def _open_run(directory: str | None, run_id: str | None):
    """The named run; the latest one when none is named or the name is `latest`."""
    from ..runtime.changes import Run, latest
    from .changes import root_of

    root = root_of(directory)
    return Run(root, latest(root) if run_id in (None, "latest") else run_id)


def _changes_command(func):
    """Errors as one line and status 125, like every jailpy command."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from ..errors import JailpyError
        from .run import fail

        try:
            func(*args, **kwargs)
        except JailpyError as err:
            fail(err)
        except OSError as exc:
            fail(JailpyError(f"{exc.filename or 'changes'}: {exc.strerror}",
                             origin="jailpy changes"))
    return wrapper


@changes_group.command("list")
@_DIR_OPTION
@_changes_command
def changes_list_cmd(directory: str | None) -> None:
    """List the kept runs: name, when, changes, overlaid paths, command."""
    import time

    from ..runtime.changes import list_runs
    from .changes import root_of
    from .render import table

    rows = []
    for run in list_runs(root_of(directory)):
        started = time.strftime("%Y-%m-%d %H:%M:%S",
                                time.localtime(run.meta.get("started_ns", 0) / 1e9))
        rows.append((run.id, started, str(len(run.changes())), " ".join(run.paths),
                     " ".join(run.meta.get("argv") or ())))
        run.close()
    if not rows:
        click.echo(f"no runs in {root_of(directory)}")
        return
    table(("RUN", "STARTED", "CHANGES", "PATHS", "COMMAND"), rows,
          styles=("bold", None, None, None, "dim"))


@changes_group.command("show")
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option("--diff", "show_diff", is_flag=True, help="Unified diffs of text files.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for programs.")
@_DIR_OPTION
@_changes_command
def changes_show_cmd(run_id: str | None, show_diff: bool, as_json: bool,
                     directory: str | None) -> None:
    """What RUN (default: the latest) added, modified and deleted."""
    from . import changes as view

    run = _open_run(directory, run_id)
    try:
        found = run.changes()
        if as_json:
            click.echo(view.as_json(run, found))
            return
        click.echo(f"run {run.id}: {len(found)} change(s) to {', '.join(run.paths)}")
        for change in found:
            click.echo(view.describe(change))
            if show_diff:
                click.echo(view.diff(run, change), nl=False)
    finally:
        run.close()


@changes_group.command("commit")
@click.argument("run_id", metavar="RUN")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@_DIR_OPTION
@_changes_command
def changes_commit_cmd(run_id: str, paths: tuple[str, ...], directory: str | None) -> None:
    """Apply RUN's changes (or those at or beneath each PATH) to the host; refuses,
    writing nothing, when a host file changed since the run started."""
    from ..runtime.changes import commit

    run = _open_run(directory, run_id)
    try:
        done = commit(run, list(paths))
        left = len(run.changes())
    finally:
        run.close()
    click.echo(f"committed {len(done)} change(s); {left} left in run {run.id}")


@changes_group.command("discard")
@click.argument("run_id", metavar="RUN")
@_DIR_OPTION
@_changes_command
def changes_discard_cmd(run_id: str, directory: str | None) -> None:
    """Delete RUN's directory and everything it kept."""
    from ..runtime.changes import discard

    run = _open_run(directory, run_id)
    run.close()
    discard(run)
    click.echo(f"discarded run {run.id}")


if __name__ == "__main__":  # pragma: no cover
    main()
