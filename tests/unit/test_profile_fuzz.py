"""Property-based tests: whatever a profile file contains, loading it either
succeeds or raises ConfigError (one line, file and key) -- never a traceback.

Documents are generated from the schema's own vocabulary (so they get deep
into validation, expansion, merging and conversion), mutated from the shipped
profiles, and produced as raw bytes."""

from __future__ import annotations

import datetime
import re
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jailpy.errors import ConfigError
from jailpy.plan import Caller, build_plan
from jailpy.policy import MOUNT_KINDS
from jailpy.profile import emit, resolve_policy, schema
from jailpy.profile.loader import shipped_profiles_dir
from profile_env import profiles  # noqa: F401  (fixture)

SHIPPED = sorted(shipped_profiles_dir().glob("*.toml"))
SETTINGS = settings(max_examples=int(__import__("os").environ.get("FUZZ_N", "150")), deadline=None, derandomize=not __import__("os").environ.get("FUZZ_N"),
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
vocabulary = sorted({*schema.SCHEMA, *(k for s in schema.SCHEMA.values() if isinstance(s, dict)
                                        for k in s), *MOUNT_KINDS, "ro-bind-try", "bind-try",
                     "dev-bind-try", *schema.MOUNT_OPTION_KEYS})
keys = st.one_of(st.sampled_from(vocabulary), text)
strings = st.one_of(
    text,
    st.sampled_from(["/usr", "/tmp", "relative", "${HOME}/x", "${NOPE}", "$$", "${", "$",
                     "64M", "-1K", "10m", "0755", "9999", "none", "host", "slirp4netns",
                     "default", "minimal", "./x.toml", "../", "/", "//x/./y/", "x\0y",
                     "environment.keep", "filesystem.mounts", "LC_*", "A=B", ""]),
)
scalars = st.one_of(
    strings, st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(), st.dates(), st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
mount_tables = st.dictionaries(
    st.one_of(st.sampled_from([*MOUNT_KINDS, "ro-bind-try", *schema.MOUNT_OPTION_KEYS]), text),
    st.one_of(strings, st.booleans(), st.integers(-10, 10**6)), min_size=1, max_size=3)


@st.composite
def documents(draw, value=values, mounts=mount_tables, junk: bool = True) -> dict:
    """Schema-shaped documents; with `junk`, wrong types and unknown keys mixed in."""
    doc: dict = {}
    for section in draw(st.lists(st.sampled_from(sorted(schema.SCHEMA)), max_size=7,
                                 unique=True)):
        spec = schema.SCHEMA[section]
        if isinstance(spec, schema.Field) or junk and draw(st.integers(0, 9)) == 0:
            doc[section] = draw(value)
            continue
        table = {}
        for key in draw(st.lists(st.sampled_from(sorted(spec)), max_size=6, unique=True)):
            table[key] = draw(st.lists(mounts, max_size=4) if key == "mounts" else value)
        if junk and draw(st.booleans()):
            table[draw(keys)] = draw(value)
        doc[section] = table
    if junk and draw(st.integers(0, 4)) == 0:
        doc[draw(keys)] = draw(value)
    return doc


def _load_everything(path: Path, root: Path) -> None:
    """The whole pipeline `jailpy run` goes through, up to the Plan."""
    env = {"HOME": str(root / "home"), "XDG_CONFIG_HOME": str(root / "config"),
           "USER": "u", "PATH": "/usr/bin"}
    try:
        policy = resolve_policy(str(path), Caller(1000, 1000, env, "/work"))
    except ConfigError as err:
        assert err.origin, err  # every error says where
        assert "\n" not in err.message, err
        return
    build_plan(policy, ["true"], Caller(1000, 1000, env, "/work"))


@SETTINGS
@given(doc=documents())
def test_generated_documents_never_crash(tmp_path_factory, doc):
    root = tmp_path_factory.mktemp("fuzz")
    path = root / "p.toml"
    path.write_text(emit.dumps(doc))
    _load_everything(path, root)


def _mutate(doc: dict, data) -> dict:
    """One random edit of a parsed document: drop, retype or rename a key, or
    add junk, at a random depth."""
    target = doc
    while True:
        tables = [k for k, v in target.items() if isinstance(v, dict)]
        if not tables or data.draw(st.booleans()):
            break
        target = target[data.draw(st.sampled_from(tables))]
    action = data.draw(st.sampled_from(["drop", "retype", "rename", "add", "mount"]))
    names = list(target)
    if action == "add" or not names:
        target[data.draw(keys)] = data.draw(values)
    elif action == "drop":
        del target[data.draw(st.sampled_from(names))]
    elif action == "retype":
        target[data.draw(st.sampled_from(names))] = data.draw(values)
    elif action == "rename":
        name = data.draw(st.sampled_from(names))
        target[name + data.draw(text)] = target.pop(name)
    else:
        fs = doc.setdefault("filesystem", {})
        mounts = fs.setdefault("mounts", []) if isinstance(fs, dict) else None
        if isinstance(mounts, list):
            mounts.append(data.draw(mount_tables))
    return doc


@SETTINGS
@given(data=st.data(), which=st.sampled_from(SHIPPED), edits=st.integers(1, 4))
def test_mutated_shipped_profiles_never_crash(tmp_path_factory, data, which, edits):
    doc = tomllib.loads(which.read_text())
    for _ in range(edits):
        doc = _mutate(doc, data)
    root = tmp_path_factory.mktemp("mut")
    path = root / "p.toml"
    path.write_text(emit.dumps(doc))
    _load_everything(path, root)


@SETTINGS
@given(data=st.data(), which=st.sampled_from(SHIPPED))
@example(data=None, which=SHIPPED[0])
def test_byte_level_corruption_never_crashes(tmp_path_factory, data, which):
    raw = bytearray(which.read_bytes())
    if data is not None:
        for _ in range(data.draw(st.integers(1, 6))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
            if op == "flip":
                raw[pos] = data.draw(st.integers(0, 255))
            elif op == "delete":
                del raw[pos]
            else:
                raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    root = tmp_path_factory.mktemp("bytes")
    path = root / "p.toml"
    path.write_bytes(bytes(raw))
    _load_everything(path, root)


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_crash(tmp_path_factory, raw):
    root = tmp_path_factory.mktemp("raw")
    path = root / "p.toml"
    path.write_bytes(raw)
    _load_everything(path, root)


# --- the TOML writer -------------------------------------------------------------

toml_keys = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
toml_scalars = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=16), st.booleans(),
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(allow_nan=False), st.dates(), st.times(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(datetime.timezone.utc))),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(toml_keys, inner, max_size=4)),
    max_leaves=16,
)


