"""Random argument vectors through the real CLI entry, in-process, never a sandbox.

`jailpy run --explain ARGS... -- CMD` goes through everything `jailpy run`
does before the launch: the fast parser or click, the command-line layer, the
profile, the policy, the Plan, and the --explain report. --explain comes
first, where no option can take it as its value, so no case launches a
sandbox. The arguments are drawn from the option table itself (every
spelling, `--opt=value` too) with edge values: digits int() rejects, numbers
beyond any C type, surrogates (argv that is not UTF-8), control characters.

A case fails on any exception but SystemExit, on a traceback or "internal
error" in the output, or on an exit status other than 0 or 125. FUZZ_N sets
the number of cases, FUZZ_SEED the run; a failure names both (the long run for
release checks: docs/architecture.md, "Fuzzing").
"""

from __future__ import annotations

import gc
import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

from jailpy.cli import main
from jailpy.cli.options import RUN_OPTIONS

FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "21"))
CASES = int(os.environ.get("FUZZ_N", "0")) or 1000
SETTINGS = settings(max_examples=CASES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

SPELLINGS = sorted({flag for opt in RUN_OPTIONS for flag in opt.flags}
                   | {opt.off for opt in RUN_OPTIONS if opt.off})
#: Options that write files or descriptors get harmless values only (see below).
WRITERS = {"--json-status", "--json-status-fd"}
EDGE = ["²", "٣", "１２", "-1", "0", "1", "3", "65535", "65536", "99999999999999999999",
        "-99999999999999999999", "1e999", "nan", "\udcff", "a\udcffb", "\x1b[31m", "\u202e",
        "\x7f", "\n", "", " ", "=", ":", "::", "a=b", "nofile=²", "nofile=1:²", "cpu=10m",
        "/", "/tmp", "/nonexistent", "relative", "~", "${HOME}", "$", "CAP_NET_RAW", "CAP_²",
        "@default", "@²", "read", "tcp", "127.0.0.1:8080:80", "127.0.0.1:²:80", "8080:80/sctp",
        "none", "host", "slirp4netns", "pasta", "default", "minimal", "-", "--", "---",
        "x" * 300, "10m", "64M", "0755", "1777", "abc", "DISPLAY", "LC_*", "A=\udcff"]
tokens = st.one_of(
    st.sampled_from(SPELLINGS), st.sampled_from(EDGE),
    st.text(st.characters(blacklist_characters="\0"), max_size=8),
    st.builds(lambda flag, value: f"{flag}={value}", st.sampled_from(SPELLINGS),
              st.sampled_from(EDGE)),
)


@st.composite
def argvs(draw) -> list[str]:
    """Options with values from EDGE; odd tokens in between; maybe a command."""
    args: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        token = draw(tokens)
        if token.partition("=")[0] in WRITERS:
            args += [token.partition("=")[0], draw(st.sampled_from(
                ["99999999999999999999", "-1", "²", "\udcff", "/nonexistent/dir/x"]))]
            continue
        args.append(token)
        if token in SPELLINGS and draw(st.booleans()):
            args.append(draw(st.sampled_from(EDGE)))
    if draw(st.booleans()):
        args.append("--")
    args += draw(st.lists(st.sampled_from(["true", "sh", "-c", "\udcff", "x" * 50, ""]),
                          max_size=2))
    return args


@pytest.fixture
def home(tmp_path_factory, monkeypatch):
    """A private home, caches and cwd: whatever a case writes goes to a scratch directory."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    for name, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "config"),
                      ("XDG_CACHE_HOME", "cache")):
        (root / sub).mkdir()
        monkeypatch.setenv(name, str(root / sub))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.chdir(root)  # --json-status with a relative name writes here
    return root


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    """main() with sys.argv = argv: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["jailpy", *argv]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
        gc.enable()  # main() disables collection for `run`, a short-lived process
    return code, out.getvalue(), err.getvalue()


def check(argv: list[str]) -> None:
    where = f"jailpy {argv!r} (FUZZ_SEED={FUZZ_SEED}, FUZZ_N={CASES})"
    try:
        code, out, err = run_in_process(argv)
    except BaseException as exc:
        raise AssertionError(f"{where}: {exc!r} escaped") from exc
    assert "internal error" not in err, f"{where}: {err}"
    if "--debug" not in argv:  # --debug prints the traceback of any error on purpose
        assert "Traceback" not in err, f"{where}: {err}"
    assert code in (0, 125), f"{where}: status {code}: {err}"


@SETTINGS
@seed(FUZZ_SEED)
@given(args=argvs())
@example(args=["--rlimit", "nofile=²", "--", "true"])
@example(args=["--pass-fd", "99999999999999999999", "--", "true"])
@example(args=["--json-status-fd", "99999999999999999999", "--", "true"])
@example(args=["--hostname", "\udcff", "--", "true"])
@example(args=["--", "\udcff"])
def test_random_run_arguments_never_crash(home, args):
    check(["run", "--explain", *args])


@settings(SETTINGS, max_examples=max(50, CASES // 10))
@seed(FUZZ_SEED)
@given(args=st.lists(st.one_of(st.sampled_from(["check", "show", "list", "--help", "default",
                                                "minimal", "--seccomp", "--origins",
                                                "/nonexistent.toml"]),
                               st.sampled_from(EDGE)), max_size=4))
def test_random_profile_commands_never_crash(home, args):
    """`jailpy profile ...`: read-only, through click."""
    check(["profile", *args])
