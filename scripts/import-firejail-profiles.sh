#!/usr/bin/env bash
# Regenerate the shipped profiles converted from firejail's (profiles/<app>.toml)
# from the installed firejail-profiles package (/etc/firejail):
#   bash scripts/import-firejail-profiles.sh [JAILPY]
# tests/integration/test_firejail.py checks the shipped files are what this
# writes from firejail-profiles 0.9.72 (its SHIPPED_FROM).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
jailpy=${1:-jailpy}  # a command, e.g. "python3 -m jailpy"
# The 20 most-used desktop apps firejail profiles that add to the hand-written
# profiles (firefox, chromium, libreoffice, evince and mpv are shipped already).
apps=(vlc thunderbird gimp inkscape transmission-gtk steam audacity eog totem rhythmbox
      gedit okular krita shotwell hexchat keepassxc telegram-desktop signal-desktop
      discord zoom)
for app in "${apps[@]}"; do
  $jailpy profile import-firejail "/etc/firejail/$app.profile" -o "$here/profiles/$app.toml" \
    2>/dev/null
done
