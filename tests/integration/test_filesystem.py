"""The sandbox root: ordered ops, read-only binds, locked flags, symlink escapes."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import chown_tree

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to prepare host mounts for the test")


def _mount_options(mountinfo: str, mount_point: str) -> set[str]:
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            sep = fields.index("-")
            return set(fields[5].split(",")) | set(fields[sep + 3].split(","))
    raise AssertionError(f"{mount_point} not mounted:\n{mountinfo}")


def test_ro_bind_refuses_writes_with_erofs(jailpy):
    result = jailpy.sandbox("touch /usr/jailpy-x")
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_root_is_read_only_but_tmpfs_is_writable(jailpy):
    result = jailpy.sandbox("mkdir /newdir 2>&1; echo hi > /tmp/f && cat /tmp/f")
    assert "Read-only file system" in result.stdout
    assert result.stdout.strip().endswith("hi")


def test_bind_is_writable_and_visible_on_the_host(jailpy, user_tmp):
    result = jailpy.sandbox("echo data > /work/out", "--bind", str(user_tmp), "/work")
    assert result.returncode == 0, result.stderr
    assert (user_tmp / "out").read_text() == "data\n"


def test_remount_ro_makes_a_bind_read_only(jailpy, user_tmp):
    result = jailpy.sandbox("echo data > /work/out", "--bind", str(user_tmp), "/work",
                            "--remount-ro", "/work")
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert not (user_tmp / "out").exists()


@needs_root
def test_ro_bind_keeps_locked_flags_and_covers_submounts(jailpy, test_user):
    base = Path(f"/var/tmp/jailpy-locked-{uuid.uuid4().hex[:8]}")
    base.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,noexec,mode=0755", "locked",
                        str(base)], check=True)
        (base / "sub").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0777", "sub", str(base / "sub")],
                       check=True)
        result = jailpy.sandbox("cat /proc/self/mountinfo; touch /l/sub/x 2>&1; true",
                                "--ro-bind", str(base), "/l")
        assert result.returncode == 0, result.stderr
        top = _mount_options(result.stdout, "/l")
        assert {"ro", "nosuid", "nodev", "noexec"} <= top
        assert "ro" in _mount_options(result.stdout, "/l/sub")
        assert "Read-only file system" in result.stdout
    finally:
        subprocess.run(["umount", "-R", str(base)], check=False)
        base.rmdir()


def test_symlink_planted_in_a_bind_source_cannot_reach_the_host(jailpy, user_tmp, test_user):
    victim = user_tmp / "victim"
    victim.mkdir()
    evil = user_tmp / "evil"
    evil.mkdir()
    os.symlink(f"/oldroot{victim}", evil / "abs")
    os.symlink("../" * 12 + str(victim).lstrip("/"), evil / "rel")
    os.symlink("/proc/self/root" + str(victim), evil / "magic")
    chown_tree(user_tmp, test_user)
    attempts = [
        ["--dir", "/evil/abs/pwned-dir"],
        ["--file", "x", "/evil/rel/pwned-file"],
        ["--bind", "/etc/hostname", "/evil/rel/pwned-bind"],
        ["--tmpfs", "/evil/abs"],
        ["--symlink", "/etc", "/evil/rel/pwned-link"],
        ["--dir", "/evil/magic/pwned-magic"],
    ]
    for extra in attempts:
        jailpy.sandbox("true", "--bind", str(evil), "/evil", *extra)
        assert list(victim.iterdir()) == [], f"{extra} created something on the host"


def test_tmpfs_size_is_honoured(jailpy):
    result = jailpy.sandbox("dd if=/dev/zero of=/t/fill bs=64k count=64 2>&1; "
                            "du -k /t/fill | cut -f1", "--size", "1M", "--tmpfs", "/t")
    assert "No space left on device" in result.stdout
    assert int(result.stdout.split()[-1]) <= 1024


def test_dir_file_chmod_and_symlink_ops(jailpy):
    result = jailpy.sandbox(
        "stat -c '%a %n' /d /f /c; cat /f; echo; readlink /s",
        "--tmpfs", "/x", "--perms", "0700", "--dir", "/d", "--perms", "0600",
        "--file", "hello", "/f", "--dir", "/c", "--chmod", "0711", "/c",
        "--symlink", "/usr/bin", "/s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["700 /d", "600 /f", "711 /c"]
    assert lines[3] == "hello"
    assert lines[4] == "/usr/bin"


def test_hide_covers_files_directories_globs_and_what_links_name(jailpy, user_tmp):
    """--hide, as firejail's blacklist: a file becomes an empty unopenable one, a
    directory an empty one, a glob covers each match, a symlink's target is covered
    (so the file is hidden under every name), a missing path is nothing, and a
    hide wins over an op listed after it."""
    (user_tmp / "data").mkdir()
    (user_tmp / "data" / "secret").write_text("s3cret")
    os.symlink("data/secret", user_tmp / "link")
    result = jailpy.sandbox(
        "cat /etc/adduser.conf /w/link /w/data/secret; ls -A /etc/default /t/d;"
        " ls -A /etc/cron.daily /etc/cron.weekly; ls -d /etc/hostname;"
        " test -e /etc/nothing-here || echo missing",
        "--ro-bind", str(user_tmp), "/w", "--tmpfs", "/t", "--hide", "/etc/adduser.conf",
        "--hide", "/etc/default", "--hide", "/etc/cron*", "--hide", "/w/link",
        "--hide", "/etc/nothing-here", "--hide", "/t/d", "--file", "shown", "/t/d/f")
    # Each directory listed empty, under its heading (ls -A DIR... prints "DIR:").
    assert result.stdout.split() == ["/etc/default:", "/t/d:", "/etc/cron.daily:",
                                     "/etc/cron.weekly:", "/etc/hostname", "missing"], \
        result.stdout + result.stderr
    assert result.stderr.count("Permission denied") == 3, result.stderr


def test_minimal_dev_and_devpts(jailpy):
    result = jailpy.sandbox(
        "ls /dev | tr '\\n' ' '; echo; echo x > /dev/null && echo null-ok; "
        "head -c 4 /dev/urandom | wc -c; "
        "python3 -c 'import os; m, s = os.openpty(); print(os.ttyname(s))'")
    assert result.returncode == 0, result.stderr
    names = set(result.stdout.splitlines()[0].split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm"} <= names
    assert "null-ok" in result.stdout
    assert "/dev/pts/0" in result.stdout


def test_mqueue_and_fresh_proc(jailpy):
    result = jailpy.sandbox("grep -E ' /dev/mqueue | /proc ' /proc/self/mountinfo",
                            "--mqueue", "/dev/mqueue")
    assert result.returncode == 0, result.stderr
    assert " - mqueue " in result.stdout
    assert " - proc " in result.stdout


def test_proc_sys_is_read_only(jailpy):
    result = jailpy.sandbox("grep ' /proc/sys ' /proc/self/mountinfo")
    assert " ro," in result.stdout or " ro " in result.stdout


def test_no_mount_is_visible_on_the_host(jailpy):
    with open("/proc/self/mountinfo") as f:
        before = {line.split(" - ")[0].split(None, 4)[4] for line in f}
    proc = jailpy.popen(["run", "--tmpfs", "/extra", "--", "sh", "-c", "echo ready; sleep 5"],
                        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    with open("/proc/self/mountinfo") as f:
        during = {line.split(" - ")[0].split(None, 4)[4] for line in f}
    proc.kill()
    proc.wait()
    assert during == before


def test_missing_source_is_a_one_line_error(jailpy):
    result = jailpy.run(["run", "--ro-bind", "/nope", "/x", "--", "true"])
    assert result.returncode == 125
    assert result.stderr.strip() == "jailpy: --ro-bind /nope /x: source does not exist"


def test_try_binds_skip_missing_sources(jailpy):
    result = jailpy.sandbox("test -e /x && echo present || echo absent",
                            "--ro-bind-try", "/nope", "/x")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "absent"


@pytest.mark.parametrize("args,fragment", [
    (["--perms", "99", "--dir", "/d"], "bad mode"),
    (["--size", "lots", "--tmpfs", "/t"], "bad size"),
    (["--perms", "0700"], "--perms"),
    (["--bogus-option"], "No such option"),
    (["--uid", "x"], "--uid"),
    (["--ro-bind", "relative", "/x"], "--ro-bind relative /x: source does not exist"),
    (["--landlock-read", "relative"], "absolute"),
    (["--pass-fd", "47"], "file descriptor 47 is not open"),
    (["--pids-max", "0"], "pids_max must be at least 1"),
    (["--rlimit", "nofile=99999999999999999999"], "out of range"),
    (["--argv0", ""], "argv0 must not be empty"),
])
def test_bad_options_exit_125_without_traceback(jailpy, args, fragment):
    result = jailpy.run(["run", *args, "--", "true"])
    assert result.returncode == 125, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_empty_command_is_a_clear_error(jailpy):
    result = jailpy.run(["run", "--", ""])
    assert result.returncode == 125
    assert result.stderr.strip() == "jailpy: command: the command is empty"


def test_tmpfs_on_root_starts_from_an_empty_root(jailpy):
    """An op on / goes over everything before it, like any later op."""
    result = jailpy.run(["run", "--tmpfs", "/", "--", "/usr/bin/true"])
    assert result.returncode == 127, result.stderr
    assert "command not found" in result.stderr


def test_ro_bind_of_the_host_root_on_root(jailpy):
    result = jailpy.sandbox("ls -A /; touch /jailpy-x 2>&1; true", "--ro-bind", "/", "/")
    assert result.returncode == 0, result.stderr
    assert set(os.listdir("/")) <= set(result.stdout.split())
    assert "Read-only file system" in result.stdout


def test_remount_ro_lands_on_the_directory_it_resolved(jailpy, user_tmp, test_user):
    """A symlink flipped while the sandbox is built must not move the read-only
    copy onto another directory (a lookup done twice would): whichever
    directory /w/x named is the one made read-only, with its own content."""
    import threading

    for name in ("real", "other"):
        (user_tmp / name).mkdir()
        (user_tmp / name / name.upper()).write_text("")
    os.symlink("real", user_tmp / "x")
    chown_tree(user_tmp, test_user)
    stop = threading.Event()

    def flip() -> None:
        flag = False
        while not stop.is_set():
            tmp = user_tmp / "x.new"
            os.symlink("other" if flag else "real", tmp)
            os.replace(tmp, user_tmp / "x")
            flag = not flag

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        for _ in range(25):
            result = jailpy.sandbox(
                "ls /w/real /w/other | tr '\\n' ' '; echo; "
                "for d in real other; do touch /w/$d/t 2>/dev/null && echo $d-rw || echo $d-ro; done",
                "--bind", str(user_tmp), "/w", "--remount-ro", "/w/x")
            if result.returncode == 125:
                continue  # the link was mid-replacement: a clean refusal is fine
            lines = result.stdout.split("\n")
            assert "REAL" in lines[0].split("/w/real:")[1].split("/w/other:")[0], result.stdout
            assert "OTHER" in lines[0].split("/w/other:")[1], result.stdout
            assert sorted(lines[1:3]) in (["other-rw", "real-ro"], ["other-ro", "real-rw"]), \
                result.stdout
    finally:
        stop.set()
        flipper.join(5)
