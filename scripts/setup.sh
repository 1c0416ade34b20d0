#!/usr/bin/env bash
# Prepare a fresh Debian machine for jailpy (run as root):
#   - system packages: build deps for python-prctl, the network helpers, and the
#     programs the tests and benchmarks drive (Xvfb, dbus, bwrap, firejail, ...);
#   - an unprivileged test user with a subordinate id range;
#   - a venv built from /usr/bin/python3 in a world-readable place, with jailpy
#     installed from this checkout (not editable: the checkout's path may not be
#     readable by the test user);
#   - machine set-up the tests rely on: /dev/net/tun 0666 (desktop default),
#     a delegated cgroup parent for the test user.
# Idempotent: a second run only reinstalls jailpy.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${JAILPY_VENV:-/opt/jailpy/venv}
user=${JAILPY_TEST_USER:-jailpy-test}

packages=(
  python3 python3-venv python3-dev gcc libc6-dev make libcap-dev libseccomp2 uidmap
  slirp4netns passt iproute2 bubblewrap firejail firejail-profiles hyperfine iperf3
  xvfb x11-apps x11-utils xdotool imagemagick dbus xdg-dbus-proxy procps util-linux
  xauth python3-dbus python3-gi weston wayland-utils pulseaudio pulseaudio-utils pipewire pipewire-bin
  python3-setuptools python3-wheel python3-pip python3-pytest
  # The desktop apps the shipped profiles are tested with (tests/integration/
  # test_desktop_apps.py): about 1 GB unpacked, about 70 s to install.
  firefox-esr chromium libreoffice-writer evince mpv
  # `gio launch`: starts a menu entry the way a desktop menu does.
  libglib2.0-bin
  pipx bash-completion man-db zsh fish python3-hatchling python3-build
  # jailpy inside a rootless container (tests/security/test_nesting.py): bookworm's
  # crun refuses hybrid cgroup v1 hosts, so the test runs podman with runc.
  podman runc
  # `jailpy learn` runs the command under strace (docs/learn.md).
  strace
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! id "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
fi
grep -q "^$user:" /etc/subuid 2>/dev/null || usermod --add-subuids 200000-265535 "$user"
grep -q "^$user:" /etc/subgid 2>/dev/null || usermod --add-subgids 200000-265535 "$user"

# Rootless slirp4netns/pasta open /dev/net/tun as the user; desktop systems ship 0666.
[ -e /dev/net/tun ] && chmod 0666 /dev/net/tun

if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/pip" install -q hatchling pytest hypothesis
"$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$here"
"$venv/bin/pip" install -q "$here[serve]"  # dependencies, if any are missing; the serve extra
# The oldest click pyproject.toml allows, beside the venv (installed once: ~1 MB, ~2 s): the
# tests put it first on PYTHONPATH to run the same installed jailpy with it.
[ -d "$venv/click-oldest" ] ||
  "$venv/bin/pip" install -q --no-deps --target "$venv/click-oldest" "click==8.1.0"
chmod -R a+rX "$(dirname "$venv")"

# Optional machine set-up hooks (cgroup delegation, ...) live beside this script.
for hook in "$here"/scripts/setup.d/*.sh; do
  [ -e "$hook" ] && JAILPY_TEST_USER=$user bash "$hook"
done
echo "setup: jailpy installed in $venv; test user: $user"
