"""The fast parser and the click command agree on every `jailpy run` command line.

`jailpy run` is parsed twice over: options.parse_run handles a well-formed
command line without importing click, and the click command handles the rest
(help, errors). Both must hand execute_run the same options, the same order
and the same command, so the profile layer built from them is the same too.
The corpus is generated from the option table (every row, every spelling), so
a new row is covered without touching this file, plus edge cases by hand.
Where the fast parser steps aside, click must be the one to refuse.
"""

from __future__ import annotations

import click
import pytest

from jailpy.cli.commands import main
from jailpy.cli.layer import command_line_layer
from jailpy.cli.options import RUN_OPTIONS, Opt, parse_run
from jailpy.errors import JailpyError

#: A valid value for each metavar word (rows whose values are checked get their own).
_BY_METAVAR = {"SRC": "/usr", "DEST": "/mnt", "TARGET": "/usr/bin", "TEXT": "hello",
               "OCTAL": "0700", "SIZE": "64M", "N": "7", "PORT": "8080", "DIR": "/work",
               "PATH": "/opt", "NAME|FILE": "default", "NAME|GLOB": "LC_*",
               "NAME": "org.example.App", "VALUE": "some value", "MODE": "filtered",
               "NAME=RULE": "org.example.App=*", "PIECE": "x11", "CAP": "CAP_NET_RAW",
               "SYSCALL|@GROUP": "@mount", "ACTION": "kill-process", "DURATION": "10m",
               "FILE|-": "-", "SPEC": "8080:80", "NAME=MODE": "downloads=rw",
               "NAME=SOFT[:HARD]": "nofile=64:128", "UPPER": "/tmp/up", "WORK": "/tmp/work",
               "NAME=VALUE": "LANG=C.UTF-8", "URL": "unix:/run/jailpy.sock",
               "NAME[:PORT]": "pypi.org:443", "FILE": "/tmp/egress.jsonl"}
_BY_DEST = {"net_mode": "slirp4netns", "hostname": "box", "argv0": "app", "cwd": "/work",
            "cpus": "1.5", "app_dir": "/home/app", "memory_swap_max": "0"}
#: A second, different value, for repeated options.
_SECOND = {"nofile=64:128": "NPROC=10", "downloads=rw": "documents=ro", "x11": "wayland",
           "filtered": "none", "kill-process": "log", "@mount": "ptrace", "default": "net-client",
           "slirp4netns": "pasta", "CAP_NET_RAW": "CAP_NET_BIND_SERVICE", "64M": "1G",
           "10m": "30s", "org.example.App=*": "org.other.App=*"}


def _values(opt: Opt) -> tuple[str, ...]:
    words = opt.metavar.split() if opt.metavar else []
    sample = _BY_DEST.get(opt.dest.removeprefix("desktop_"))
    if sample and opt.nargs == 1:
        return (sample,)
    return tuple(_BY_METAVAR[word] for word in words)


def _other(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_SECOND.get(v, v + "2" if not v.isdigit() else str(int(v) + 1))
                 for v in values)


def _spellings(opt: Opt) -> list[list[str]]:
    """Each way of writing the row, each with what it needs to be valid after it."""
    after = ["--tmpfs", "/mnt"] if opt.into == "modifier" else []
    if opt.key and opt.key.endswith("lower[]"):  # modifies an overlay op
        after = ["--ro-overlay", "/usr", "/mnt"]
    before = ["--lower", "/opt"] if opt.name == "--ro-overlay" else []  # needs two layers
    if opt.kind in ("flag", "switch"):
        lines = [[flag] for flag in opt.flags] + [[opt.flags[0], opt.flags[0]]]
        if opt.off:
            lines += [[opt.off], [opt.flags[0], opt.off], [opt.off, opt.flags[0]]]
        return lines
    first, second = _values(opt), _other(_values(opt))
    lines = []
    for flag in opt.flags:
        lines.append([flag, *first])
        lines.append([f"{flag}={first[0]}" if flag.startswith("--") else flag + first[0],
                      *first[1:]])
    lines.append([opt.name, *first, *after, *before, opt.name, *second])  # repeated
    return [before + line + after for line in lines]


