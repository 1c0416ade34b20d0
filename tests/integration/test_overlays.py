"""Overlay mount ops and `jailpy run --changes` + `jailpy changes`, as the test user
on the real kernel (docs/overlays.md)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import poll, process_tree

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to plant a device node in an upper layer")


def _tree(root: Path) -> dict[str, str]:
    """rel path -> content, 'dir' or 'link:TARGET', never following links."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_text()
    return found


_LIST_INSIDE = ("find . -mindepth 1 | sort | while read p; do "
                "if [ -L \"$p\" ]; then echo \"$p link:$(readlink \"$p\")\"; "
                "elif [ -d \"$p\" ]; then echo \"$p dir\"; else echo \"$p $(tr '\\n' '|' < \"$p\")\"; "
                "fi; "
                "done")


def _listing(tree: dict[str, str]) -> list[str]:
    return sorted(f"./{rel} {value.replace(chr(10), '|')}" for rel, value in tree.items())


@pytest.fixture
def project(user_tmp: Path, test_user) -> Path:
    """A small project owned by the test user, and a state dir beside it."""
    proj = user_tmp / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "docs" / "old").mkdir(parents=True)
    (proj / "a.txt").write_text("alpha\n")
    (proj / "src" / "main.py").write_text("print( 1 )\n")
    (proj / "src" / "util.py").write_text("x=1\n")
    (proj / "docs" / "keep.md").write_text("keep\n")
    (proj / "docs" / "old" / "gone.md").write_text("gone\n")
    (proj / "rm-me.txt").write_text("bye\n")
    (user_tmp / "state").mkdir()
    (user_tmp / "outside").mkdir()
    (user_tmp / "outside" / "secret").write_text("host\n")
    if os.geteuid() == 0:
        for path in [user_tmp, *user_tmp.rglob("*")]:
            os.chown(path, test_user.uid, test_user.gid)
    return proj


def _env(user_tmp: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(user_tmp / "state")}


def _changes(jailpy, user_tmp, *args: str) -> subprocess.CompletedProcess:
    return jailpy.run(["changes", *args], env=_env(user_tmp), cwd=user_tmp / "proj")


def _run_changes(jailpy, user_tmp, script: str, *options: str):
    result = jailpy.run(["run", "--changes", *options, "--", "sh", "-c", script],
                        env=_env(user_tmp), cwd=user_tmp / "proj")
    assert result.returncode == 0, result.stderr
    return result


