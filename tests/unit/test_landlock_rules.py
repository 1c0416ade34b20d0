"""Landlock rules derived from the mount plan, and the ABI decision (no sandbox)."""

from __future__ import annotations

import pytest

from jailpy.errors import ConfigError, UnsupportedError
from jailpy.plan.landlock import EXECUTE, IOCTL, LIST, READ, WRITE, derive
from jailpy.linux import landlock as ll
from jailpy.policy import Filesystem, LandlockPolicy, MountOp, Namespaces, Network, Policy
from jailpy.runtime.landlock import decide


def policy(*ops: MountOp, root_readonly: bool = True, **landlock) -> Policy:
    return Policy(filesystem=Filesystem(ops=ops, root_readonly=root_readonly),
                  landlock=LandlockPolicy(**landlock))


def rights(p: Policy) -> dict[str, frozenset[str]]:
    rules = derive(p)
    assert rules is not None
    return {r.path: r.access for r in rules.paths}


def test_rights_follow_mount_kinds():
    got = rights(policy(MountOp("ro-bind", "/usr", "/usr"), MountOp("bind", "/w", "/src"),
                        MountOp("tmpfs", "/tmp"), MountOp("proc", "/proc"),
                        MountOp("dev", "/dev"), MountOp("dev-bind", "/dev/dri", "/dev/dri")))
    assert got["/"] == {LIST}
    assert got["/usr"] == {READ, EXECUTE}
    assert got["/w"] == {READ, WRITE, EXECUTE}
    assert got["/tmp"] == {READ, WRITE, EXECUTE}
    assert got["/proc"] == {READ, WRITE}
    assert got["/dev"] == {READ, WRITE, IOCTL}
    assert got["/dev/shm"] == {READ, WRITE, EXECUTE}
    assert got["/dev/dri"] == {READ, WRITE, EXECUTE, IOCTL}


def test_later_op_on_same_destination_wins_and_remount_ro_drops_write():
    got = rights(policy(MountOp("bind", "/data", "/a"), MountOp("ro-bind", "/data", "/b"),
                        MountOp("tmpfs", "/scratch"), MountOp("remount-ro", "/scratch")))
    assert got["/data"] == {READ, EXECUTE}
    assert got["/scratch"] == {READ, EXECUTE}


def test_writable_root_and_explicit_rules():
    got = rights(policy(root_readonly=False, read=("/srv",), write=("/out",),
                        execute=("/opt/bin",)))
    assert got["/"] == {READ, WRITE, EXECUTE}
    assert got["/srv"] == {READ} and got["/out"] == {READ, WRITE}
    assert got["/opt/bin"] == {READ, EXECUTE}


def test_from_mounts_false_keeps_only_explicit_rules():
    got = rights(policy(MountOp("tmpfs", "/tmp"), from_mounts=False, read=("/",)))
    assert got == {"/": {READ}}


def test_shared_mount_namespace_derives_everything():
    p = Policy(namespaces=Namespaces(mount=False), landlock=LandlockPolicy())
    assert rights(p) == {"/": {READ, WRITE, EXECUTE, IOCTL}}


def test_tcp_ports_merge_with_network_fields():
    p = Policy(landlock=LandlockPolicy(connect_tcp=(443,)),
               network=Network(allow_connect_tcp=(80,), allow_bind_tcp=(8080,)))
    rules = derive(p)
    assert rules.connect_tcp == (80, 443) and rules.bind_tcp == (8080,)
    assert derive(Policy()).connect_tcp is None


def test_disabled():
    assert derive(policy(enabled=False)) is None


def test_abi_lacking_a_required_feature_fails_closed():
    rules = derive(policy(scope_signals=True,
                          origins=(("scope_signals", "p.toml: landlock.scope_signals"),)))
    with pytest.raises(UnsupportedError) as info:
        decide(rules, 4)
    assert info.value.origin == "p.toml: landlock.scope_signals"
    assert "ABI 4" in str(info.value) and "needs ABI 6" in str(info.value)


def test_best_effort_drops_what_the_abi_lacks():
    rules = derive(policy(scope_signals=True, connect_tcp=(443,), best_effort=True))
    setup = decide(rules, 3)
    assert setup.scoped == 0 and setup.handled_net == 0 and setup.connect_tcp == ()
    assert setup.handled_fs == ll.fs_rights(3)
    assert decide(rules, 0, "no landlock") is None


def test_no_landlock_at_all_fails_unless_best_effort():
    with pytest.raises(UnsupportedError, match="not available"):
        decide(derive(policy()), 0, "Landlock is built in but not enabled")


def test_full_abi_handles_everything():
    rules = derive(policy(MountOp("tmpfs", "/tmp"), scope_signals=True,
                          scope_abstract_unix=True, bind_tcp=(8080,)))
    setup = decide(rules, 7)
    assert setup.scoped == ll.SCOPE_SIGNAL | ll.SCOPE_ABSTRACT_UNIX_SOCKET
    assert setup.handled_net == ll.NET_BIND_TCP
    tmp = next(access for path, access, _, _ in setup.paths if path == "/tmp")
    assert tmp & ll.FS_WRITE_FILE and tmp & ll.FS_TRUNCATE and not tmp & ll.FS_IOCTL_DEV


def test_network_port_lists_keep_their_own_leniency():
    """Ports asked for by the network settings are required unless network.best_effort,
    even when the Landlock section itself is best-effort."""
    p = Policy(landlock=LandlockPolicy(best_effort=True),
               network=Network(allow_connect_tcp=(443,)))
    with pytest.raises(UnsupportedError) as info:
        decide(derive(p), 3)
    assert info.value.origin == "network.allow_connect_tcp"
    lenient = Policy(landlock=LandlockPolicy(best_effort=True),
                     network=Network(allow_connect_tcp=(443,), best_effort=True))
    assert decide(derive(lenient), 3).handled_net == 0


def test_network_ports_without_landlock_are_an_error():
    from jailpy.errors import ConfigError

    with pytest.raises(ConfigError, match="enforced with Landlock"):
        derive(Policy(landlock=LandlockPolicy(enabled=False),
                      network=Network(allow_bind_tcp=(8080,))))


def test_nesting_turns_landlock_off_and_refuses_port_lists():
    """A Landlock domain may not mount, so a nesting tree is not landlocked; the
    TCP port lists Landlock would enforce are refused rather than dropped."""
    nesting = Namespaces(nested=True)
    assert derive(Policy(namespaces=nesting, landlock=LandlockPolicy(enabled=True))) is None
    with pytest.raises(ConfigError, match="Landlock, which is turned off") as err:
        derive(Policy(namespaces=nesting, network=Network(allow_connect_tcp=(80,))))
    assert err.value.origin == "namespaces.nested"
