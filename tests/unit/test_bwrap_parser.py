"""cli/bwrap.py's parser: bwrap's option set, positional semantics, its errors."""

from __future__ import annotations

import os

import pytest

from jailpy.cli import bwrap
from jailpy.api import Sandbox
from jailpy.cli.bwrap import BwrapError, parse, policy_of
from jailpy.errors import ConfigError

#: bubblewrap 0.11's options (its --help), every one of which the parser must know.
BWRAP_0_11 = """--help --version --args --argv0 --level-prefix --unshare-all --share-net
--unshare-user --unshare-user-try --unshare-ipc --unshare-pid --unshare-net --unshare-uts
--unshare-cgroup --unshare-cgroup-try --userns --userns2 --disable-userns
--assert-userns-disabled --pidns --uid --gid --hostname --chdir --clearenv --setenv
--unsetenv --lock-file --sync-fd --bind --bind-try --dev-bind --dev-bind-try --ro-bind
--ro-bind-try --bind-fd --ro-bind-fd --remount-ro --overlay-src --overlay --tmp-overlay
--ro-overlay --exec-label --file-label --proc --dev --tmpfs --mqueue --dir --file --bind-data
--ro-bind-data --symlink --seccomp --add-seccomp-fd --block-fd --userns-block-fd --info-fd
--json-status-fd --new-session --die-with-parent --as-pid-1 --cap-add --cap-drop --perms
--size --chmod""".split()


def test_every_bwrap_option_is_known():
    assert sorted(set(BWRAP_0_11) - set(bwrap.OPTIONS)) == []


def _pipe(data: bytes) -> int:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def test_args_fd_splices_in_place_and_nests():
    inner = _pipe(b"--setenv\0B\x002\0")
    outer = _pipe(b"--setenv\0A\x001\0--args\0" + str(inner).encode() + b"\0")
    request = parse(["--args", str(outer), "--unsetenv", "A", "cmd"], {})
    assert request.env == {"B": "2"} and request.command == ["cmd"]


def test_perms_and_size_qualify_the_next_op_only():
    request = parse(["--perms", "0700", "--size", "4096", "--tmpfs", "/a", "--tmpfs", "/b",
                     "true"], {})
    first, second = request.ops
    assert (first.mode, first.size) == (0o700, 4096)
    assert (second.mode, second.size) == (None, None)


def test_environment_options_apply_in_order():
    request = parse(["--setenv", "A", "1", "--clearenv", "--setenv", "B", "2", "true"],
                    {"HOME": "/h"})
    assert request.env == {"B": "2"}


def test_overlay_sources_become_layers_top_last():
    request = parse(["--overlay-src", "/l1", "--overlay-src", "/l2", "--tmp-overlay", "/d",
                     "true"], {})
    (op,) = request.ops
    assert (op.kind, op.source, op.lower, op.dest) == ("tmp-overlay", "/l2", ("/l1",), "/d")


