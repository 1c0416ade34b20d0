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

import errno
import json
import os
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
    # the escape suite against the inner sandbox: test_escape_suite_from_inside_the_nesting_tree
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
    explained = jailpy.raw([*READ_ONLY_PROC_SYS, jailpy.binary, "run", "--share-pid", "-p",
                            asked, "--explain", "--", "true"]).stdout
    assert "quota inotify_instances  8 UNAVAILABLE here: /proc/sys is read-only" in \
        explained.split("[cannot apply on this machine]")[1]
    assert "quota inotify_watches    16384 NOT SET HERE" in explained
    assert "Traceback" not in refused.stderr
    none = _profile(user_tmp, test_user, '[limits]\nquotas = { inotify_instances = "inherit",'
                    ' inotify_watches = "inherit" }\n')
    quiet = jailpy.raw([*READ_ONLY_PROC_SYS, jailpy.binary, "run", "--share-pid", "-p", none,
                        "--", "true"])
    assert quiet.returncode == 0 and "quotas" not in quiet.stderr, quiet


def test_outer_filter_refusing_sethostname(attack, user_tmp, test_user):
    """Podman's and Docker's default seccomp profiles refuse sethostname even in a
    new UTS namespace; an outer jailpy denying it by name stands in for them: check
    names it, the run fails with one line naming process.hostname, --share-uts works."""
    path = _profile(user_tmp, test_user,
                    '[namespaces]\nnested = true\n[seccomp]\ndeny = ["sethostname"]\n')
    jailpy = attack.jailpy.binary
    script = (f"{jailpy} check | grep 'nesting    hostname'; {jailpy} run -- true; "
              f"echo status=$?; {jailpy} run --share-uts -- echo shared")
    result = nested(attack, "sh", "-c", script, options=("--profile", path))
    assert result.stdout.split("\n")[0].startswith(
        "MISSING    nesting    hostname: sethostname in a new user+UTS namespace failed"), result
    assert result.stdout.split()[-2:] == ["status=125", "shared"], result
    assert "jailpy: process.hostname: sethostname failed: Operation not permitted" in \
        result.stderr.splitlines()


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
    assert plain["/proc/sys/user"]["detail"].startswith("read-only")
    assert nesting["/proc/sys/user"]["detail"].startswith("writable")
    assert plain["hostname"]["detail"].startswith("not tried")
    assert nesting["hostname"]["status"] == "ok"
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


# -- the escape suite, from inside the nesting tree ---------------------------------------------

#: Where each attack runs: on the host (the counterpart), in the nesting sandbox itself
#: ("outer"), as root of a user+mount namespace made inside it ("userns", the most a
#: process there can hold), and in jailpy's default profile started inside it ("inner").
POSITIONS = ("outside", "outer", "userns", "inner")
GOT_THROUGH = "ok"

