"""bubblewrap 0.11.0's own test suite against `jailpy-bwrap` (issue 16's acceptance
check, docs/bwrap.md): scripts/bwrap-testsuite.sh runs each of its test scripts as
the unprivileged test user with BWRAP set to the front end of the venv under test,
and every case must pass, so a regression in the front end breaks the suite here.

scripts/setup.sh prepares the suite (scripts/setup.d/bwrap-testsuite.sh): the
upstream tarball from the Debian archive, checked against a pinned SHA-256.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import VENV

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bwrap-testsuite.sh"
#: The cases each script of bubblewrap 0.11.0's suite plans, in the order run.
PLANS = {"test-run.sh": 69, "test-specifying-userns.sh": 1, "test-specifying-pidns.sh": 1,
         "test-seccomp.py": 1, "test-utils": 26}
#: Skips the suite makes for the machine, the same for bwrap itself (docs/bwrap.md).
MACHINE_SKIPS = ("no FUSE support", "/dev/log is not a socket")


@pytest.mark.skipif(os.geteuid() != 0, reason="the suite script runs each test script as "
                    "the test user through runuser, which needs root")
def test_bubblewraps_own_suite_passes_against_the_front_end():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "JAILPY_VENV": str(VENV)})
    out = result.stdout
    last = out.strip().splitlines()[-1] if out.strip() else ""
    counts = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    failures = "\n".join(line for line in out.splitlines() if line.startswith("not ok"))
    assert counts, f"no count line (status {result.returncode}):\n{out}\n{result.stderr}"
    passed, failed = map(int, counts.groups())
    assert failed == 0 and result.returncode == 0, f"{failed} failed:\n{failures}"
    # Every case of the pinned suite ran: no script stopped early or skipped itself.
    plans = [int(n) for n in re.findall(r"^1\.\.(\d+)", out, re.MULTILINE)]
    assert plans == list(PLANS.values()) and passed == sum(PLANS.values()), out
    # The only skips are the suite's own for what this kind of machine lacks.
    skips = re.findall(r"^ok \d+ # SKIP(.*)$", out, re.MULTILINE)
    assert all(any(reason in skip for reason in MACHINE_SKIPS) for skip in skips), skips
