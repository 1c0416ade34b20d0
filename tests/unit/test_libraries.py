"""The ELF reader behind the firejail import's private-lib (profile/libraries.py),
checked against the dynamic loader itself (ldd) on this machine's programs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from jailpy.profile import libraries


def ldd(program: str) -> set[str]:
    """The files ld.so loads for `program`, by ldd (ld.so --list), resolved."""
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        words = line.split()
        path = words[words.index("=>") + 1] if "=>" in words else (words or [""])[0]
        if path.startswith("/"):
            found.add(os.path.realpath(path))
    return found


@pytest.mark.skipif(shutil.which("ldd") is None, reason="no ldd to compare with")
@pytest.mark.parametrize("path", ["/usr/bin/ls", "/usr/bin/python3", "/usr/bin/gio",
                                  "/usr/bin/xdotool"])
def test_closure_is_what_the_dynamic_loader_loads(path):
    assert os.path.isfile(path), f"{path} is installed by scripts/setup.sh"
    found, missing = libraries.Resolver().closure([path])
    assert {os.path.realpath(p) for p in found} == ldd(path)
    assert missing == []


def test_scripts_are_followed_to_their_interpreter(tmp_path):
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env xdotool\n")
    found, _ = libraries.Resolver().closure([str(script)])
    assert {os.path.realpath(p) for p in found} == ldd("/usr/bin/env") | ldd(
        shutil.which("xdotool"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_malformed_files_are_not_elf_and_never_raise(tmp_path_factory, tail):
    path = tmp_path_factory.mktemp("elf") / "f"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + tail)
    elf = libraries.read_elf(str(path))
    assert elf is None or isinstance(elf.needed, tuple)


def test_truncated_real_library_reads_as_not_elf_or_partial(tmp_path):
    real = open("/usr/lib/x86_64-linux-gnu/libc.so.6", "rb").read()
    cut = tmp_path / "libc.so.6"
    cut.write_bytes(real[:200])
    elf = libraries.read_elf(str(cut))
    assert elf is None or elf.needed == ()