#: attack -> the verdict in each POSITION: "ok" (it worked), the errno, or SIGSYS.
#: Every row works outside, or meets the kernel's own refusal there, so none can pass
#: by accident; docs/security.md, "Nesting", has the same table.
ESCAPE_MATRIX = {
    "ptrace a host process": ("ok", "EPERM", "EPERM", "EPERM"),
    "process_vm_readv a host process": ("ok", "EPERM", "EPERM", "EPERM"),
    "kill a host process": ("ok", "ESRCH", "ESRCH", "ESRCH"),
    "/proc/<host pid>/root": ("ok", "ENOENT", "ENOENT", "ENOENT"),
    "/proc/<host pid>/ns/*": ("ok", "ENOENT", "ENOENT", "ENOENT"),
    "setns to a leaked user namespace fd": ("ok", "EPERM", "EPERM", "EPERM"),
    # outside, name_to_handle_at works and open_by_handle_at needs CAP_DAC_READ_SEARCH
    "open_by_handle_at": ("EPERM", "name_to_handle_at/EPERM",
                          "name_to_handle_at/EPERM", "name_to_handle_at/EPERM"),
    "keyctl": ("ok", "EPERM", "EPERM", "EPERM"),
    "perf_event_open": ("ok", "EPERM", "EPERM", "EPERM"),
    "userfaultfd": ("ok", "EPERM", "EPERM", "EPERM"),
    "bpf": ("EINVAL", "EPERM", "EPERM", "EPERM"),
    "TIOCSTI (no terminal: ENOTTY where it reaches the driver)":
        ("ENOTTY", "EPERM", "EPERM", "EPERM"),
    "i386 syscall": ("ok", "SIGSYS", "SIGSYS", "SIGSYS"),
    "x32 syscall": ("ENOSYS", "SIGSYS", "SIGSYS", "SIGSYS"),
    "connect to a host abstract socket": ("ok", "ECONNREFUSED", "ECONNREFUSED",
                                          "ECONNREFUSED"),
    "connect to a host TCP listener": ("ok", "ECONNREFUSED", "ECONNREFUSED", "ECONNREFUSED"),
    "read a leaked fd of /etc/shadow": ("ok", "EBADF", "EBADF", "EBADF"),
    "read a host file the profile hides": ("ok", "ENOENT", "ENOENT", "ENOENT"),
    "write below a read-only bind": ("ok", "EROFS", "EROFS", "EROFS"),
    # a user may not remount on the host; as root of a user+mount namespace of its own
    # ("userns") it may, but not an inherited read-only bind (test_escapes.py shows the
    # same remount working on a bind made in that namespace)
    "remount a read-only bind read-write": ("mount: EPERM/EPERM", "mount: EPERM/EPERM",
                                            "mount: EPERM/EPERM", "mount: EPERM/EPERM"),
    "mknod a device": ("EPERM", "EPERM", "EPERM", "EPERM"),
    # What nesting trades (docs/security.md): these work where jailpy's own
    # sandbox allows them (TRADED: in a namespace the process made itself), and
    # reveal nothing the outer one does not show.
    "openat(passed dirfd, ../secret)": ("ok", "ok", "ok", "EACCES"),
    "mount a tmpfs on /tmp": ("EPERM", "EPERM", "ok", "EPERM"),
    "chroot": ("EPERM", "EPERM", "ok", "EPERM"),
    "pivot_root": ("EPERM", "EPERM", "EINVAL", "EPERM"),
}


#: What a process may do deeper in the tree and not in the nesting sandbox itself:
#: act on a mount namespace it made (mount, chroot), never on an inherited mount.
TRADED = ("mount a tmpfs on /tmp", "chroot")


def _escape_cases(attack, fixtures) -> dict[str, list[str]]:
    probe_args = {
        "ptrace a host process": ["ptrace", fixtures.pid],
        "process_vm_readv a host process": ["vm-read", fixtures.pid, fixtures.address],
        "kill a host process": ["kill", fixtures.pid],
        "/proc/<host pid>/root": ["proc-root", fixtures.pid],
        "/proc/<host pid>/ns/*": ["proc-ns", fixtures.pid],
        "setns to a leaked user namespace fd": ["setns", str(fixtures.userns_fd)],
        "open_by_handle_at": ["handle", "/etc/hostname"],
        "keyctl": ["keyctl"], "perf_event_open": ["perf"], "userfaultfd": ["userfaultfd"],
        "bpf": ["bpf"],
        "TIOCSTI (no terminal: ENOTTY where it reaches the driver)": ["tiocsti"],
        "connect to a host abstract socket": ["abstract", fixtures.abstract],
        "connect to a host TCP listener": ["tcp", str(fixtures.port)],
        "read a leaked fd of /etc/shadow": ["fd-read", str(fixtures.shadow_fd)],
        "read a host file the profile hides": ["read", fixtures.secret],
        "write below a read-only bind": ["write", f"{fixtures.ro}/file"],
        "remount a read-only bind read-write": ["remount-rw", fixtures.ro],
        "mknod a device": ["mknod", "/tmp/null"],
        "openat(passed dirfd, ../secret)": ["dirfd-open", str(fixtures.dir_fd), "../secret.txt"],
        "mount a tmpfs on /tmp": ["mount", "/tmp"],
        "chroot": ["chroot", "/tmp"],
        "pivot_root": ["pivot-root"],
    }
    cases = dict(probe_args)
    cases["i386 syscall"] = [attack.helpers.binary("i386_getpid")]
    cases["x32 syscall"] = [attack.helpers.binary("x32_getpid")]
    return cases


