#!/usr/bin/env bash
# Run bubblewrap 0.11.0's own test suite against `jailpy-bwrap` (docs/bwrap.md).
#
#   bash scripts/bwrap-testsuite.sh [--prepare] [--reference] [BWRAP]
#
# Run as root. The suite comes from Debian's source package (bubblewrap_0.11.0.orig.tar.xz,
# the upstream release tarball), fetched from the Debian archive this machine's apt
# is configured with and checked against the SHA-256 below; it is unpacked into
# $BWRAP_SUITE_DIR (world-readable), and its helpers (try-syscall, test-utils) are built
# with gcc. Then each of its test scripts runs as the unprivileged test user with
# BWRAP=jailpy-bwrap (or BWRAP given), and their TAP output is printed as is.
#
#   --prepare     only fetch, verify, unpack and build (scripts/setup.d runs this)
#   --reference   also build bwrap 0.11.0 itself from the same tarball and run the
#                 suite against it first: what "the cases bwrap passes here" means
#
# The last line is the count over every TAP case: "N passed, N failed" (skips count as
# passed, as TAP says; they are listed with their reason; a script that skips all of
# its cases, as the suite does when the binary does not run, is one failure). Exit
# status 1 if any failed.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
version=0.11.0
tarball=bubblewrap_${version}.orig.tar.xz
# The upstream release tarball as Debian ships it (pool/main/b/bubblewrap).
sha256=988fd6b232dafa04b8b8198723efeaccdb3c6aa9c1c7936219d5791a8b7a8646
suite=${BWRAP_SUITE_DIR:-/opt/jailpy/bwrap-$version-tests}
venv=${JAILPY_VENV:-/opt/jailpy/venv}
user=${JAILPY_TEST_USER:-jailpy-test}

prepare_only=false
reference=false
bwrap=$venv/bin/jailpy-bwrap
for arg in "$@"; do
  case $arg in
    --prepare) prepare_only=true ;;
    --reference) reference=true ;;
    -*) echo "bwrap-testsuite: unknown option $arg" >&2; exit 2 ;;
    *) bwrap=$arg ;;
  esac
done

debian_archive() {
  # The Debian archive apt uses here (deb822 or one-line sources), without naming a host.
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
          2>/dev/null | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ')
  [ -n "$uri" ] || { echo "bwrap-testsuite: no Debian archive in apt's sources" >&2; exit 1; }
  echo "${uri%/}"
}

packages() {
  # What the suite needs besides the test set-up (scripts/setup.sh): its seccomp test
  # imports libseccomp's Python binding; libcap-dev only builds the reference bwrap.
  local missing=() p
  for p in curl xz-utils gcc libc6-dev libcap-dev python3-seccomp strace; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

prepare() {
  packages
  [ -x "$suite/tests/try-syscall" ] && [ -x "$suite/tests/test-utils" ] && return
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  curl -fsS -o "$work/$tarball" "$(debian_archive)/pool/main/b/bubblewrap/$tarball"
  echo "$sha256  $work/$tarball" | sha256sum --check --quiet -
  tar -xJf "$work/$tarball" -C "$work"
  local src=$work/bubblewrap-$version
  rm -rf "$suite" && mkdir -p "$suite/tests"
  cp "$src"/tests/*.sh "$src"/tests/*.py "$suite/tests/"
  cp -r "$src" "$suite/source"  # for --reference, and to read what a case does
  echo '#define PACKAGE_STRING "bubblewrap '"$version"'"' > "$suite/config.h"
  gcc -O2 -o "$suite/tests/try-syscall" "$src/tests/try-syscall.c"
  gcc -O2 -D_GNU_SOURCE -I"$suite" -I"$src" -o "$suite/tests/test-utils" \
    "$src/tests/test-utils.c" "$src/utils.c"
  chmod -R a+rX "$suite"
}

build_reference() {
  [ -x "$suite/bwrap" ] && return
  gcc -O2 -D_GNU_SOURCE -I"$suite" -I"$suite/source" -o "$suite/bwrap" \
    "$suite"/source/{bubblewrap,bind-mount,network,utils}.c -lcap
  chmod a+rx "$suite/bwrap"
}

passed=0
failed=0
run_suite() {
  # $1: the binary under test. Each script's TAP output, then a count of its cases.
  local binary=$1 script interpreter out
  for script in test-run.sh test-specifying-userns.sh test-specifying-pidns.sh \
                test-seccomp.py test-utils; do
    case $script in
      *.py) interpreter=(/usr/bin/python3 "$suite/tests/$script") ;;
      *.sh) interpreter=(bash "$suite/tests/$script") ;;
      *) interpreter=("$suite/tests/$script") ;;  # bwrap's utils.c, not the binary
    esac
    echo "# $script (BWRAP=$binary)"
    # To files, not $(...): a process a failing case leaves behind must not hold us.
    (cd /tmp && runuser -u "$user" -- env BWRAP="$binary" G_TEST_SRCDIR="$suite" \
       G_TEST_BUILDDIR="$suite" timeout 600 "${interpreter[@]}" >"$suite/$script.tap" \
       2>"$suite/$script.log") && status=0 || status=$?
    out=$(cat "$suite/$script.tap")
    echo "$out" | grep -E '^(ok|not ok|1\.\.)' || true
    local ok bad
    ok=$(echo "$out" | grep -cE '^ok ' || true)
    bad=$(echo "$out" | grep -cE '^not ok ' || true)
    if echo "$out" | grep -qE '^1\.\.0 # SKIP'; then
      # The whole script skipped: its first probe of the binary failed (a front end
      # that does not run at all would otherwise pass with nothing counted).
      bad=$((bad + 1))
      echo "not ok - $script skipped entirely: $(grep -E '^1\.\.0' <<<"$out")"
    elif [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
      # set -e in the script stopped it at a failing case: that case is the failure.
      bad=1
      echo "not ok - $script stopped (status $status): $(grep -v '^+' "$suite/$script.log" | tail -n1)"
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
  done
}

prepare
$prepare_only && exit 0
if $reference; then
  build_reference
  run_suite "$suite/bwrap"
  echo "# bwrap $version: $passed passed, $failed failed"
  passed=0
  failed=0
fi
run_suite "$bwrap"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
