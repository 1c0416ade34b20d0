"""Network settings as data: publish specs, profile conversion, generated files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jailpy.errors import ConfigError
from jailpy.plan.network import DATA_KIND, generated_files
from jailpy.profile.network import network_from_profile, parse_publish
from jailpy.plan import Caller, build_plan
from jailpy.policy import Filesystem, MountOp, Namespaces, Network, Policy, PortMapping, Process
from jailpy.profile.schema import SCHEMA
from jailpy.cli.options import RUN_OPTIONS


def test_publish_specs():
    assert parse_publish("8080:80", "o") == PortMapping("tcp", "127.0.0.1", 8080, 80, "o")
    assert parse_publish("0.0.0.0:5353:53/udp", "o") == PortMapping("udp", "0.0.0.0", 5353, 53,
                                                                     "o")
    assert parse_publish("10.1.2.3:1:2/TCP", "o").proto == "tcp"


@pytest.mark.parametrize("spec, message", [
    ("8080", "bad port mapping"), ("1:2:3:4", "bad port mapping"),
    ("8080:80/sctp", "bad protocol 'sctp'"), ("0:80", "bad host port '0'"),
    ("8080:70000", "bad sandbox port '70000'"), ("x:80", "bad host port 'x'"),
    ("localhost:8080:80", "bad host address 'localhost'"),
    ("1.2.3.256:8080:80", "bad host address"), ("[::1]:8080:80", "IPv6 host addresses"),
])
def test_bad_publish_specs_name_their_origin(spec, message):
    with pytest.raises(ConfigError) as info:
        parse_publish(spec, "--publish " + spec)
    assert message in info.value.message
    assert info.value.origin == "--publish " + spec


def test_profile_conversion_and_conflicts():
    net = network_from_profile({"mode": "pasta", "publish": ["8080:80"], "host_loopback": True,
                                "allow_connect_tcp": [443], "best_effort": True},
                               {"network.publish": ["f: network.publish[0]"],
                                "network.allow_connect_tcp": ["f: network.allow_connect_tcp[0]"]})
    assert net == Network(mode="pasta", host_loopback=True,
                          publish=(PortMapping("tcp", "127.0.0.1", 8080, 80,
                                               "f: network.publish[0]"),),
                          allow_connect_tcp=(443,), allow_bind_tcp=None, best_effort=True,
                          origins=(("allow_connect_tcp", "f: network.allow_connect_tcp[0]"),))
    with pytest.raises(ConfigError, match="publishing ports needs"):
        network_from_profile({"mode": "host", "publish": ["1:2"]}, {})
    with pytest.raises(ConfigError, match="host_loopback = true needs"):
        network_from_profile({"host_loopback": True}, {})
    with pytest.raises(ConfigError, match="published twice"):
        network_from_profile({"mode": "slirp4netns", "publish": ["1:2", "127.0.0.1:1:3"]}, {})
    # Same port, other protocol: fine.
    network_from_profile({"mode": "slirp4netns", "publish": ["1:2", "1:2/udp"]}, {})
    assert network_from_profile({"allow_bind_tcp": []}, {}).allow_bind_tcp == ()


def _policy(mode: str, ops=(), mount=True, hostname="box") -> Policy:
    return Policy(namespaces=Namespaces(mount=mount), filesystem=Filesystem(ops=tuple(ops)),
                  process=Process(hostname=hostname), network=Network(mode=mode))


def test_generated_files_only_for_helper_modes_and_after_the_profiles_ops():
    assert generated_files(_policy("none"), "box") == ()
    assert generated_files(_policy("host"), "box") == ()
    assert generated_files(_policy("slirp4netns", mount=False), "box") == ()
    files = generated_files(_policy("pasta"), "box")
    assert [(op.kind, op.dest) for op in files] == [(DATA_KIND, "/etc/resolv.conf"),
                                                   (DATA_KIND, "/etc/hosts")]
    assert "nameserver 10.0.2.3\n" in files[0].content
    assert "127.0.1.1\tbox\n" in files[1].content
    mine = MountOp(kind="ro-bind", source="/x", dest="/etc/resolv.conf")
    kept = generated_files(_policy("slirp4netns", ops=[mine]), "box")
    assert [op.dest for op in kept] == ["/etc/hosts"]


def test_plan_appends_generated_files_and_carries_the_network():
    caller = Caller(uid=1000, gid=1000, env={}, cwd="/", cwd_identity=None)
    ops = [MountOp(kind="ro-bind", source="/etc", dest="/etc")]
    plan = build_plan(_policy("slirp4netns", ops=ops), ["true"], caller)
    assert [op.dest for op in plan.mount_ops] == ["/etc", "/etc/resolv.conf", "/etc/hosts"]
    assert plan.network.mode == "slirp4netns"
    assert build_plan(_policy("none", ops=ops), ["true"], caller).mount_ops == tuple(ops)


def test_landlock_rules_let_the_generated_files_be_read():
    caller = Caller(uid=1000, gid=1000, env={}, cwd="/", cwd_identity=None)
    plan = build_plan(_policy("pasta"), ["true"], caller)
    rules = {r.path: r.access for r in plan.landlock.paths}
    assert rules["/etc/resolv.conf"] == frozenset({"read"})
    assert rules["/etc/hosts"] == frozenset({"read"})


def _explained(network: Network, mount: bool = True) -> list[str]:
    from jailpy.report.network import explain_sections

    caller = Caller(uid=1000, gid=1000, env={}, cwd="/", cwd_identity=None)
    policy = Policy(namespaces=Namespaces(net=network.mode != "host"), network=network)
    [(title, lines)] = explain_sections(build_plan(policy, ["true"], caller))
    assert title == "network"
    return lines


def test_explain_lines():
    assert "HOST" in _explained(Network(mode="host"))[0]
    lines = _explained(Network(mode="slirp4netns", host_loopback=True,
                               allow_bind_tcp=(8080,), best_effort=True))
    assert "host 127.0.0.1 REACHABLE at 10.0.2.2" in lines
    assert lines[-1] == "tcp bind    only ports 8080 (Landlock, best effort)"


REPO = Path(__file__).resolve().parent.parent.parent
NETWORK_FLAGS = ("--net", "--publish", "--host-loopback", "--no-host-loopback",
                 "--allow-connect-tcp", "--allow-bind-tcp")


@pytest.mark.parametrize("key", sorted(SCHEMA["network"]))
def test_network_key_documented(key):
    page = (REPO / "man" / "jailpy-profile.5").read_text().replace("\\-", "-")
    section = page.split(".SH [network]")[1].split(".SH ")[0]
    assert re.search(rf"^\.BR {key} ", section, re.M), f"network.{key} missing from man page"
    assert key in (REPO / "docs" / "network.md").read_text()


@pytest.mark.parametrize("flag", NETWORK_FLAGS)
def test_network_flag_exists_and_is_documented(flag):
    assert any(flag in (*opt.flags, opt.off) for opt in RUN_OPTIONS)
    assert flag in (REPO / "man" / "jailpy.1").read_text().replace("\\-", "-")
