#!/usr/bin/env bash
# Set up the machine and show jailpy's main job: a command run by an
# unprivileged user in the shipped default profile.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup.sh" >/dev/null
venv=${JAILPY_VENV:-/opt/jailpy/venv}
user=${JAILPY_TEST_USER:-jailpy-test}
cd /tmp
echo "\$ jailpy run -- sh -c 'id; hostname; ls /; touch /usr/evil'   (as $user)"
runuser -u "$user" -- "$venv/bin/jailpy" run -- sh -c \
  'id; hostname; ls /; echo "--- writing to /usr:"; touch /usr/evil; echo "exit status: $?"' || true