@SETTINGS
@given(doc=st.dictionaries(toml_keys, toml_values, max_size=6),
       comment=st.one_of(st.none(), st.text(max_size=10)))
def test_emitter_round_trips(doc, comment):
    text = emit.dumps(doc, comments=(lambda path: comment) if comment else None,
                      header=["a header", ""])
    assert tomllib.loads(text) == doc


def test_shown_profiles_load_back_to_the_same_policy(tmp_path, profiles):
    """`jailpy profile show NAME` output is itself a profile that means the same."""
    from jailpy.profile.commands import show

    def strip(policy) -> str:
        """The policy without what differs by construction: its name, and origins
        (which name the file and index a value came from)."""
        return re.sub(r"'[^']*\.toml: [^']*'", "'ORIGIN'", repr(policy.replace(name="")))

    profiles.write("dollar", "extends = ['default']\n[environment]\nset = { P = 'a$$b' }\n")
    for name in [*(p.stem for p in SHIPPED), "dollar"]:
        text = show(name, Caller(1000, 1000, profiles.env, "/work"), with_origins=True)
        path = tmp_path / f"shown-{name}.toml"
        path.write_text(text)
        assert strip(profiles.policy(str(path))) == strip(profiles.policy(name)), name


# --- from the schema, with edge values (issue 21) ------------------------------------
#
# Every key of the schema, every mount kind with its option keys, and values chosen
# for the inputs that broke jailpy before: digits int() rejects, integers beyond
# C types, control and bidi characters, a caller variable holding a surrogate
# (argv and the environment may; TOML text cannot), deep nesting, long arrays.
# FUZZ_SEED picks the run; a failure names it. A release check runs many more
# (docs/architecture.md, "Fuzzing").

FUZZ_SEED = int(__import__("os").environ.get("FUZZ_SEED", "21"))
SCHEMA_SETTINGS = settings(SETTINGS, derandomize=False, database=None)

