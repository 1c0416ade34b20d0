#!/usr/bin/env bash
# Delegate a cgroup parent to the test user, as an administrator would for a
# CI runner (see docs/limits.md, "Delegating a cgroup parent"). Run as root by
# scripts/setup.sh with JAILPY_TEST_USER set; idempotent.
#
#   cgroup v1: /<controller mount>/jailpy/<user>, one per controller, chowned.
#   cgroup v2: /<v2 mount>/jailpy/<user> with memory, pids and cpu enabled for
#              its children, chowned, plus a leaf "runner" the test harness
#              starts jailpy in (v2 only moves processes within a subtree the
#              mover owns, so the caller must already live inside the parent).
set -euo pipefail
user=${JAILPY_TEST_USER:-jailpy-test}
group=$(id -gn "$user")

# mount point of the v1 hierarchy with controller $1, or of the v2 hierarchy ("")
mount_of() {
  awk -v want="$1" '{
    split($0, halves, " - "); split(halves[2], post, " ");
    if (want == "" && post[1] == "cgroup2") { print $5; exit }
    if (want != "" && post[1] == "cgroup") {
      n = split(post[3], opts, ",");
      for (i = 1; i <= n; i++) if (opts[i] == want) { print $5; exit }
    }
  }' /proc/self/mountinfo
}

own() {  # chown a delegated cgroup directory and the files a delegatee writes
  local dir=$1; shift
  chown "$user:$group" "$dir"
  for f in "$@"; do [ -e "$dir/$f" ] && chown "$user:$group" "$dir/$f"; done
  return 0
}

for ctrl in memory pids cpu; do
  mnt=$(mount_of "$ctrl")
  [ -n "$mnt" ] || continue
  mkdir -p "$mnt/jailpy/$user"
  own "$mnt/jailpy/$user" cgroup.procs tasks
done

v2=$(mount_of "")
if [ -n "$v2" ]; then
  mkdir -p "$v2/jailpy/$user/runner"
  for ctrl in memory pids cpu; do
    if grep -qw "$ctrl" "$v2/cgroup.controllers"; then
      echo "+$ctrl" > "$v2/cgroup.subtree_control"
      echo "+$ctrl" > "$v2/jailpy/cgroup.subtree_control"
    fi
  done
  own "$v2/jailpy/$user" cgroup.procs cgroup.threads cgroup.subtree_control
  own "$v2/jailpy/$user/runner" cgroup.procs cgroup.threads cgroup.subtree_control
fi
echo "setup: cgroup parents delegated to $user"