_GENERATED = [[*spelling, "--", "true"] for opt in RUN_OPTIONS for spelling in _spellings(opt)]

_HANDWRITTEN = [
    ["--", "true"],
    ["true"],
    ["true", "--hostname", "x"],                         # options after CMD are CMD's
    ["--hostname", "box", "cmd", "--", "arg"],
    ["--", "--hostname", "x"],                           # `--` ends the options
    ["--", "--", "true"],
    ["-"],
    ["--hostname", "--", "true"],                        # a value that looks like an option
    ["--bind", "/a", "--", "true"],
    ["--hostname=", "--", "true"],
    ["-p=default", "--", "true"],
    ["--size", "1M", "--tmpfs", "/t", "--bind", "/a", "/b", "--perms", "0700", "--dir", "/d",
     "--size", "2M", "--perms", "0755", "--tmpfs", "/u", "--ro-bind-try", "/x", "/y", "true"],
    ["--size", "1M", "--", "true"],                      # a modifier with nothing to modify
    ["--share-net", "--net", "pasta", "--", "true"],
    ["--net", "pasta", "--share-net", "--", "true"],
    ["--no-dbus", "--dbus-talk", "org.a.B", "--dbus-system-see", "org.c.D", "--", "true"],
    ["--x11", "--no-x11", "--wayland", "--", "true"],
    ["--rlimit", "nofile=1", "--rlimit", "NOFILE=2", "--", "true"],
    ["--setenv", "A", "1", "--setenv", "A", "2", "--unsetenv", "B", "--", "true"],
    ["--seccomp-deny", "@nope", "--", "true"],           # value errors name the option
    ["--user-dir", "downloads", "--", "true"],
    ["--pids-max", "0", "--", "true"],
    ["--chdir", "relative", "--", "true"],
    # Not well-formed: the fast parser steps aside and click refuses (or helps).
    [], ["--"], ["--hostname"], ["--bind", "/a"], ["--nope", "--", "true"], ["--help"],
    ["-h"], ["--uid", "x", "--", "true"], ["--cpus", "many", "--", "true"],
    ["--explain=yes", "--", "true"], ["--no-seccomp=1", "--", "true"], ["-x", "--", "true"],
]


def _click(args: list[str]):
    """What the click command hands execute_run, or None where it refuses."""
    command = main.commands["run"]
    try:
        ctx = command.make_context("run", list(args))
    except (click.exceptions.ClickException, click.exceptions.Exit):
        return None
    params = dict(ctx.params)
    return params, ctx.meta["jailpy.order"], list(params.pop("command"))


def _layer(parsed):
    values, order, _ = parsed
    try:
        layer = command_line_layer(order, values)
    except JailpyError as err:
        return "error", str(err), err.hint
    return layer.source, layer.doc, layer.item_origins


@pytest.mark.parametrize("args", _GENERATED + _HANDWRITTEN, ids=" ".join)
def test_fast_parser_and_click_agree(args):
    fast, slow = parse_run(list(args)), _click(args)
    if fast is None:
        assert slow is None, "the fast parser stepped aside from a line click accepts"
        return
    assert slow is not None, "the fast parser accepted a line click refuses"
    assert fast == slow
    assert _layer(fast) == _layer(slow)


@pytest.mark.parametrize("args", _GENERATED, ids=" ".join)
def test_fast_parser_takes_every_spelling(args):
    parsed = parse_run(list(args))
    assert parsed is not None, "a well-formed line would pay for importing click"
    assert parsed[1], "the option was not recorded in the order"


def test_every_row_sets_its_key_or_none():
    """Each row's generated line reaches the layer under the key the row names."""
    for opt in RUN_OPTIONS:
        if opt.key is None:
            continue
        line = _spellings(opt)[0]
        result = _layer(parse_run([*line, "--", "true"]))
        assert result[0] != "error", (line, result)
        key = opt.key.partition("[")[0]
        assert key.partition(".")[2] in result[1].get(key.partition(".")[0], {}), (line, result)
