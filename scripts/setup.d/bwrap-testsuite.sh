#!/usr/bin/env bash
# bubblewrap 0.11.0's own test suite, for tests/integration/test_bwrap_testsuite.py:
# fetched from the Debian archive apt uses here (pinned by SHA-256), unpacked into
# /opt/jailpy/bwrap-0.11.0-tests and its helpers built (scripts/bwrap-testsuite.sh
# --prepare). Run as root by scripts/setup.sh; idempotent (a built suite is kept).
set -euo pipefail
bash "$(dirname "$0")/../bwrap-testsuite.sh" --prepare
echo "setup: bubblewrap's test suite ready"