def _script(attack, cases: dict[str, list[str]]) -> str:
    """One interpreter runs every case (probe.py batch), after the reveal attempt
    (detach every mount, deepest first), then the inotify hog."""
    import shlex

    probe = f"python3 {attack.helpers.probe}"
    argvs = [["umount-all"], *cases.values(), ["inotify-hog"]]
    return f"{probe} batch {shlex.quote(json.dumps(argvs))}"


def _verdicts(stdout: str) -> list[tuple[str, object]]:
    """Per batch entry: the verdict ("ok", the errno name after the step that failed
    if the probe names one, or SIGSYS) and the probe's value."""
    verdicts, body = [], []
    for line in stdout.splitlines():
        if line.startswith("@status"):
            code = int(line.split()[1])
            result = json.loads(body[-1]) if body else {"ok": False, "errno": f"status {code}"}
            error = result.get("errno")
            if isinstance(error, int):  # the x32 helper prints the number
                error = errno.errorcode.get(error, str(error))
            verdict = ("SIGSYS" if code == SIGSYS_STATUS else GOT_THROUGH if result["ok"] else
                       f"{result['value']}/{error}" if "value" in result else error)
            verdicts.append((verdict, result.get("value")))
        elif line.startswith("@"):
            body = []
        elif line.startswith("{"):
            body.append(line)
    return verdicts


@pytest.fixture
def escape_fixtures(victim, host_listeners, hidden_secret, user_tmp, test_user):
    """The host-side pieces each attack aims at, as in test_escapes.py."""
    import types

    if os.geteuid() != 0:
        pytest.skip("needs root to leak a root-only file (/etc/shadow) into the sandbox")

    pid = victim().pid
    userns_holder = victim("unshare", "--user", "sleep", "60").pid
    for _ in range(200):  # bounded: until both have exec'd
        try:
            if (os.readlink(f"/proc/{pid}/exe").endswith("sleep") and
                    os.readlink(f"/proc/{userns_holder}/ns/user") !=
                    os.readlink("/proc/self/ns/user")):
                break
        except OSError:
            pass
        subprocess.run(["sleep", "0.01"])
    with open(f"/proc/{pid}/maps") as f:
        address = next(line.split("-")[0] for line in f if " r" in line)
    ro = user_tmp / "ro"
    box = user_tmp / "box"
    for path in (ro, box):
        path.mkdir()
        os.chown(path, test_user.uid, test_user.gid)
    (user_tmp / "secret.txt").write_text("secret")
    (user_tmp / "secret.txt").chmod(0o644)
    fds = types.SimpleNamespace(
        userns_fd=os.open(f"/proc/{userns_holder}/ns/user", os.O_RDONLY),
        shadow_fd=os.open("/etc/shadow", os.O_RDONLY),
        dir_fd=os.open(box, os.O_RDONLY | os.O_DIRECTORY))
    yield types.SimpleNamespace(pid=str(pid), address=address, abstract=host_listeners[0],
                                port=host_listeners[1], secret=hidden_secret, ro=str(ro),
                                **vars(fds))
    for fd in vars(fds).values():
        os.close(fd)