EDGE_STRINGS = ["²", "٣", "１２", "1²", "²:1", "1G:²", "0x10", "1e999", "-0", " 12 ", "12\n",
                "9" * 40, "9" * 400, "-" + "9" * 30, "unlimited", "1:2", "::", "\x1b[31mred",
                "\u202eevil", "\x7f", "a\tb", "\r", "\ufeff", "🙂", "x" * 300, "/", "/a/../..",
                "${HOME}", "${WEIRD}", "/tmp/${WEIRD}", "$${WEIRD}", "CAP_²", "@²", "1.5.2",
                "10m²", "0755²", "-1s", "nan", "inf", "tcp:²", "127.0.0.²:1:2", "1:²",
                "127.0.0.1:99999999999999999999:1", "65536:1", "0:0"]
EDGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -2**63 - 1, 10**30]
edge_scalars = st.one_of(
    st.sampled_from(EDGE_STRINGS), st.sampled_from(EDGE_INTS), st.booleans(),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, 5e-324, -0.0, 0.5]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), scalars)


def _deep(depth: int, leaf):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


edge_values = st.one_of(
    edge_scalars,
    st.lists(edge_scalars, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(EDGE_STRINGS), keys), edge_scalars, max_size=3),
    st.builds(_deep, st.integers(2, 60), edge_scalars),
    st.builds(lambda v, n: [v] * n, edge_scalars, st.integers(50, 400)),
)
MOUNT_KEYS = sorted({*MOUNT_KINDS, "ro-bind-try", "bind-try", "dev-bind-try",
                     *schema.MOUNT_OPTION_KEYS})


#: Every section and key of the schema can be drawn; values mostly edge values.
schema_documents = documents(
    value=st.one_of(edge_values, values), junk=False,
    mounts=st.dictionaries(st.sampled_from(MOUNT_KEYS), st.one_of(edge_scalars, strings),
                           min_size=1, max_size=3))


def _load_with_edges(path: Path, root: Path) -> None:
    """_load_everything with a caller whose environment holds odd text too."""
    env = {"HOME": str(root / "home"), "XDG_CONFIG_HOME": str(root / "config"),
           "USER": "u", "PATH": "/usr/bin", "WEIRD": "\udcff\x1b[0m\n"}
    caller = Caller(1000, 1000, env, "/work")
    try:
        policy = resolve_policy(str(path), caller)
        build_plan(policy, ["true"], caller)
    except ConfigError as err:
        assert err.origin, err
        assert "\n" not in err.message, err
    except BaseException as exc:
        raise AssertionError(f"{exc!r} (FUZZ_SEED={FUZZ_SEED})\n{path.read_text()}") from exc


@SCHEMA_SETTINGS
@__import__("hypothesis").seed(FUZZ_SEED)
@given(doc=schema_documents)
@example(doc={"limits": {"rlimits": {"nofile": "²"}}})
@example(doc={"limits": {"rlimits": {"nproc": "1:²"}}})
@example(doc={"process": {"hostname": "\x1b[31m"}})
@example(doc={"network": {"mode": "slirp4netns", "publish": ["127.0.0.1:²:80"]}})
@example(doc={"process": {"hostname": "${WEIRD}"}})
def test_schema_documents_with_edge_values_never_crash(tmp_path_factory, doc):
    root = tmp_path_factory.mktemp("edge")
    path = root / "p.toml"
    path.write_text(emit.dumps(doc))
    _load_with_edges(path, root)


@settings(SCHEMA_SETTINGS, max_examples=min(200, max(20, SCHEMA_SETTINGS.max_examples // 5)))
@__import__("hypothesis").seed(FUZZ_SEED)
@given(length=st.integers(1, 90), branch=st.booleans())
def test_long_extends_chains_load_or_name_the_chain(tmp_path_factory, length, branch):
    """A chain (or a chain with a second parent at each step) of `length` files."""
    from jailpy.profile.loader import MAX_EXTENDS_DEPTH

    root = tmp_path_factory.mktemp("chain")
    for i in range(length):
        parents = [f"./p{i + 1}.toml"] if i + 1 < length else []
        if branch and i + 2 < length:
            parents.append(f"./p{i + 2}.toml")
        (root / f"p{i}.toml").write_text(emit.dumps({"extends": parents}) if parents else "")
    env = {"HOME": str(root), "USER": "u", "PATH": "/usr/bin"}
    try:
        resolve_policy(str(root / "p0.toml"), Caller(1000, 1000, env, "/"))
    except ConfigError as err:
        assert length > MAX_EXTENDS_DEPTH, err
        assert f"more than {MAX_EXTENDS_DEPTH} deep" in err.message and "p0.toml" in err.message
        return
    assert length <= MAX_EXTENDS_DEPTH + 1
