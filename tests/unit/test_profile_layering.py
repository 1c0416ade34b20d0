"""Resolution and layering: search path, extends, merge rules, origins."""

from __future__ import annotations

from pathlib import Path

import pytest

from jailpy.errors import ConfigError
from jailpy.profile.loader import shipped_profiles_dir
from jailpy.profile.merge import Layer
from profile_env import profiles  # noqa: F401  (fixture)

BASE = """description = "base"
[filesystem]
mounts = [{ ro-bind = "/usr" }, { tmpfs = "/tmp" }, { tmpfs = "${HOME}" }]
[environment]
keep = ["PATH", "TERM"]
set = { A = "1", B = "2" }
[process]
hostname = "base"
new_session = true
"""


def test_name_search_order_user_then_shipped(profiles):
    assert profiles.merged("default").sources == [str(shipped_profiles_dir() / "default.toml")]
    mine = profiles.write("default", "[process]\nhostname = 'mine'\n")
    merged = profiles.merged("default")
    assert merged.sources == [str(mine)]
    assert merged.data["process"]["hostname"] == "mine"


def test_profile_extending_its_own_name_gets_the_next_one_down(profiles):
    mine = profiles.write("default", "extends = ['default']\n[process]\nhostname = 'mine'\n")
    merged = profiles.merged("default")
    assert merged.sources == [str(shipped_profiles_dir() / "default.toml"), str(mine)]
    assert merged.data["process"]["hostname"] == "mine"
    assert {"ro-bind": "/usr"} in merged.data["filesystem"]["mounts"]


def test_unknown_name_suggests_and_lists_search_path(profiles):
    with pytest.raises(ConfigError) as info:
        profiles.policy("defualt")
    assert info.value.message == "no profile named 'defualt'"
    assert info.value.hint == "did you mean 'default'?"
    with pytest.raises(ConfigError) as info:
        profiles.policy("zzzzzz")
    assert str(profiles.user_dir) in info.value.hint and "/etc/jailpy/profiles" in info.value.hint


def test_path_reference_and_missing_file(profiles, tmp_path):
    path = profiles.write("x.toml", BASE, where=tmp_path / "elsewhere")
    assert profiles.merged(str(path)).data["process"]["hostname"] == "base"
    with pytest.raises(ConfigError) as info:
        profiles.policy(str(tmp_path / "nope.toml"))
    assert info.value.origin == "--profile"


def test_merge_rules(profiles):
    profiles.write("base", BASE)
    child = profiles.write("child", """extends = ["base"]
[filesystem]
mounts = [{ tmpfs = "/var/tmp" }]
[environment]
keep = ["LANG"]
set = { B = "two", C = "3" }
[process]
hostname = "child"
""")
    merged = profiles.merged("child")
    data = merged.data
    assert data["process"] == {"hostname": "child", "new_session": True}  # scalars override
    assert data["environment"]["keep"] == ["PATH", "TERM", "LANG"]  # arrays append
    assert data["environment"]["set"] == {"A": "1", "B": "two", "C": "3"}  # tables merge
    assert [m.get("tmpfs") or m.get("ro-bind") for m in data["filesystem"]["mounts"]] == \
        ["/usr", "/tmp", profiles.env["HOME"], "/var/tmp"]
    assert merged.origins["process.hostname"] == str(child)
    assert merged.origins["process.new_session"] == str(profiles.user_dir / "base.toml")
    assert merged.origins["filesystem.mounts"][-1] == f"{child}: filesystem.mounts[0]"
    assert merged.origins["environment.set.B"] == str(child)
    assert merged.origins["environment.set.A"] == str(profiles.user_dir / "base.toml")


def test_filesystem_remove_drops_inherited_ops_only(profiles):
    profiles.write("base", BASE)
    profiles.write("child", f"""extends = ["base"]
[filesystem]
mounts = [{{ tmpfs = "/tmp", size = "1M" }}]
remove = ["/tmp/", "${{HOME}}"]
""")
    policy = profiles.policy("child")
    assert [(op.kind, op.dest, op.size) for op in policy.filesystem.ops] == \
        [("ro-bind", "/usr", None), ("tmpfs", "/tmp", 1 << 20)]
    assert policy.filesystem.ops[1].origin.endswith("child.toml: filesystem.mounts[0]")


def test_filesystem_remove_of_nothing_is_an_error(profiles):
    profiles.write("base", BASE)
    path = profiles.write("child", "extends = ['base']\n[filesystem]\nremove = ['/nope']\n")
    err = profiles.error("child")
    assert err.origin == f"{path}: filesystem.remove[0]"
    assert "no inherited mount op" in err.message