def test_escape_suite_from_inside_the_nesting_tree(attack, escape_fixtures):
    """Each attack of the escape suite, run outside, in a nesting sandbox, as root of a
    user+mount namespace made inside it, and in jailpy's default profile inside it:
    nothing works deeper in the tree that does not work in the nesting sandbox itself,
    detaching every inherited mount reveals nothing, and the inotify quota of the
    nesting sandbox bounds every namespace below it."""

    fx = escape_fixtures
    cases = _escape_cases(attack, fx)
    script = _script(attack, cases)
    fds = (fx.userns_fd, fx.shadow_fd, fx.dir_fd)
    pass_fds = [x for fd in (fx.userns_fd, fx.dir_fd) for x in ("--pass-fd", str(fd))]
    binds = ["--ro-bind", str(attack.helpers.dir), str(attack.helpers.dir),
             "--ro-bind", fx.ro, fx.ro]
    jailpy = attack.jailpy
    outer = ["run", *binds, *pass_fds, "--allow-nesting", "--"]
    inner = [jailpy.binary, "run", *binds, *pass_fds, "--"]
    runs = {"outside": jailpy.raw(["sh", "-c", script], pass_fds=fds)}
    os.unlink(f"{fx.ro}/file")  # the counterpart's write
    runs |= {
        "outer": jailpy.run([*outer, "sh", "-c", script], pass_fds=fds),
        "userns": jailpy.run([*outer, "unshare", "-Urm", "sh", "-c", script], pass_fds=fds),
        "inner": jailpy.run([*outer, *inner, "sh", "-c", script], pass_fds=fds),
    }
    found = {}
    for position, result in runs.items():
        assert result.returncode == 0, (position, result.stderr)
        found[position] = _verdicts(result.stdout)
        assert len(found[position]) == len(cases) + 2, (position, result.stdout)
    matrix = {name: tuple(found[p][1 + i][0] for p in POSITIONS)
              for i, name in enumerate(cases)}
    assert matrix == ESCAPE_MATRIX
    for name, row in matrix.items():  # the property itself, whatever the table says
        outer_verdict = row[POSITIONS.index("outer")]
        for position in ("userns", "inner"):
            if row[POSITIONS.index(position)] == GOT_THROUGH != outer_verdict:
                assert name in TRADED, (name, position)
    revealed = {p: found[p][0][1] for p in POSITIONS}
    assert revealed == {"outside": 0, "outer": 0, "userns": 0, "inner": 0}
    held = {p: found[p][-1][1] for p in POSITIONS}
    assert held["outside"] > 32 and held["outer"] == 32, held
    assert 0 < held["inner"] <= 32 and 0 < held["userns"] <= 32, held
    assert os.listdir(fx.ro) == []


# -- inside a container ----------------------------------------------------------------------


def test_jailpy_inside_rootless_podman(attack, user_tmp, test_user):
    """Rootless Podman (runc; the test user's subordinate ids) with its default
    settings: `jailpy check` names what the container refuses (a procfs under its
    masked /proc, sethostname by its seccomp profile, a read-only /proc/sys) and the
    default profile runs once those are shared (docs/containers.md, "Inside Podman")."""
    import shutil
    from pathlib import Path

    if not (shutil.which("podman") and shutil.which("runc")):
        pytest.skip("podman and runc are not installed (scripts/setup.sh installs them)")
    rootfs, state = user_tmp / "rootfs", user_tmp / "podman"
    for name in ("usr", "etc", "opt", "tmp", "proc", "dev", "sys", "run", "var/tmp"):
        (rootfs / name).mkdir(parents=True)
    for name in ("bin", "sbin", "lib", "lib64"):
        (rootfs / name).symlink_to(f"usr/{name}")
    (rootfs / "tmp").chmod(0o1777)
    (state / "run").mkdir(parents=True)
    (state / "run").chmod(0o700)
    subprocess.run(["chown", "-R", f"{test_user.uid}:{test_user.gid}", str(user_tmp)],
                   check=True)
    jailpy = attack.jailpy.binary
    venv = str(Path(jailpy).parent.parent)
    podman = ["env", f"XDG_RUNTIME_DIR={state / 'run'}", "podman", "--root",
              str(state / "storage"), "--runroot", str(state / "runroot"), "--storage-driver",
              "vfs", "--runtime", "runc", "run", "--rm", "--network", "none",
              "-v", "/usr:/usr:ro", "-v", "/etc:/etc:ro", "-v", f"{venv}:{venv}:ro",
              "--rootfs", str(rootfs)]
    script = (f"cd /; {jailpy} check | grep -E '^(ok|MISSING) +nesting'; {jailpy} run -- true; "
              f"echo status=$?; {jailpy} run --share-pid --share-uts -- echo works")
    result = attack.jailpy.raw([*podman, "sh", "-c", script], timeout=120)
    rows = {line.split(":")[0].split("nesting")[1].strip(): line
            for line in result.stdout.splitlines() if "nesting" in line}
    assert rows["user namespace"].startswith("ok         nesting    user namespace: depth 1, "
                                             "nested"), result
    assert rows["new procfs"].startswith("MISSING") and "/proc/sys" in rows["new procfs"]
    assert "read-only" in rows["/proc/sys/user"]
    assert rows["hostname"].startswith("MISSING")
    assert result.stdout.split()[-2:] == ["status=125", "works"], result
    assert "limits.quotas inotify_instances = 32" in result.stderr
