#!/bin/bash
# The long fuzz run for release checks (docs/architecture.md, "Fuzzing").
#
#   JAILPY_VENV=/opt/jailpy/venv bash scripts/fuzz-long.sh [CASES_PER_TEST] [SEED]
#
# Runs the property-based tests of tests/unit/test_profile_fuzz.py and
# tests/unit/test_cli_fuzz.py with CASES_PER_TEST examples each (default 30000:
# about 210,000 inputs over the seven generated tests, plus CASES/10 for the
# profile commands and at most 200 extends chains) from SEED (default: the
# date), in-process, never launching a sandbox; the two files run in parallel.
# A failure prints FUZZ_SEED and FUZZ_N: rerun with the same values to reproduce it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${JAILPY_VENV:-/opt/jailpy/venv}
export FUZZ_N=${1:-30000}
export FUZZ_SEED=${2:-$(date +%Y%m%d)}
echo "fuzz: FUZZ_N=$FUZZ_N per test, FUZZ_SEED=$FUZZ_SEED"
cd "$here"
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit/test_cli_fuzz.py \
  --hypothesis-show-statistics & cli=$!
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit/test_profile_fuzz.py \
  -k "never_crash or chains or round_trips" --hypothesis-show-statistics || status=1
wait $cli || status=1
exit $status
