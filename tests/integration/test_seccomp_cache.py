"""The compiled-filter cache: used when trusted, ignored otherwise, never imports
libseccomp on a hit. Runs the real CLI as the test user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run_traced(jailpy, cache_home: Path):
    """`jailpy run -- true` with -X importtime; returns (result, imported pyseccomp?)."""
    python = str(Path(jailpy.binary).parent / "python")
    result = jailpy.raw([python, "-X", "importtime", "-m", "jailpy", "run", "--", "true"],
                        env={"XDG_CACHE_HOME": str(cache_home)})
    assert result.returncode == 0, result.stderr
    imported = any(line.rstrip().endswith("| pyseccomp") for line in result.stderr.splitlines())
    return result, imported



@pytest.fixture
def cache_home(user_tmp, test_user) -> Path:
    home = user_tmp / "cache"
    home.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(home, test_user.uid, test_user.gid)
    return home


def entries(cache_home: Path) -> list[Path]:
    return sorted((cache_home / "jailpy").glob("*.bpf"))


def resign(entry: Path, body: bytes, test_user) -> None:
    """Write an entry as its owner's jailpy would: signed with the user's cache key
    (in the passwd home), so a test of what comes after the signature check is
    not stopped by it."""
    from jailpy.usercache import _hmac

    key = (Path(test_user.home) / ".cache" / "jailpy" / "key").read_bytes()
    entry.write_bytes(_hmac(key, entry.name.encode() + b"\0" + body) + body)


def test_hit_does_not_import_libseccomp(jailpy, cache_home, test_user):
    _, imported = run_traced(jailpy, cache_home)
    assert imported, "the first run must compile"
    [entry] = entries(cache_home)
    st = entry.stat()
    assert st.st_uid == test_user.uid and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE((cache_home / "jailpy").stat().st_mode) == 0o700
    _, imported = run_traced(jailpy, cache_home)
    assert not imported, "a cache hit must not import pyseccomp"


def test_entry_for_another_libseccomp_is_recompiled(jailpy, cache_home, test_user):
    """The entry records the libseccomp it was compiled with; another file is a miss."""
    from jailpy.runtime import seccomp

    run_traced(jailpy, cache_home)
    [entry] = entries(cache_home)
    data = entry.read_bytes()[32:]  # after the signature
    meta_len = int.from_bytes(data[40:42], "little")
    meta, program = data[42:42 + meta_len], data[42 + meta_len:]
    lines = meta.decode().split("\n")
    assert any("/libseccomp.so" in line.partition("\0")[0] for line in lines)
    path, _, ident = lines[0].partition("\0")
    dev, ino, size, mtime = ident.split(":")
    lines[0] = f"{path}\0{dev}:{ino}:{size}:{int(mtime) + 1}"  # as after an upgrade
    resign(entry, seccomp._encode_entry("\n".join(lines).encode(), program), test_user)
    _, imported = run_traced(jailpy, cache_home)
    assert imported, "a changed library must not reuse the old program"
    _, imported = run_traced(jailpy, cache_home)
    assert not imported


def test_tampered_entry_is_recompiled(jailpy, cache_home, test_user):
    run_traced(jailpy, cache_home)
    [entry] = entries(cache_home)
    data = bytearray(entry.read_bytes()[32:])
    data[-1] ^= 0xFF  # change the last instruction, keep owner and mode
    resign(entry, bytes(data), test_user)  # the checksum inside still catches it
    _, imported = run_traced(jailpy, cache_home)
    assert imported
    _, imported = run_traced(jailpy, cache_home)
    assert not imported, "the recompiled entry replaces the tampered one"


def test_group_writable_cache_dir_is_ignored(jailpy, cache_home):
    run_traced(jailpy, cache_home)
    (cache_home / "jailpy").chmod(0o777)
    for _ in range(2):
        _, imported = run_traced(jailpy, cache_home)
        assert imported


def test_entry_owned_by_someone_else_is_ignored(jailpy, cache_home):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the entry another owner")
    run_traced(jailpy, cache_home)
    [entry] = entries(cache_home)
    os.chown(entry, 0, 0)
    entry.chmod(0o644)
    _, imported = run_traced(jailpy, cache_home)
    assert imported


def test_symlinked_cache_dir_is_ignored(jailpy, cache_home, user_tmp):
    real = user_tmp / "elsewhere"
    real.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(real, jailpy.user.uid, jailpy.user.gid)
    (cache_home / "jailpy").symlink_to(real)
    for _ in range(2):
        _, imported = run_traced(jailpy, cache_home)
        assert imported
    assert list(real.iterdir()) == []


def test_entry_without_the_users_signature_is_ignored(jailpy, cache_home):
    """Issue 11: the caller's uid (a sandbox that could write here) copies an entry's
    body without the signature, or signs it with another key: a miss either way."""
    from jailpy.usercache import _hmac

    run_traced(jailpy, cache_home)
    [entry] = entries(cache_home)
    body = entry.read_bytes()[32:]
    for forged in (body, _hmac(b"\1" * 32, entry.name.encode() + b"\0" + body) + body):
        entry.write_bytes(forged)
        _, imported = run_traced(jailpy, cache_home)
        assert imported, "an entry not signed with the user's key was used"
