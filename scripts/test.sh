#!/usr/bin/env bash
# Set up the machine (scripts/setup.sh) and run the whole test suite.
# Run as root on a fresh Debian machine; integration tests run jailpy as the
# unprivileged test user. Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup.sh"
venv=${JAILPY_VENV:-/opt/jailpy/venv}
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
