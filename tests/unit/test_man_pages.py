"""The man pages cannot drift from the code: every CLI option and every schema
key must be documented, in the right place, and the examples must be valid."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from jailpy.cli.commands import main
from jailpy.profile import schema
from profile_env import profiles  # noqa: F401  (fixture)

MAN = Path(__file__).resolve().parents[2] / "man"


def _text(name: str) -> str:
    """The page with roff escapes for '-', quotes and backslash undone."""
    raw = (MAN / name).read_text()
    return (raw.replace("\\-", "-").replace("\\(dq", '"').replace("\\e", "\\")
            .replace("\\fI", "").replace("\\fR", "").replace("\\fB", ""))


def _sections(text: str, macro: str) -> dict[str, str]:
    """Heading -> body for `.SH`/`.SS` headings (body up to the next one of the same level
    or higher)."""
    levels = ("SH",) if macro == "SH" else ("SH", "SS")
    pattern = re.compile(r"^\.(%s) (.*)$" % "|".join(levels), re.M)
    found: dict[str, str] = {}
    matches = list(pattern.finditer(text))
    for i, match in enumerate(matches):
        if match.group(1) != macro:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        found[match.group(2).strip().strip('"')] = text[match.end():end]
    return found


def _commands(group: click.Group, prefix: str = "jailpy"):
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


def _options(command: click.Command) -> list[str]:
    return [opt for p in command.params if isinstance(p, click.Option)
            for opt in (*p.opts, *p.secondary_opts) if opt not in ("-h", "--help")]


def _word(word: str, text: str) -> bool:
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text) is not None


def test_every_command_and_option_is_in_jailpy_1():
    text = _text("jailpy.1")
    sections = _sections(text, "SH")
    subsections = _sections(text, "SS")
    run_options = sections["RUN OPTIONS"]
    missing = []
    for path, command in _commands(main):
        heading = next((h for h in subsections if h == path or h.startswith(path + " ")), None)
        if heading is None:
            missing.append(f"command '{path}' has no .SS heading")
            continue
        where = run_options if path == "jailpy run" else subsections[heading]
        missing += [f"{path} {opt}" for opt in _options(command) if not _word(opt, where)]
    missing += [f"jailpy {opt}" for opt in ("--version", "--help", "-h")
                if not _word(opt, sections["GLOBAL OPTIONS"])]
    assert not missing, "undocumented in man/jailpy.1: " + ", ".join(missing)


def test_every_schema_key_is_in_jailpy_profile_5():
    text = _text("jailpy-profile.5")
    sections = _sections(text, "SH")
    missing = []
    for name, spec in schema.SCHEMA.items():
        if isinstance(spec, schema.Field):
            if not _word(name, sections["TOP-LEVEL KEYS"]):
                missing.append(name)
            continue
        body = sections.get(f"[{name}]")
        if body is None:
            missing.append(f"[{name}] section")
            continue
        missing += [f"{name}.{key}" for key in spec if not _word(key, body)]
    fs = sections["[filesystem]"]
    op_keys = {*schema.MOUNT_KEYS, *schema.TRY_KEYS, *schema.MOUNT_OPTION_KEYS}
    missing += [f"mount op key {key}" for key in sorted(op_keys) if not _word(key, fs)]
    assert not missing, "undocumented in man/jailpy-profile.5: " + ", ".join(missing)


def test_every_variable_is_in_jailpy_profile_5():
    from jailpy.policy import Caller
    from jailpy.profile.expand import standard_variables

    body = _sections(_text("jailpy-profile.5"), "SH")["VARIABLES"]
    names = [*standard_variables(Caller(1000, 1000, {"HOME": "/h"}, "/"), "/p")]
    assert [n for n in names if "${%s}" % n not in body] == []


def test_every_shipped_profile_is_in_both_pages():
    from jailpy.profile.loader import shipped_profiles_dir

    shipped = _sections(_text("jailpy-profile.5"), "SH")["SHIPPED PROFILES"]
    files = _sections(_text("jailpy.1"), "SH")["FILES"]
    for path in shipped_profiles_dir().glob("*.toml"):
        assert _word(path.stem, shipped), path.stem
        assert _word(path.stem, files), path.stem


def test_profile_examples_in_the_man_page_are_valid(profiles):
    text = _text("jailpy-profile.5")
    blocks = re.findall(r"^\.nf\n(.*?)^\.fi", text, re.M | re.S)
    examples = [b for b in blocks if "=" in b and not b.lstrip().startswith("jailpy ")]
    assert len(examples) >= 3
    for i, block in enumerate(examples):
        path = profiles.write(f"example{i}", block)
        profiles.policy(str(path))


@pytest.mark.parametrize("page", ["jailpy.1", "jailpy-profile.5"])
def test_pages_render_without_warnings(page):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed; cannot lint the man pages")
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN / page)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    if shutil.which("man") is not None:
        shown = subprocess.run(["man", "-l", str(MAN / page)], capture_output=True, text=True,
                               timeout=30, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin",
                                                "MANPAGER": "cat", "PAGER": "cat"})
        assert shown.returncode == 0, shown.stderr
        assert "SEE ALSO" in shown.stdout
