"""The `profiles` fixture for unit tests of the profile machinery: no kernel, no
test user. Imported by the test modules that use it (not a conftest.py, which
would shadow tests/conftest.py for `from conftest import ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jailpy.errors import ConfigError
from jailpy.policy import Caller


class Profiles:
    """A scratch search path: write profiles, resolve them, expect errors."""

    def __init__(self, root: Path):
        self.root = root
        self.user_dir = root / "config" / "jailpy" / "profiles"
        self.user_dir.mkdir(parents=True)
        self.env = {"HOME": str(root / "home"), "USER": "alice",
                    "XDG_CONFIG_HOME": str(root / "config"), "PATH": "/usr/bin"}

    def write(self, name: str, text: str, where: Path | None = None) -> Path:
        path = (where or self.user_dir) / (name if name.endswith(".toml") else f"{name}.toml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def merged(self, ref: str, overrides=None):
        from jailpy.profile import resolve

        return resolve(ref, Caller(1000, 1000, self.env, "/work"), overrides)

    def policy(self, ref: str, overrides=None):
        from jailpy.profile import resolve_policy

        return resolve_policy(ref, Caller(1000, 1000, self.env, "/work"), overrides)

    def error(self, ref: str, overrides=None) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            self.policy(ref, overrides)
        return info.value


@pytest.fixture
def profiles(tmp_path: Path) -> Profiles:
    return Profiles(tmp_path)