def test_reset_discards_inherited_values(profiles):
    profiles.write("base", BASE)
    profiles.write("child", """extends = ["base"]
reset = ["environment.keep", "filesystem.mounts", "process.hostname", "environment.set"]
[environment]
keep = ["LANG"]
set = { Z = "z" }
""")
    merged = profiles.merged("child")
    assert merged.data["environment"] == {"keep": ["LANG"], "set": {"Z": "z"}}
    assert "filesystem" not in merged.data
    assert merged.data["process"] == {"new_session": True}
    assert "environment.set.A" not in merged.origins
    assert profiles.policy("child").process.hostname is None


def test_cycle_detection_shows_the_chain(profiles):
    a = profiles.write("a", "extends = ['b']\n")
    b = profiles.write("b", "extends = ['c.toml']\n")
    c = profiles.write("c", "extends = ['a']\n")
    with pytest.raises(ConfigError) as info:
        profiles.policy("a")
    assert info.value.message == \
        f"profiles extend each other in a cycle: {a} -> {b} -> {c} -> {a}"
    assert info.value.origin == f"{c}: extends[0]"
    profiles.write("self", "extends = ['./self.toml']\n")
    with pytest.raises(ConfigError) as info:
        profiles.policy("self")
    assert "cycle" in info.value.message


def test_diamond_applies_a_shared_base_once(profiles):
    profiles.write("base", "[process]\nhostname = 'base'\n[environment]\nkeep = ['PATH']\n")
    profiles.write("left", "extends = ['base']\n[process]\nhostname = 'left'\n")
    profiles.write("right", "extends = ['base']\n[environment]\nkeep = ['TERM']\n")
    profiles.write("top", "extends = ['left', 'right']\n")
    merged = profiles.merged("top")
    assert [Path(s).stem for s in merged.sources] == ["base", "left", "right", "top"]
    assert merged.data["process"]["hostname"] == "left"
    assert merged.data["environment"]["keep"] == ["PATH", "TERM"]


def test_relative_extends_and_profile_dir(profiles, tmp_path):
    lib = tmp_path / "project"
    profiles.write("base.toml", "[filesystem]\nmounts = [{ ro-bind = '${PROFILE_DIR}' }]\n",
                   where=lib / "lib")
    top = profiles.write("top.toml", "extends = ['lib/base.toml', '${PROFILE_DIR}/more.toml']\n"
                         "[filesystem]\nmounts = [{ ro-bind = '${PROFILE_DIR}/src' }]\n",
                         where=lib)
    profiles.write("more.toml", "", where=lib)
    ops = profiles.policy(str(top)).filesystem.ops
    assert [op.source for op in ops] == [str(lib / "lib"), str(lib / "src")]


def test_errors_in_a_base_name_the_base_file(profiles):
    base = profiles.write("base", "[process]\nhostnme = 'x'\n")
    top = profiles.write("top", "extends = ['base']\n")
    err = profiles.error(str(top))
    assert err.origin == f"{base}: process.hostnme"
    profiles.write("top2", "extends = ['nonexistent']\n")
    err = profiles.error("top2")
    assert err.origin == f"{profiles.user_dir / 'top2.toml'}: extends[0]"


def test_cli_layer_overrides_like_a_profile_that_extends(profiles):
    profiles.write("base", BASE)
    overrides = Layer({"process": {"hostname": "cli"},
                       "filesystem": {"mounts": [{"tmpfs": "/x"}]}},
                      "command line", {"filesystem.mounts": ["--tmpfs /x"],
                                       "process.hostname": ["--hostname"]})
    merged = profiles.merged("base", overrides)
    assert merged.data["process"]["hostname"] == "cli"
    assert merged.origins["process.hostname"] == "--hostname"
    assert merged.origins["filesystem.mounts"][-1] == "--tmpfs /x"
    assert merged.data["filesystem"]["mounts"][-1] == {"tmpfs": "/x"}


def test_every_shipped_profile_resolves_and_describes_itself(profiles):
    from jailpy.profile.commands import list_profiles

    shipped = [e for e in list_profiles(profiles.env) if e.source == "shipped"]
    names = {e.name for e in shipped}
    assert {"default", "minimal", "strict"} <= names
    for entry in shipped:
        assert not entry.broken and not entry.description.startswith("("), entry
        profiles.policy(entry.name)
