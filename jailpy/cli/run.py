"""`jailpy run` once its options are parsed, by click or by the fast path.

Turns the options into one more profile layer (same merge rules as a
profile that `extends` the chosen one), runs the sandbox, and maps errors to
one line on stderr and exit status 125/126/127.
"""

from __future__ import annotations

import sys

from ..errors import ConfigError, JailpyError
from .options import FS_OPTIONS, LIMIT_OPTIONS, MODIFIERS, NAMESPACES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ..profile.merge import Layer


def fail(err: JailpyError, debug: bool = False, sink: "Any" = None) -> "NoReturn":
    if sink is not None:  # --json-status: the report is written for failures too
        from ..report.status import error_document

        sink.write(error_document(err))
    if debug:
        import traceback

        traceback.print_exc()
    line = f"jailpy: {err}"
    if err.hint:
        line += f"\n  hint: {err.hint}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.exit(err.exit_code)


def execute_run(opts: "dict[str, Any]", order: list[str], command: list[str]) -> "NoReturn":
    """Resolve the policy, run (or explain) the command, exit with its status."""
    debug = bool(opts.get("debug"))
    sink = None
    try:
        from ..api import Sandbox, load_policy

        if opts.get("json_status") is not None or opts.get("json_status_fd") is not None:
            from ..report.status import StatusSink

            sink = StatusSink(opts.get("json_status"), opts.get("json_status_fd"))

        policy = load_policy(opts.get("profile"), overrides_layer(order, opts), use_cache=True)
        if opts.get("explain"):
            from ..report import explain
            from .render import sections

            plan = Sandbox(policy).plan(command)
            sections(explain.title(plan), explain.blocks(plan), explain.ALARMS)
            sys.stdout.flush()
            sys.exit(0)
        result = Sandbox(policy).run(command, forward_signals=True,
                                     pass_fds=tuple(opts.get("pass_fds") or ()))
    except JailpyError as err:
        fail(err, debug, sink)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug in jailpy: one line, details with --debug
        fail(JailpyError(f"internal error: {exc!r}", hint="run with --debug and report this"),
             debug, sink)
    for note in result.limits_not_applied:
        sys.stderr.write(f"jailpy: warning: limit not applied (best-effort): {note}\n")
    if sink is not None:
        from ..report.status import result_document

        sink.write(result_document(result))
    exit_now(result.exit_code)


