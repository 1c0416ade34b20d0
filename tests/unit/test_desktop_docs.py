"""Every desktop key and switch is documented where users look for it.

A drift test: the schema and the click options are the sources; the man
pages must describe each of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jailpy.cli.commands import main
from jailpy.cli.options import DESKTOP_OPTIONS
from jailpy.profile.schema import SCHEMA

REPO = Path(__file__).resolve().parent.parent.parent


def _man(name: str) -> str:
    # roff escapes dashes; compare against the plain text.
    return (REPO / "man" / name).read_text().replace("\\-", "-")


@pytest.mark.parametrize("key", sorted(SCHEMA["desktop"]))
def test_profile_key_documented(key):
    # Documented as a tag line (.BR key ...) of the [desktop] section.
    section = _man("jailpy-profile.5").split(".SH [desktop]")[1].split(".SH ")[0]
    assert re.search(rf"^\.BR .*(?<!\w){key}(?!\w)", section, re.M), \
        f"desktop.{key} missing from jailpy-profile(5)"


def _desktop_flags() -> list[str]:
    flags = []
    for opt in DESKTOP_OPTIONS:
        flags += list(opt.flags) + ([opt.off] if opt.off else [])
    return flags


@pytest.mark.parametrize("flag", _desktop_flags())
def test_run_switch_documented(flag):
    options = {opt for p in main.commands["run"].params for opt in (*p.opts, *p.secondary_opts)}
    assert flag in options
    assert flag in _man("jailpy.1"), f"{flag} missing from jailpy(1)"


@pytest.mark.parametrize("command", ["wrap", "unwrap"])
def test_wrap_commands_documented(command):
    page = _man("jailpy.1")
    # a subsection of COMMANDS (test_man_pages.py checks its options in it)
    assert re.search(rf"^\.SS jailpy {command} ", page, re.M), f"no .SS for {command}"
    for param in main.commands[command].params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert opt in page, f"{command} {opt} missing from jailpy(1)"
