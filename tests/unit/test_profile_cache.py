"""The parse cache: used only when fresh and trustworthy; never changes meaning."""

from __future__ import annotations

import marshal
import os
import time
from pathlib import Path

import pytest

from jailpy import usercache
from jailpy.profile import cache as cache_module
from jailpy.profile.cache import _FILE
from profile_env import profiles  # noqa: F401  (fixture)

OLD = time.time() - 3600


@pytest.fixture
def cached(profiles, tmp_path, monkeypatch):
    """Profiles with a private cache; files count as settled at once (the real
    two-second window would make every test wait; one test below checks it)."""
    profiles.env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    monkeypatch.setattr(cache_module, "_RACY_NS", -10**12)
    monkeypatch.setattr(usercache, "key_dir", lambda uid=None: str(tmp_path / "key"))
    monkeypatch.setattr(usercache, "_KEY", [])
    return profiles


def _write_old(profiles, name: str, text: str) -> Path:
    path = profiles.write(name, text)
    os.utime(path, (OLD, OLD))
    return path


def _hostname(profiles, ref: str) -> str:
    from jailpy.policy import Caller
    from jailpy.profile import resolve

    caller = Caller(1000, 1000, profiles.env, "/")
    return resolve(ref, caller, use_cache=True).data["process"]["hostname"]


def _cache_file(profiles) -> Path:
    return Path(profiles.env["XDG_CACHE_HOME"]) / "jailpy" / _FILE


def _entries(profiles) -> dict:
    return marshal.loads(_cache_file(profiles).read_bytes()[32:])["entries"]


def _sign(data: bytes) -> bytes:
    """An entry as one who holds the user's cache key writes it."""
    return usercache._hmac(usercache.cache_key(), _FILE.encode() + b"\0" + data) + data


def _tamper(profiles, path: Path, hostname: str, signed: bool = True) -> None:
    """Rewrite the cached document of `path` (as the key's owner could) to detect
    cache use; unsigned, as a sandbox of the same uid without the key could."""
    cache = _cache_file(profiles)
    data = marshal.loads(cache.read_bytes()[32:])
    key, doc = data["entries"][str(path)]
    data["entries"][str(path)] = (key, {**doc, "process": {"hostname": hostname}})
    raw = marshal.dumps(data)
    cache.write_bytes(_sign(raw) if signed else raw)


def test_cache_is_written_private_and_used(cached):
    path = _write_old(cached, "p", "[process]\nhostname = 'real'\n")
    assert _hostname(cached, "p") == "real"
    cache = _cache_file(cached)
    assert cache.stat().st_mode & 0o777 == 0o600
    assert cache.parent.stat().st_mode & 0o777 == 0o700
    _tamper(cached, path, "from-cache")
    assert _hostname(cached, "p") == "from-cache"  # proves the cache is consulted


def test_an_entry_without_the_users_key_is_ignored(cached):
    """Finding 1: the caller's uid (a sandbox) forges an entry for a profile it can
    stat; without the key kept outside every sandbox it is not believed."""
    path = _write_old(cached, "p", "[process]\nhostname = 'real'\n")
    assert _hostname(cached, "p") == "real"
    _tamper(cached, path, "forged", signed=False)
    assert _hostname(cached, "p") == "real"
    _tamper(cached, path, "other-key", signed=False)
    other = b"\1" * 32
    cache = _cache_file(cached)
    body = cache.read_bytes()
    cache.write_bytes(usercache._hmac(other, _FILE.encode() + b"\0" + body) + body)
    assert _hostname(cached, "p") == "real"


def test_a_changed_file_is_parsed_again(cached):
    path = _write_old(cached, "p", "[process]\nhostname = 'one'\n")
    assert _hostname(cached, "p") == "one"
    _tamper(cached, path, "stale")
    path.write_text("[process]\nhostname = 'second'\n")  # another size: same-tick safe
    assert _hostname(cached, "p") == "second"


def test_recently_modified_files_are_not_cached(cached, monkeypatch):
    monkeypatch.setattr(cache_module, "_RACY_NS", 2_000_000_000)
    _write_old(cached, "p", "[process]\nhostname = 'fresh'\n")  # old mtime, new ctime
    assert _hostname(cached, "p") == "fresh"
    assert not _cache_file(cached).exists()


@pytest.mark.parametrize("spoil", ["dir-mode", "file-mode", "symlink", "owner", "garbage"])
def test_untrusted_or_broken_cache_is_ignored(cached, tmp_path, spoil):
    path = _write_old(cached, "p", "[process]\nhostname = 'real'\n")
    _hostname(cached, "p")
    _tamper(cached, path, "planted")
    cache = _cache_file(cached)
    if spoil == "dir-mode":
        cache.parent.chmod(0o777)
    elif spoil == "file-mode":
        cache.chmod(0o666)
    elif spoil == "symlink":
        elsewhere = tmp_path / "elsewhere"
        cache.rename(elsewhere)
        cache.symlink_to(elsewhere)
    elif spoil == "owner":
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(cache, 65534, 65534)
    else:
        cache.write_bytes(b"\x00garbage")
    assert _hostname(cached, "p") == "real"


def test_cache_can_be_turned_off(cached):
    _write_old(cached, "p", "[process]\nhostname = 'x'\n")
    cached.env["JAILPY_NO_CACHE"] = "1"
    assert _hostname(cached, "p") == "x"
    assert not _cache_file(cached).exists()


def test_documents_with_dates_are_not_cached_but_still_load(cached):
    _write_old(cached, "p", "[process]\nhostname = 'x'\n")
    dated = _write_old(cached, "d", "extends = ['p']\ndescription = 'x'\n")
    _hostname(cached, "d")
    entries = _entries(cached)
    assert str(dated) in entries
    # a date value is a type error for every key, but parsing it must not break the cache
    bad = _write_old(cached, "bad", "extends = ['p']\ndescription = 1979-05-27\n")
    from jailpy.errors import ConfigError

    with pytest.raises(ConfigError):
        _hostname(cached, str(bad))
    assert str(bad) not in _entries(cached)