def exit_now(code: int) -> "NoReturn":
    """Exit without interpreter teardown: the sandbox is gone and nothing is left
    to clean up, while finalizing every module costs milliseconds per run."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def overrides_layer(order: list[str], opts: "dict[str, Any]") -> "Layer":
    """CLI options -> a profile layer; each mount op's origin is the flag itself."""
    from ..profile.merge import Layer
    from ..profile.schema import validate_document

    mounts, origins = _ordered_mounts(order, opts)
    doc: dict[str, Any] = {
        "namespaces": {ns: False for ns in NAMESPACES if opts.get(f"share_{ns}")},
        "identity": _present({"uid": opts.get("uid"), "gid": opts.get("gid"),
                              "map_all": opts.get("map_all")}),
        "filesystem": {"mounts": mounts} if mounts else {},
        "environment": _present({
            "clear": opts.get("clear_env"), "keep": list(opts.get("keep_env") or ()) or None,
            "set": dict(opts.get("setenv") or ()) or None,
            "unset": list(opts.get("unsetenv") or ()) or None}),
        "process": _present({"hostname": opts.get("hostname"), "cwd": opts.get("cwd"),
                             "argv0": opts.get("argv0"), "new_session": opts.get("new_session"),
                             "die_with_parent": opts.get("die_with_parent")}),
        "network": _present({
            # --share-net asks for the host's network: it means --net host unless
            # --net says otherwise (a contradiction the constraints then report).
            "mode": opts.get("net_mode") or ("host" if opts.get("share_net") else None),
            "host_loopback": opts.get("host_loopback"),
            "publish": list(opts.get("publish") or ()) or None,
            "allow_connect_tcp": list(opts.get("allow_connect_tcp") or ()) or None,
            "allow_bind_tcp": list(opts.get("allow_bind_tcp") or ()) or None}),
    }
    item_origins = {"filesystem.mounts": origins,
                    "network.mode": ["--net" if opts.get("net_mode") else "--share-net"],
                    "process.cwd": ["--chdir"], "network.host_loopback": ["--host-loopback"]}
    for key in ("publish", "allow_connect_tcp", "allow_bind_tcp"):
        flag = "--" + key.replace("_", "-")
        item_origins[f"network.{key}"] = [f"{flag} {v}" for v in opts.get(key) or ()]
    if any(v not in (None, ()) for k, v in opts.items() if k.startswith("desktop_")):
        from .desktop import desktop_layer

        doc["desktop"], desktop_origins = desktop_layer(opts)
        item_origins.update(desktop_origins)
    # `is not None`, not truthiness: --pids-max 0 must reach validation and be refused.
    if any(opts.get(dest) is not None and opts.get(dest) is not False and opts.get(dest) != ()
           for dest in LIMIT_OPTIONS):
        from ..profile.limits import cli_sections

        sections, limit_origins = cli_sections(opts)
        doc.update(sections)
        item_origins.update(limit_origins)
    from .layer import security_layer

    security_doc, security_origins = security_layer(opts)
    doc.update(security_doc)
    item_origins.update(security_origins)
    doc = {k: v for k, v in doc.items() if v}
    for key in ("uid", "gid", "map_all", "hostname", "argv0"):
        item_origins[f"{'identity' if key in ('uid', 'gid', 'map_all') else 'process'}.{key}"] = \
            [f"--{key.replace('_', '-')}"]
    for ns in NAMESPACES:
        item_origins[f"namespaces.{ns}"] = [f"--share-{ns}"]
    for key, flag in (("environment.clear", "--clearenv/--inherit-env"),
                      ("environment.set", "--setenv"),
                      ("process.new_session", "--new-session/--no-new-session"),
                      ("process.die_with_parent", "--die-with-parent/--no-die-with-parent")):
        item_origins[key] = [flag]
    for key, flag in (("keep", "--keep-env"), ("unset", "--unsetenv")):
        values = doc.get("environment", {}).get(key, [])
        item_origins[f"environment.{key}"] = [f"{flag} {v}" for v in values]
    try:
        validate_document(doc, "command line")
    except ConfigError as err:
        err.origin = _option_of(err.origin or "", item_origins)
        raise
    return Layer(doc, "command line", item_origins)


def _option_of(origin: str, item_origins: "dict[str, list[str]]") -> str:
    """'command line: filesystem.mounts[2].bind' -> '--bind SRC DEST', the option to fix."""
    path = origin.removeprefix("command line: ")
    key, _, rest = path.partition("[")
    for name in (key, key.rsplit(".", 1)[0]):
        found = item_origins.get(name)
        if found:
            index = int(rest.split("]")[0]) if rest[:1].isdigit() else 0
            return found[index] if index < len(found) else found[0]
    return origin


def _present(values: "dict[str, Any]") -> "dict[str, Any]":
    return {k: v for k, v in values.items() if v is not None}


def _ordered_mounts(order: list[str], opts: "dict[str, Any]") -> tuple[list[dict], list[str]]:
    cursors = {name: 0 for name in (*FS_OPTIONS, *MODIFIERS)}
    mounts: list[dict] = []
    origins: list[str] = []
    pending: dict[str, str] = {}
    for name in order:
        if name not in cursors:
            continue
        value = opts[name][cursors[name]]
        cursors[name] += 1
        if name in MODIFIERS:
            pending["size" if name == "size" else "mode"] = value
            continue
        kind, nargs, is_try, _ = FS_OPTIONS[name]
        args = (value,) if nargs == 1 else tuple(value)
        origin = f"--{name.replace('_', '-')} {' '.join(args)}"
        entry = _mount_entry(kind, is_try, args)
        entry.update(pending)
        pending = {}
        mounts.append(entry)
        origins.append(origin)
    if pending:
        raise ConfigError("must be followed by the op it modifies",
                          origin="--size" if "size" in pending else "--perms")
    return mounts, origins


def _mount_entry(kind: str, is_try: bool, args: tuple[str, ...]) -> "dict[str, Any]":
    key = kind + "-try" if is_try else kind
    if kind in ("bind", "ro-bind", "dev-bind", "symlink"):
        return {key: args[0], "dest": args[1]}
    if kind == "file":
        return {"file": args[1], "content": args[0]}
    if kind == "chmod":
        return {"chmod": args[1], "mode": args[0]}
    return {key: args[0]}
