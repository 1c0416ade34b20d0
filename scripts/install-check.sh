#!/usr/bin/env bash
# Follow README's "Install" section literally, as a fresh unprivileged account
# with no sudo, and check what it promises: `jailpy run -- true` and a shell,
# `man jailpy`, and tab completion in a new login shell. Run as root.
#
#   bash scripts/install-check.sh [pipx|venv]...   (default: both routes)
#
# The commands run are the fenced blocks of README.md marked
# `<!-- install: NAME -->`, so README and this check cannot drift apart.
# Network: pipx and pip fetch hatchling and jailpy's dependencies from the
# package index (python-prctl is built from its sdist with the administrator's
# gcc and headers); nothing else leaves the machine. One fresh account per
# route, removed afterwards.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
readme=$here/README.md
routes=("$@")
((${#routes[@]})) || routes=(pipx venv)

block() {  # the fenced block after `<!-- install: $1 -->` in README.md
  awk -v name="$1" '
    $0 == "<!-- install: " name " -->" { marked = 1; next }
    marked && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$readme"
}

fail() { echo "install-check: $*" >&2; exit 1; }

# What an administrator installs: README's Debian line, with apt-get's -y (this
# script is the administrator here, and has no terminal to answer apt's question).
admin=$(block admin-debian | sed 's/^sudo //; s/apt install/apt-get install -y -qq --no-install-recommends/')
[ -n "$admin" ] || fail "README.md has no admin-debian block"
DEBIAN_FRONTEND=noninteractive bash -ec "$admin" >/dev/null

# The packages: Debian 12's hatchling (1.12, the oldest pyproject.toml allows) builds
# both; the wheel carries the man pages, completions and LICENSE; the sdist's own
# unit tests pass from the unpacked sdist. (`build` checks build requirements
# transitively, and Debian does not package hatchling's `editables`, needed only
# for editable installs: hence --skip-dependency-check.)
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
/usr/bin/python3 -m build --no-isolation --skip-dependency-check --outdir "$dist" "$here" \
  >"$dist/build.log" 2>&1 || { cat "$dist/build.log" >&2; fail "building with Debian's hatchling failed"; }
listing=$(/usr/bin/python3 -m zipfile -l "$dist"/jailpy-*.whl)
for member in share/man/man1/jailpy.1 share/man/man5/jailpy-profile.5 \
    share/bash-completion/completions/jailpy share/zsh/site-functions/_jailpy \
    share/fish/vendor_completions.d/jailpy.fish dist-info/licenses/LICENSE; do
  [[ $listing == *"$member"* ]] || fail "the wheel lacks $member"
done
tar -xzf "$dist"/jailpy-*.tar.gz -C "$dist"
(cd "$dist"/jailpy-*/ && "${JAILPY_VENV:-/opt/jailpy/venv}/bin/python" -m pytest -q -p no:cacheprovider \
  tests/unit >"$dist/sdist-tests.log" 2>&1) ||
  { grep -E "^E " "$dist/sdist-tests.log" | head -5 >&2; tail -3 "$dist/sdist-tests.log" >&2; fail "the sdist's unit tests failed"; }
echo "install-check: packages ok (hatchling $(/usr/bin/python3 -c 'import importlib.metadata as m; print(m.version("hatchling"))'); wheel has man pages, completions, LICENSE; sdist unit tests pass)"
rm -rf "$dist"
trap - EXIT

for route in "${routes[@]}"; do
  user=jailpy-install-$route
  steps=$(block "$route")
  [ -n "$steps" ] || fail "README.md has no '$route' block"
  if id "$user" >/dev/null 2>&1; then userdel -r "$user" 2>/dev/null || true; fi
  useradd --create-home --shell /bin/bash "$user"
  trap 'userdel -r "$user" 2>/dev/null || true' EXIT
  home=$(getent passwd "$user" | cut -d: -f6)

  # The source directory as the user would have it: the files git tracks.
  mkdir "$home/jailpy"
  git -C "$here" ls-files -z | (cd "$here" && xargs -0 tar -cf - --no-recursion) |
    tar -xf - -C "$home/jailpy"
  chown -R "$user:" "$home/jailpy"

  as_user() {  # a login shell of the new user: ~/.profile and ~/.bashrc apply
    runuser -l "$user" -c "$1"
  }
  echo "install-check: $route route as $user"
  as_user "set -e; cd ~/jailpy; $steps" >"/tmp/install-check-$route.log" 2>&1 ||
    { cat "/tmp/install-check-$route.log" >&2; fail "$route: README's install steps failed"; }
  as_user "set -e; cd ~/jailpy; $(block completion)" ||
    fail "$route: README's completion steps failed"

  # README's "use" block, in a new login shell.
  as_user "set -e; cd ~; $(block use)" >"/tmp/install-check-$route-use.log" 2>&1 ||
    { cat "/tmp/install-check-$route-use.log" >&2; fail "$route: README's use steps failed"; }
  grep -q "jailpy run" "/tmp/install-check-$route-use.log" || fail "$route: man jailpy printed no page"
  status=0
  as_user 'cd ~; printf "test -w /usr; echo usr-writable=\$?; exit 3\n" | jailpy run -- bash' \
    >"/tmp/install-check-$route-bash.log" 2>&1 || status=$?
  [ "$status" = 3 ] && grep -q "usr-writable=1" "/tmp/install-check-$route-bash.log" ||
    fail "$route: jailpy run -- bash: status $status, $(cat "/tmp/install-check-$route-bash.log")"

  # Tab completion as bash does it: an interactive shell (bash-completion from
  # ~/.bashrc), the script loaded on demand, the completion function called.
  completion='
    __load_completion jailpy || { echo "no completion for jailpy"; exit 1; }
    mkdir -p ~/ctest/subdir && cd ~/ctest
    complete_line() {
      COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
      COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
      $(complete -p jailpy | sed "s/.*-F \([^ ]*\) .*/\1/") 2>/dev/null
      printf "%s\n" "${COMPREPLY[@]}"
    }
    complete_line jailpy run --net s | grep -qx slirp4netns || { echo "--net"; exit 1; }
    complete_line jailpy run --cap-keep CAP_NET_B | grep -qx CAP_NET_BIND_SERVICE || { echo "--cap-keep"; exit 1; }
    complete_line jailpy run --seccomp-deny @net | grep -qx @network-io || { echo "--seccomp-deny"; exit 1; }
    complete_line jailpy run -p mini | grep -qx minimal || { echo "--profile"; exit 1; }
    complete_line jailpy run --bind sub | grep -qx subdir || { echo "--bind SRC"; exit 1; }
    complete_line jailpy run -- bas | grep -qx bash || { echo "after --"; exit 1; }
    echo completion-ok'
  out=$(runuser -u "$user" -- env -i HOME="$home" USER="$user" TERM=dumb PATH="$home/.local/bin:/usr/bin:/bin" \
    bash -ic "$completion" 2>/dev/null) || true
  [[ $out == *completion-ok* ]] || fail "$route: bash completion: ${out:-nothing}"

  echo "install-check: $route route ok (jailpy run, jailpy run -- bash, man jailpy, completion)"
  userdel -r "$user" 2>/dev/null || true
  trap - EXIT
done
