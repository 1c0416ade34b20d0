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
def documents(draw) -> dict:
    """Mostly schema-shaped documents, with wrong types and unknown keys mixed in."""
    doc: dict = {}
    for section in draw(st.lists(st.sampled_from(sorted(schema.SCHEMA)), max_size=6,
                                 unique=True)):
        spec = schema.SCHEMA[section]
        if isinstance(spec, schema.Field) or draw(st.integers(0, 9)) == 0:
            doc[section] = draw(values)
            continue
        table = {}
        for key in draw(st.lists(st.sampled_from(sorted(spec)), max_size=5, unique=True)):
            if key == "mounts":
                table[key] = draw(st.lists(mount_tables, max_size=4))
            else:
                table[key] = draw(values)
        if draw(st.booleans()):
            table[draw(keys)] = draw(values)
        doc[section] = table
    if draw(st.integers(0, 4)) == 0:
        doc[draw(keys)] = draw(values)
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
