"""cli/bwrap.py's parser: bwrap's option set, positional semantics, its errors."""

from __future__ import annotations

import os

import pytest

from jailpy.cli import bwrap
from jailpy.cli.bwrap import BwrapError, parse, policy_of

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
    (["--perms", "9", "--dir", "/a", "x"], "Permissions 9 are not valid"),
    (["--hostname", "h", "x"], "Specifying --hostname requires --unshare-uts"),
    (["--overlay-src", "/a", "x"], "--overlay-src requires a following"),
    (["--exec-label", "l", "x"], "--exec-label not supported"),
    (["--seccomp", "x", "y"], "Invalid fd: x"),
])
def test_errors_read_like_bwrap(argv, message):
    with pytest.raises(BwrapError, match="^" + message.replace("(", r"\(")):
        parse(argv, {})


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
