"""Every privilege-layer key, option and seccomp group is documented (drift test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jailpy.cli.commands import main
from jailpy.profile.schema import SCHEMA
from jailpy.cli.options import RUN_OPTIONS
from jailpy.plan.seccomp import GROUPS

REPO = Path(__file__).resolve().parent.parent.parent


def _man(name: str) -> str:
    return (REPO / "man" / name).read_text().replace("\\-", "-")


@pytest.mark.parametrize("section,key", [(s, k) for s in ("capabilities", "seccomp", "landlock")
                                         for k in sorted(SCHEMA[s])])
def test_profile_key_documented(section, key):
    text = _man("jailpy-profile.5").split(f".SH [{section}]")[1].split(".SH ")[0]
    assert re.search(rf"^\.BR .*(?<!\w){key}(?!\w)", text, re.M), \
        f"{section}.{key} missing from jailpy-profile(5)"


def _flags() -> list[str]:
    ours = ("capabilities", "seccomp", "landlock")
    return [flag for opt in RUN_OPTIONS if (opt.key or "").partition(".")[0] in ours
            for flag in (*opt.flags, *([opt.off] if opt.off else []))]


@pytest.mark.parametrize("flag", _flags())
def test_run_option_documented(flag):
    options = {opt for p in main.commands["run"].params for opt in (*p.opts, *p.secondary_opts)}
    assert flag in options
    assert flag in _man("jailpy.1"), f"{flag} missing from jailpy(1)"


@pytest.mark.parametrize("flag", ["--seccomp", "--landlock", "--export-bpf"])
def test_profile_show_options_documented(flag):
    show = main.commands["profile"].commands["show"]
    assert flag in {opt for p in show.params for opt in p.opts}
    assert flag in _man("jailpy.1").split("profile show")[1]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_seccomp_group_documented(group):
    assert group in _man("jailpy-profile.5")
