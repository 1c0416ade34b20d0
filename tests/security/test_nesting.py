"""Sandboxes inside a nesting sandbox (namespaces.nested, --allow-nesting), as the
unprivileged test user on the real kernel.

The positive side: what builds a sandbox (unshare -Urm, bwrap, jailpy itself)
works inside `jailpy run --allow-nesting`; each of these fails on a sandbox
without the setting (checked here too, so the setting is what makes them work).
The negative side: the nested sandbox never gets more than the outer one
shows: hidden host paths stay hidden (the inherited mounts are locked), the
outer seccomp filter's guards still apply, the host's processes stay invisible.
docs/security.md, "Nesting".
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from .conftest import SIGSYS_STATUS, parse

pytestmark = pytest.mark.integration

NEST = ("--allow-nesting",)


def nested(attack, *argv: str, options: tuple[str, ...] = NEST):
    """argv inside a sandbox with the helpers dir bound in (read-only)."""
    h = str(attack.helpers.dir)
    return attack.jailpy.run(["run", "--ro-bind", h, h, *options, "--", *argv])


def probe(attack, *args: str) -> list[str]:
    return ["python3", attack.helpers.probe, *args]


# -- building sandboxes inside -------------------------------------------------------------


UNSHARE_TMPFS = ["unshare", "-Urm", "sh", "-c",
                 "mount --make-rslave / && mount -t tmpfs nested /tmp && touch /tmp/made "
                 "&& ls /tmp && grep -q ' /tmp .* - tmpfs nested ' /proc/self/mountinfo "
                 "&& echo mounted"]


def test_unshare_urm_mounts_a_tmpfs(attack):
    result = nested(attack, *UNSHARE_TMPFS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["made", "mounted"]
    refused = nested(attack, *UNSHARE_TMPFS, options=("--allow-userns",))
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr


BWRAP = ["bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
         "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
         "--proc", "/proc", "--dev", "/dev", "--unshare-pid", "--",
         "sh", "-c", "ls /proc | grep -c '^[0-9]'; test -c /dev/null && echo dev-ok"]


def test_bwrap_with_proc_and_dev(attack):
    result = nested(attack, *BWRAP)
    assert result.returncode == 0, result.stderr
    # bwrap's own pid 1 and the shell (and ls/grep): its own pid namespace's procfs
    count, dev = result.stdout.split()
    assert int(count) <= 4 and dev == "dev-ok"
    refused = nested(attack, *BWRAP, options=("--allow-userns",))
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr


def test_jailpy_inside_jailpy_default_profile(attack):
    """The inner jailpy builds its whole default sandbox and its own layers hold there."""
    jailpy = attack.jailpy.binary
    inner = ["run", "--ro-bind", str(attack.helpers.dir), str(attack.helpers.dir), "--"]
    result = nested(attack, jailpy, *inner, "sh", "-c",
                    "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; hostname")
    assert result.returncode == 0, result.stderr
    assert "Seccomp:\t2" in result.stdout and "NoNewPrivs:\t1" in result.stdout
    assert result.stdout.split()[-1] == "jailpy"
    # the escape suite's core cases, against the inner sandbox
    for case, expected in ((("mount", "/tmp"), "EPERM"), (("unshare_user",), "EPERM"),
                           (("keyctl",), "EPERM"), (("tiocsti",), "EPERM")):
        verdict = parse(nested(attack, jailpy, *inner, *probe(attack, *case)).stdout)
        assert verdict == {"ok": False, "errno": expected}, (case, verdict)
    refused = nested(attack, jailpy, "run", "--", "true", options=("--allow-userns",))
    assert refused.returncode == 125, refused


def test_three_levels_deep(attack):
    """Three jailpy sandboxes, one inside the other; `jailpy check` in the second
    counts its user namespace depth (2) and the levels the kernel still allows."""
    jailpy = attack.jailpy.binary
    innermost = f"{jailpy} run -- sh -c 'grep Seccomp_filters /proc/self/status'"
    result = nested(attack, jailpy, "run", "--allow-nesting", "--", "sh", "-c",
                    f"{jailpy} check --json; {innermost}")
    assert result.returncode == 0, result.stderr
    rows, end = json.JSONDecoder().raw_decode(result.stdout)
    assert result.stdout[end:].split() == ["Seccomp_filters:", "3"]  # one filter per level
    depth = {row["feature"]: row["detail"] for row in rows}["user namespace"]
    assert depth.startswith("depth 2, nested") and "31 more levels allowed" in depth, depth


def _profile(user_tmp, test_user, text: str) -> str:
    from conftest import as_user_file

    return str(as_user_file(user_tmp / "p.toml", 'extends = ["default"]\n' + text, test_user))


def test_explain_shows_what_nesting_trades(attack, user_tmp, test_user):
    result = attack.jailpy.run(["run", "--allow-nesting", "--explain", "--", "true"])
    assert result.returncode == 0, result.stderr
    assert "landlock    off: namespaces.nested = true" in result.stdout
    path = _profile(user_tmp, test_user, "[namespaces]\nnested = true\n")
    listing = attack.jailpy.run(["profile", "show", "--seccomp", path]).stdout
    for call in ("mount ", "pivot_root ", "sethostname "):
        assert f"\n  {call}" not in listing, call
    assert "\n  setns " in listing and "\n  keyctl " in listing, listing


def test_profile_denying_mount_by_name_keeps_it_refused(attack, user_tmp, test_user):
    path = _profile(user_tmp, test_user,
                    '[namespaces]\nnested = true\n[seccomp]\ndeny = ["@mount"]\n')
    result = nested(attack, *UNSHARE_TMPFS, options=("--profile", path))
    assert result.returncode != 0 and "Operation not permitted" in result.stderr


READ_ONLY_PROC_SYS = ("bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                     "--ro-bind", "/proc/sys", "/proc/sys", "--")


def test_default_quotas_do_not_stop_a_run_under_a_read_only_proc_sys(attack, user_tmp,
                                                                      test_user):
    """Inside an outer sandbox whose /proc/sys is read-only (bwrap here; Docker, Podman
    and Flatpak do the same), jailpy's default quotas cannot be written: the run goes
    on with one warning (the outer namespace's quotas still count every object); a
    quota the profile asks for fails the run with one line; "inherit" asks for none."""
    jailpy = attack.jailpy
    # --share-pid: a new procfs is refused there too (mounts over /proc, see test_check...)
    script = "cat /proc/sys/user/max_inotify_instances"
    result = jailpy.raw([*READ_ONLY_PROC_SYS, jailpy.binary, "run", "--share-pid", "--",
                         "sh", "-c", script])
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "quotas" in line]
    assert len(warning) == 1 and "inotify_instances = 32" in warning[0], result.stderr
    assert "/proc/sys is read-only" in warning[0]
    asked = _profile(user_tmp, test_user, "[limits]\nquotas = { inotify_instances = 8 }\n")
    refused = jailpy.raw([*READ_ONLY_PROC_SYS, jailpy.binary, "run", "--share-pid", "-p",
                          asked, "--", "true"])
    assert refused.returncode == 125
    assert refused.stderr.startswith("jailpy: limits.quotas.inotify_instances: cannot set")
    assert "Traceback" not in refused.stderr
    none = _profile(user_tmp, test_user, '[limits]\nquotas = { inotify_instances = "inherit",'
                    ' inotify_watches = "inherit" }\n')
    quiet = jailpy.raw([*READ_ONLY_PROC_SYS, jailpy.binary, "run", "--share-pid", "-p", none,
                        "--", "true"])
    assert quiet.returncode == 0 and "quotas" not in quiet.stderr, quiet


# -- the outer sandbox still bounds the nested one --------------------------------------------


@pytest.fixture
def hidden_secret():
    """A host file in /var/tmp, which the default profile replaces with a tmpfs."""
    path = f"/var/tmp/jailpy-nest-secret-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write("host secret\n")
    subprocess.run(["chmod", "0644", path], check=True)
    yield path
    subprocess.run(["rm", "-f", path], check=True)


def test_hidden_host_paths_stay_hidden(attack, hidden_secret):
    assert attack.jailpy.raw(["cat", hidden_secret]).stdout == "host secret\n"  # counterpart
    script = (f"umount -l /var/tmp 2>/dev/null && echo unmounted; "
              f"mount --make-rprivate / 2>/dev/null; umount /var/tmp 2>/dev/null "
              f"&& echo unmounted; cat {hidden_secret} 2>/dev/null || echo hidden")
    result = nested(attack, "unshare", "-Urm", "sh", "-c", script)
    assert result.stdout.split() == ["hidden"], result
    inner = nested(attack, attack.jailpy.binary, "run", "--ro-bind", "/var/tmp", "/var/tmp",
                   "--", "sh", "-c", f"cat {hidden_secret} 2>/dev/null || echo hidden")
    assert inner.stdout.split()[-1] == "hidden", inner


def test_outer_tiocsti_guard_applies_inside(attack):
    """Inside a bare user namespace the outer filter still answers TIOCSTI with EPERM
    before the kernel looks (outside, with no terminal, the kernel says ENOTTY)."""
    outside = parse(attack.outside("tiocsti", wrap=("unshare", "-Urm")).stdout)
    assert outside == {"ok": False, "errno": "ENOTTY"}
    verdict = parse(nested(attack, "unshare", "-Urm", *probe(attack, "tiocsti")).stdout)
    assert verdict == {"ok": False, "errno": "EPERM"}


def test_outer_foreign_abi_guard_applies_inside(attack, helpers):
    binary = helpers.binary("i386_getpid")
    outside = attack.outside(program=binary, wrap=("unshare", "-Urm"))
    assert outside.returncode == 0 and parse(outside.stdout)["ok"] is True, outside
    result = nested(attack, "sh", "-c", f"unshare -Urm {binary}; echo status=$?")
    assert result.stdout.split() == [f"status={SIGSYS_STATUS}"], result


def test_outer_pid_namespace_hides_host_processes(attack):
    token = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**3}"
    victim = subprocess.Popen(attack.jailpy.user.command(["sleep", token]))
    try:
        # the procfs the nested namespace inherits shows the outer sandbox's pids
        script = "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'"
        result = nested(attack, "unshare", "-Urm", "sh", "-c", script)
        assert result.returncode == 0, result.stderr
        assert token not in result.stdout and "sh -c" in result.stdout
        assert int(result.stdout.split()[-1]) < 10
        assert token in attack.jailpy.raw(["ps", "-eo", "args"]).stdout  # counterpart
    finally:
        victim.kill()
        victim.wait()


def test_shipped_nested_profile_runs_sandboxes(attack):
    """ci-build's workspace, plus nesting: a sandbox started inside writes to it."""
    jailpy = attack.jailpy
    result = jailpy.run(["run", "-p", "nested", "--", "sh", "-c",
                         f"cat /proc/sys/user/max_user_namespaces; {jailpy.binary} run "
                         "--workspace . -- sh -c 'echo built > out'; cat out"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["256", "built"]


def test_check_describes_the_sandbox_it_runs_in(attack):
    """`jailpy check` inside: a default sandbox refuses nested namespaces (and has
    mounts over /proc), a nesting one does not; both have a filter and no_new_privs."""
    def rows(*options):
        result = nested(attack, attack.jailpy.binary, "check", "--json", options=options)
        return {row["feature"]: row for row in json.loads(result.stdout)
                if row["area"] == "nesting"}

    plain, nesting = rows(), rows(*NEST)
    assert plain["new procfs"]["status"] == "MISSING"
    assert "mounts over /proc/bus, /proc/irq, /proc/sys" in plain["new procfs"]["detail"]
    assert nesting["new procfs"]["status"] == "ok"
    assert plain["user namespace"]["detail"].startswith("depth unknown (at least 1), nested")
    assert "0 more levels allowed: then unshare(CLONE_NEWUSER) is refused here (Operation " \
        "not permitted" in plain["user namespace"]["detail"]
    assert nesting["user namespace"]["detail"].startswith("depth 1, nested")
    assert "32 more levels allowed" in nesting["user namespace"]["detail"]
    for found in (plain, nesting):
        assert found["seccomp filter in force"]["detail"].startswith("yes")
        assert found["no_new_privs"]["detail"].startswith("already set")
    outside = json.loads(attack.jailpy.run(["check", "--json"]).stdout)
    details = {row["feature"]: row["detail"] for row in outside}
    assert details["no_new_privs"].startswith("not")
    assert details["user namespace"].startswith("depth 0, the initial user namespace; 33 more")