def _show(jailpy, user_tmp) -> dict:
    result = _changes(jailpy, user_tmp, "show", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- the mount ops ------------------------------------------------------------------


def test_overlay_writes_go_to_the_upper_dir_and_keep_nosuid_nodev(jailpy, project, user_tmp):
    upper, work = user_tmp / "up", user_tmp / "wk"
    for d in (upper, work):
        jailpy.raw(["mkdir", str(d)])
    result = jailpy.sandbox("echo new > /w/b; echo more >> /w/a.txt; rm /w/rm-me.txt; "
                            "cat /w/a.txt; grep ' /w ' /proc/self/mountinfo",
                            "--overlay", str(project), str(upper), str(work), "/w")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("alpha\nmore\n")
    options = result.stdout.splitlines()[-1]
    assert "nosuid" in options and "nodev" in options and "userxattr" in options
    assert (project / "a.txt").read_text() == "alpha\n" and (project / "rm-me.txt").exists()
    assert not (project / "b").exists()
    assert (upper / "b").read_text() == "new\n"
    whiteout = os.lstat(upper / "rm-me.txt")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0


def test_ro_overlay_stacks_lowers_read_only(jailpy, project, user_tmp):
    lower = user_tmp / "outside"
    result = jailpy.sandbox("cat /w/a.txt /w/secret; touch /w/x",
                            "--lower", str(lower), "--ro-overlay", str(project), "/w")
    assert result.stdout == "alpha\nhost\n"
    assert result.returncode != 0 and "Read-only file system" in result.stderr


def test_tmp_overlay_leaves_nothing_behind_and_its_size_holds(jailpy, project, user_tmp):
    before = _tree(user_tmp)
    result = jailpy.sandbox("echo x > /w/new; rm /w/a.txt; yes > /w/big; echo rc=$?; "
                            "du -k /w/big", "--size", "1M", "--tmp-overlay", str(project), "/w")
    assert "No space left on device" in result.stderr
    assert int(result.stdout.split()[-2]) <= 1024  # du -k of the file that filled it
    assert _tree(user_tmp) == before


def test_overlay_destination_through_a_lower_dirs_symlink_stays_inside(jailpy, project,
                                                                       user_tmp):
    """A symlink planted in a lower dir (`link -> /oldroot/<host dir>`, the host's root
    as the set-up sees it) must not make a later overlay cover the host directory: it
    lands inside the sandbox root, and the host dir bound afterwards shows its files."""
    planted = user_tmp / "planted"
    jailpy.raw(["mkdir", str(planted)])
    host_dir = user_tmp / "outside"
    jailpy.raw(["ln", "-s", f"/oldroot{host_dir}", str(planted / "link")])
    result = jailpy.sandbox(
        "cat /view/secret; ls /w/link/",
        "--dir", f"/oldroot{host_dir}",
        "--lower", str(user_tmp / "state"), "--ro-overlay", str(planted), "/w",
        "--tmp-overlay", str(project), "/w/link",
        "--ro-bind", str(host_dir), "/view")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "host"  # the host dir was not covered
    assert "a.txt" in result.stdout  # the overlay went to the in-root path


# -- --changes and jailpy changes ----------------------------------------------------


def test_changes_are_invisible_until_commit_then_exactly_applied(jailpy, project, user_tmp):
    before = _tree(project)
    result = _run_changes(jailpy, user_tmp,
                          "echo beta >> a.txt; rm rm-me.txt; mv src/util.py src/helpers.py; "
                          "mkdir -p new/deep; echo n > new/deep/n.txt; ln -s a.txt alias; "
                          "rm -r docs/old; chmod 700 src; " + _LIST_INSIDE)
    inside = sorted(result.stdout.splitlines())
    assert "changes show" in result.stderr and str(user_tmp / "state") in result.stderr
    assert _tree(project) == before
    committed = _changes(jailpy, user_tmp, "commit", "latest")
    assert committed.returncode == 0, committed.stderr
    assert _listing(_tree(project)) == inside
    assert stat.S_IMODE(os.stat(project / "src").st_mode) == 0o700
    assert _show(jailpy, user_tmp)["changes"] == []


def test_a_deletion_and_an_opaque_directory_round_trip(jailpy, project, user_tmp):
    _run_changes(jailpy, user_tmp,
                 "rm -r src; mkdir src; echo fresh > src/only.py; rm docs/keep.md")
    changes = {c["path"]: c for c in _show(jailpy, user_tmp)["changes"]}
    src = changes[str(project / "src")]
    assert src["action"] == "replaced"
    assert sorted(src["removes"]) == [str(project / "src/main.py"), str(project / "src/util.py")]
    assert changes[str(project / "docs/keep.md")]["action"] == "deleted"
    assert (project / "src" / "main.py").exists()
    assert _changes(jailpy, user_tmp, "commit", "latest").returncode == 0
    assert sorted(os.listdir(project / "src")) == ["only.py"]
    assert not (project / "docs" / "keep.md").exists()


def test_commit_half_and_the_host_holds_exactly_that_half(jailpy, project, user_tmp):
    _run_changes(jailpy, user_tmp, "echo 1 > one.txt; echo 2 > two.txt; echo A > a.txt")
    done = _changes(jailpy, user_tmp, "commit", "latest", "one.txt", str(project / "a.txt"))
    assert done.returncode == 0, done.stderr
    assert (project / "one.txt").read_text() == "1\n" and (project / "a.txt").read_text() == "A\n"
    assert not (project / "two.txt").exists()
    assert [c["path"] for c in _show(jailpy, user_tmp)["changes"]] == [str(project / "two.txt")]
    listing = _changes(jailpy, user_tmp, "list")
    assert listing.returncode == 0 and _first_run(user_tmp) in listing.stdout


def test_a_host_change_since_the_run_makes_commit_refuse_that_file(jailpy, project, user_tmp):
    _run_changes(jailpy, user_tmp, "echo sandbox > a.txt; echo new > src/main.py")
    jailpy.raw(["sh", "-c", f"echo edited-on-host > {project / 'a.txt'}"])
    refused = _changes(jailpy, user_tmp, "commit", "latest")
    assert refused.returncode == 125
    assert "a.txt: changed on the host since the run started" in refused.stderr
    assert (project / "src" / "main.py").read_text() == "print( 1 )\n"  # nothing half-written
    assert (project / "a.txt").read_text() == "edited-on-host\n"
    assert _changes(jailpy, user_tmp, "commit", "latest", "src").returncode == 0
    assert (project / "src" / "main.py").read_text() == "new\n"


def test_symlinks_out_of_the_tree_are_never_committed_or_followed(jailpy, project, user_tmp):
    outside = user_tmp / "outside"
    _run_changes(jailpy, user_tmp,
                 f"ln -s {outside} out; ln -s ../../outside/secret rel; echo ok > fine.txt")
    changes = {Path(c["path"]).name: c for c in _show(jailpy, user_tmp)["changes"]}
    assert not changes["out"]["commits"] and not changes["rel"]["commits"]
    refused = _changes(jailpy, user_tmp, "commit", "latest")
    assert refused.returncode == 125 and "pointing outside the tree" in refused.stderr
    assert not (project / "out").exists() and not (project / "fine.txt").exists()
    assert _changes(jailpy, user_tmp, "commit", "latest", "fine.txt").returncode == 0
    assert sorted(os.listdir(outside)) == ["secret"]


def _first_run(user_tmp: Path) -> str:
    return sorted(os.listdir(user_tmp / "state" / "jailpy" / "changes"))[0]


def test_host_dir_swapped_for_a_symlink_is_not_written_through(jailpy, project, user_tmp):
    outside = user_tmp / "outside"
    _run_changes(jailpy, user_tmp, "echo evil > src/planted.py")
    for name in os.listdir(project / "src"):
        (project / "src" / name).unlink()
    (project / "src").rmdir()
    jailpy.raw(["ln", "-s", str(outside), str(project / "src")])
    refused = _changes(jailpy, user_tmp, "commit", "latest")
    assert refused.returncode == 125, refused.stderr
    assert sorted(os.listdir(outside)) == ["secret"]


def test_setuid_bits_fifos_and_device_nodes_are_not_committed(jailpy, project, user_tmp):
    _run_changes(jailpy, user_tmp, "echo x > tool; chmod 6755 tool; mkfifo pipe")
    if os.geteuid() == 0:  # nothing unprivileged can make one: plant it as root
        run_dir = user_tmp / "state" / "jailpy" / "changes" / _first_run(user_tmp)
        os.mknod(run_dir / "upper" / "0" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    changes = {Path(c["path"]).name: c for c in _show(jailpy, user_tmp)["changes"]}
    assert "setuid/setgid bits dropped" in changes["tool"]["problem"]
    assert not changes["pipe"]["commits"]
    refused = _changes(jailpy, user_tmp, "commit", "latest")
    assert refused.returncode == 125 and "fifo: never committed" in refused.stderr
    if os.geteuid() == 0:
        assert "null: device: never committed" in refused.stderr
        assert not changes["null"]["commits"]
    assert _changes(jailpy, user_tmp, "commit", "latest", "tool").returncode == 0
    assert stat.S_IMODE(os.stat(project / "tool").st_mode) == 0o755
    assert not (project / "pipe").exists() and not (project / "null").exists()


def test_discard_removes_the_run(jailpy, project, user_tmp):
    _run_changes(jailpy, user_tmp, "mkdir d; echo 1 > d/f")
    assert _changes(jailpy, user_tmp, "discard", "latest").returncode == 0
    assert os.listdir(user_tmp / "state" / "jailpy" / "changes") == []
    assert not (project / "d").exists()


def test_changes_size_bounds_the_upper_layer_and_keeps_what_fit(jailpy, project, user_tmp):
    result = jailpy.run(["run", "--changes-size", "1M", "--", "sh", "-c",
                         "echo kept > small; rm a.txt; yes > big; echo rc=$?"],
                        env=_env(user_tmp), cwd=project)
    assert "No space left on device" in result.stderr and "rc=1" in result.stdout
    changes = {Path(c["path"]).name: c for c in _show(jailpy, user_tmp)["changes"]}
    assert changes["small"]["action"] == "added" and changes["a.txt"]["action"] == "deleted"
    assert changes["big"]["size"] <= 1 << 20
    assert _changes(jailpy, user_tmp, "commit", "latest", "small", "a.txt").returncode == 0
    assert (project / "small").read_text() == "kept\n" and not (project / "a.txt").exists()


def test_sigkill_of_jailpy_leaves_a_reviewable_run(jailpy, project, user_tmp):
    jailpy.workdir = project
    proc = jailpy.popen(["run", "--changes", "--", "sh", "-c", "echo early > early.txt; "
                         "exec sleep 60"], env=_env(user_tmp),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = user_tmp / "state" / "jailpy" / "changes"
    assert poll(lambda: list(root.glob("*/upper/0/early.txt")), timeout=20)
    jailpy_pids = [pid for pid in process_tree(proc.pid)
                   if b"jailpy" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   and b"runuser" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(jailpy_pids[0], signal.SIGKILL)
    proc.wait(timeout=20)
    assert [Path(c["path"]).name for c in _show(jailpy, user_tmp)["changes"]] == ["early.txt"]
    assert _changes(jailpy, user_tmp, "commit", "latest").returncode == 0
    assert (project / "early.txt").read_text() == "early\n"


def test_the_sandbox_cannot_reach_the_run_metadata_or_other_runs(jailpy, project, user_tmp):
    _run_changes(jailpy, user_tmp, "echo first > f")
    state = user_tmp / "state" / "jailpy" / "changes"
    result = _run_changes(jailpy, user_tmp,
                          f"ls -A {state}; cat {state}/*/run.json; touch {state}/x; "
                          f"echo overwrite > {state}/{_first_run(user_tmp)}/upper/0/f; true",
                          "--bind", str(user_tmp), str(user_tmp))
    assert result.stdout == ""
    # The whole state directory is an empty read-only tmpfs (plan.guard_ops), so the
    # changes root is not even there; the writes fail either way.
    assert "Read-only file system" in result.stderr or "No such file" in result.stderr
    assert not (state / "x").exists()
    first = state / _first_run(user_tmp)
    assert (first / "upper" / "0" / "f").read_text() == "first\n"


def test_overlaying_the_home_or_root_is_refused(jailpy, test_user, user_tmp):
    for cwd in (test_user.home, "/"):
        result = jailpy.run(["run", "--changes", "--", "true"], env=_env(user_tmp), cwd=cwd)
        assert result.returncode == 125
        assert "cannot overlay" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["show", "no-such-run"], "no run no-such-run"),
    (["commit", "latest", "/nowhere"], "no change at /nowhere"),
    (["show", "../x"], "not a run name"),
])
def test_bad_changes_arguments_are_one_clear_line(jailpy, project, user_tmp, args, message):
    _run_changes(jailpy, user_tmp, "echo 1 > f")
    result = _changes(jailpy, user_tmp, *args)
    assert result.returncode == 125 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_review_on_a_terminal_commits_what_was_accepted(jailpy, project, user_tmp):
    """--review through a real pseudo-terminal: accept the first change, skip the second."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        jailpy.user.command([jailpy.binary, "run", "--changes", "--review", "--", "sh", "-c",
                             "echo 1 > one.txt; echo 2 > two.txt"]),
        stdin=slave, stdout=slave, stderr=slave, cwd=project, env=jailpy.env(_env(user_tmp)),
        start_new_session=True)
    jailpy.started.append(proc)
    os.close(slave)
    seen, answers = b"", [b"a\r", b"s\r"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            seen += os.read(master, 4096)
        except OSError:
            break
        if answers and seen.count(b"[a/s/q]") > 2 - len(answers):
            os.write(master, answers.pop(0))
    proc.wait(timeout=10)
    os.close(master)
    assert (project / "one.txt").read_text() == "1\n", seen.decode(errors="replace")
    assert not (project / "two.txt").exists()
    assert [Path(c["path"]).name for c in _show(jailpy, user_tmp)["changes"]] == ["two.txt"]