@pytest.mark.parametrize("argv, message", [
    (["--bogus", "x"], "Unknown option --bogus"),
    (["--bind", "/a"], "--bind takes two arguments"),
    (["--perms", "9", "--dir", "/a", "x"], "--perms takes an octal argument <= 07777"),
    (["--perms", "1", "--perms", "1", "--dir", "/a", "x"],
     "--perms given twice for the same action"),
    (["--perms", "1", "--bind", "/a", "/b", "x"],
     "--perms must be followed by an option that creates a file"),
    (["--size", "1", "--dir", "/a", "x"], "--size must be followed by --tmpfs"),
    (["--size", "123bogus", "--tmpfs", "/a", "x"], "--size takes a non-zero number of bytes"),
    (["--size", " -1", "--tmpfs", "/a", "x"], "--size takes a non-zero number of bytes"),
    (["--size", str(2 ** 64), "--tmpfs", "/a", "x"], "--size (for tmpfs) is limited to"),
    (["--hostname", "h", "x"], "Specifying --hostname requires --unshare-uts"),
    (["--overlay-src", "/a", "x"], "--overlay-src must be followed by another --overlay-src"),
    (["--overlay-src", "/a", "--chdir", "/", "x"], "--overlay-src must be followed by"),
    (["--overlay-src", "/a", "--ro-overlay", "/b", "x"],
     "--ro-overlay requires at least two --overlay-src"),
    (["--tmp-overlay", "/b", "x"], "--tmp-overlay requires at least one --overlay-src"),
    (["--exec-label", "l", "x"], "--exec-label not supported"),
    (["--seccomp", "x", "y"], "Invalid fd: x"),
    (["--as-pid-1", "x"], "Specifying --as-pid-1 requires --unshare-pid"),
    (["--unshare-pid", "--as-pid-1", "--lock-file", "/l", "x"],
     "Specifying --as-pid-1 and --lock-file is not permitted"),
    (["--disable-userns", "x"], "--disable-userns requires --unshare-user"),
    (["--unshare-user", "--userns", "3", "x"], "--userns not compatible --unshare-user"),
    (["--unshare-all", "--userns", "3", "x"], "--userns not compatible --unshare-user-try"),
    (["--unshare-user", "--unshare-user-try", "--userns", "3", "x"],
     "--userns not compatible --unshare-user"),
    # bwrap wants --unshare-user itself here: -try and --unshare-all do not count.
    (["--unshare-user-try", "--disable-userns", "x"],
     "--disable-userns requires --unshare-user"),
    (["--info-fd", "1", "--userns-block-fd", "0", "x"],
     "--userns-block-fd requires --unshare-user"),
    (["--unshare-all", "--info-fd", "1", "--userns-block-fd", "0", "x"],
     "--userns-block-fd requires --unshare-user"),
    (["--unshare-user", "--userns-block-fd", "0", "x"], "--userns-block-fd requires --info-fd"),
    (["--unshare-user", "--info-fd", "1", "--userns-block-fd", "0", "--disable-userns", "x"],
     "--disable-userns is not compatible with  --userns-block-fd"),
    (["--argv0", "a", "--argv0", "b", "x"], "--argv0 used multiple times"),
])
def test_errors_read_like_bwrap(argv, message):
    with pytest.raises(BwrapError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse(argv, {})


def test_repeated_single_value_options_warn_as_bwrap():
    request = parse(["--chdir", "/", "--uid", "1", "--chdir", "/a", "--unshare-user", "--uid",
                     "2", "true"], {})
    assert request.warnings == ["Only the last --chdir option will take effect",
                                "Only the last --uid option will take effect"]
    assert (request.chdir, request.uid) == ("/a", 2)


def test_data_options_have_bwrap_modes_and_relative_sources_are_the_callers():
    request = parse(["--file", str(_pipe(b"f")), "/f", "--bind-data", str(_pipe(b"b")), "/b",
                     "--ro-bind-data", str(_pipe(b"r")), "/r", "--bind", "rel", "/x",
                     "--size", "0x100000", "--tmpfs", "/t", "true"], {})
    modes = [(op.kind, op.mode) for op in request.ops[:3]]
    assert modes == [("file", 0o666), ("bind-data", 0o600), ("ro-bind-data", 0o600)]
    assert request.ops[3].source == os.path.join(os.getcwd(), "rel")
    assert request.ops[4].size == 0x100000


def test_namespace_fds_and_userns_options_reach_the_policy():
    policy = policy_of(parse(["--userns", "7", "--pidns", "8", "--userns2", "9", "true"], {}))
    process = policy.process
    assert (policy.namespaces.user, process.userns_fd, process.pidns_fd,
            process.userns_fd_after) == (False, 7, 8, 9)
    policy = policy_of(parse(["--unshare-user", "--disable-userns", "--unshare-pid",
                              "--as-pid-1", "true"], {}))
    assert policy.process.userns_disabled and policy.process.check_userns_disabled
    assert policy.limits.quotas == (("user_namespaces", 1),) and policy.process.as_pid_1


def test_userns_block_fd_leaves_the_id_maps_to_the_caller():
    request = parse(["--unshare-user", "--info-fd", "5", "--userns-block-fd", "6", "true"], {})
    assert (request.info_fd, request.userns_block_fd) == (5, 6)
    assert policy_of(request).process.ids_mapped_by_caller
    assert not policy_of(parse(["--unshare-user", "true"], {})).process.ids_mapped_by_caller
    # Through the API, such a policy needs the step that writes the maps.
    with pytest.raises(ConfigError) as err:
        Sandbox(policy_of(request)).run(["true"])
    assert err.value.origin == "process.ids_mapped_by_caller"


def test_info_and_status_fds_stay_with_the_supervisor():
    """As bwrap's child closes them: the command does not get them, and a reader of
    the info fd sees EOF once the supervisor has written it."""
    info, status = os.pipe()
    try:
        process = policy_of(parse(["--info-fd", str(info), "--json-status-fd", str(status),
                                   "true"], {})).process
        assert process.host_only_fds == (info, status)
        assert info not in process.pass_fds and status not in process.pass_fds
    finally:
        os.close(info)
        os.close(status)


def test_no_jailpy_defaults_leak():
    policy = policy_of(parse(["--unshare-net", "true"], {"A": "1"}))
    assert not policy.seccomp.enabled and not policy.landlock.enabled
    assert (policy.namespaces.net, policy.namespaces.pid, policy.namespaces.user) == (
        True, False, True)
    assert dict(policy.environment.set)["A"] == "1"
    assert not policy.filesystem.root_readonly and not policy.process.die_with_parent
    assert policy.limits.quotas == ()


def test_share_net_wins_over_unshare_all():
    request = parse(["--share-net", "--unshare-all", "true"], {})
    assert "net" not in request.namespaces and "pid" in request.namespaces


def test_bind_fd_binds_the_fds_path_and_names_the_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        (op,) = parse(["--ro-bind-fd", str(fd), "/x", "true"], {}).ops
    finally:
        os.close(fd)
    assert (op.kind, op.source, op.source_fd, op.dest) == ("ro-bind", str(tmp_path), fd, "/x")
