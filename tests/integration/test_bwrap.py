"""`jailpy-bwrap` against the real bwrap: the same command lines through both.

Each case runs as the unprivileged test user through Debian's bwrap (0.8.0 here)
and through jailpy's front end, and compares exit status, stdout (the script
prints what it sees inside: the mount table normalised to mount point, file
system type and ro/rw; uid/gid maps; which namespaces are shared with the host;
the environment) and, for --info-fd, the JSON keys. Options newer than the
installed bwrap (the overlay family) are covered in test_overlays-style checks
of jailpy alone below.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import VENV

pytestmark = pytest.mark.integration

BWRAP = shutil.which("bwrap")
FRONT_END = str(VENV / "bin" / "jailpy-bwrap")
USR = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib",
       "/lib", "--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc"]
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
#: What the script inside prints: ids, maps, namespace sharing, hostname, cwd, env, mounts.
MAPS = "cat /proc/self/uid_map /proc/self/gid_map"
LOOK = ("id -u; id -g; "
        + "".join(f'[ "$(readlink /proc/self/ns/{ns})" = "$HOST_{ns}" ] && echo {ns} shared '
                  f'|| echo {ns} new; ' for ns in NAMESPACES)
        + "hostname; pwd; env | grep -v '^HOST_' | sort; "
        "[ -r /proc/self/mountinfo ] && awk '{split($6, o, \",\"); "
        "for (i = 7; $i != \"-\"; i++); print $5, $(i + 1), o[1]}' /proc/self/mountinfo "
        "| grep -Ev '^(/proc/(sys|irq|bus)|/dev/shm) ' | sort -u")
#: Mounts jailpy adds on purpose (docs/bwrap.md), left out of the comparison:
#: /proc/sys, /proc/irq, /proc/bus read-only under --proc, a /dev/shm tmpfs under
#: --dev, and --remount-ro's read-only clone stacked on DEST (`sort -u` folds it).

CORPUS = {
    "minimal": [*USR],
    "proc-dev-tmpfs": [*USR, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"],
    "unshare-all": [*USR, "--proc", "/proc", "--unshare-all"],
    "unshare-all-share-net": [*USR, "--proc", "/proc", "--unshare-all", "--share-net"],
    "each-unshare": [*USR, "--proc", "/proc", "--unshare-user", "--unshare-ipc",
                     "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"],
    "uid-gid-hostname": [*USR, "--proc", "/proc", "--unshare-user", "--uid", "0", "--gid", "0",
                         "--unshare-uts", "--hostname", "box"],
    "environment": [*USR, "--proc", "/proc", "--setenv", "A", "1", "--unsetenv", "LANG",
                    "--clearenv", "--setenv", "B", "2"],
    "dirs-symlinks-chdir": [*USR, "--proc", "/proc", "--dir", "/a/b", "--symlink", "b", "/a/c",
                            "--chdir", "/a/c"],
    "binds-and-try": [*USR, "--proc", "/proc",
                      "--bind-try", "/nonexistent", "/x", "--dev-bind", "/dev/null", "/null",
                      "--remount-ro", "/usr", "--tmpfs", "/tmp", "--perms", "0700",
                      "--dir", "/tmp/private"],
    "cwd-kept": [*USR, "--proc", "/proc", "--bind", "/var/tmp", "/var/tmp"],
}


def _run(jailpy, binary: str, args: list[str], script: str, **kwargs):
    host = {f"HOST_{ns}": os.readlink(f"/proc/self/ns/{ns}") for ns in NAMESPACES}
    setenv = [word for name, value in host.items() for word in ("--setenv", name, value)]
    return jailpy.raw([binary, *setenv, *args, "sh", "-c", script], **kwargs)


@pytest.fixture(autouse=True)
def _needs_bwrap():
    if BWRAP is None:
        pytest.skip("the bubblewrap package is not installed (scripts/setup.sh installs it)")


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_agrees_with_bwrap(jailpy, case):
    args = CORPUS[case]
    script = LOOK + "; exit 7"
    cwd = str(jailpy.workdir) if case == "cwd-kept" else "/"
    want = _run(jailpy, BWRAP, args, script, cwd=cwd)
    got = _run(jailpy, FRONT_END, args, script, cwd=cwd)
    assert want.returncode == 7, want.stderr
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout), got.stderr


@pytest.mark.parametrize("ids", [[], ["--uid", "0", "--gid", "0"], ["--uid", "5"]])
def test_uid_gid_maps_match(jailpy, ids):
    args = [*USR, "--proc", "/proc", "--unshare-user", *ids]
    want = _run(jailpy, BWRAP, args, MAPS)
    got = _run(jailpy, FRONT_END, args, MAPS)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout)


@pytest.mark.parametrize("args, status", [
    (["--bogus", "true"], 1), ([], 1), (["--ro-bind", "/nonexistent", "/x", "true"], 1),
    (["--hostname", "x", *USR, "true"], 1), (["--perms", "99", "--dir", "/x", "true"], 1),
    ([*USR, "--", "/nonexistent"], 1), ([*USR, "sh", "-c", "kill -TERM $$"], 143),
])
def test_failures_exit_as_bwrap_does(jailpy, args, status):
    want = jailpy.raw([BWRAP, *args])
    got = jailpy.raw([FRONT_END, *args])
    assert want.returncode == got.returncode == status
    if status == 1:
        assert got.stderr.startswith(("bwrap: ", f"usage: {FRONT_END} "))


def test_info_fd_and_json_status_keys_match(jailpy, user_tmp):
    keys = {}
    for name, binary in (("bwrap", BWRAP), ("jailpy", FRONT_END)):
        info, status = user_tmp / f"{name}.info", user_tmp / f"{name}.status"
        script = (f"exec 3>{info} 4>{status}; exec {binary} --info-fd 3 --json-status-fd 4 "
                  f"{' '.join(USR)} --unshare-all sh -c 'exit 5'")
        result = jailpy.raw(["sh", "-c", script])
        assert result.returncode == 5, result.stderr
        first = json.loads(info.read_text())
        docs = [json.loads(line) for line in status.read_text().splitlines() if line.strip()]
        assert first["child-pid"] > 1 and docs[-1] == {"exit-code": 5}
        keys[name] = (sorted(first), sorted(docs[0]))
    assert keys["jailpy"] == keys["bwrap"]


#: A --userns-block-fd caller, as a tool that maps ids itself would be: it reads the
#: --info-fd JSON to EOF (bounded), finds the new user namespace unmapped, writes
#: its own maps (uid/gid 0 inside) unless told not to, then releases the block fd.
USERNS_BLOCK_CALLER = """
import json, os, select, subprocess, sys
binary, mode = sys.argv[1:]
info_r, info_w = os.pipe()
block_r, block_w = os.pipe()
look = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/pid"
proc = subprocess.Popen(
    [binary, "--unshare-user", "--unshare-pid", "--userns-block-fd", str(block_r),
     "--info-fd", str(info_w), "--ro-bind", "/", "/", "--proc", "/proc",
     "sh", "-c", look], pass_fds=(info_w, block_r), stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL, text=True)
os.close(info_w)
os.close(block_r)
data = b""
while select.select([info_r], [], [], 20)[0]:
    chunk = os.read(info_r, 4096)
    if not chunk:
        break
    data += chunk
else:
    print("no EOF on the info fd")
info = json.loads(data)
pid = info["child-pid"]
print(sorted(info), repr(open(f"/proc/{pid}/uid_map").read()), flush=True)
if mode == "map":
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {os.getuid()} 1"),
                       ("gid_map", f"0 {os.getgid()} 1")):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)
os.write(block_w, b"x")
os.close(block_w)
out, _ = proc.communicate(timeout=30)
seen = out.split()
pidns = f"pid:[{info['pid-namespace']}]"
print(proc.returncode, seen[:8], seen[8:] == [pidns] if seen else None)
"""


def test_userns_block_fd_leaves_the_maps_to_the_caller(jailpy, user_tmp):
    """bwrap's --userns-block-fd protocol, through both: child-pid and the namespace
    ids on --info-fd (then EOF), no id maps until the caller writes them, the
    command runs with the caller's maps once the block fd is written; a caller that
    writes none gets a failure (nothing unmapped can build the root)."""
    caller = user_tmp / "caller.py"
    caller.write_text(USERNS_BLOCK_CALLER)
    outputs = []
    for binary in (BWRAP, FRONT_END):
        script = f"python3 {caller} {binary} map; python3 {caller} {binary} none"
        result = jailpy.raw(["sh", "-c", script])
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[1] == outputs[0]
    uid, gid = jailpy.user.uid, jailpy.user.gid
    keys = "['child-pid', 'mnt-namespace', 'pid-namespace'] ''"
    assert outputs[1] == (f"{keys}\n0 ['0', '0', '0', '{uid}', '1', '0', '{gid}', '1'] True\n"
                          f"{keys}\n1 [] None\n")


def test_args_fd_file_and_data_fds(jailpy, user_tmp):
    """--args, --file FD, --ro-bind-data FD: what flatpak passes (nested --args is
    newer than the installed bwrap: not compared)."""
    outputs = []
    for binary in (BWRAP, FRONT_END):
        outer = user_tmp / "outer"
        outer.write_bytes(b"\0".join(w.encode() for w in [*USR, "--setenv", "NESTED", "yes"])
                          + b"\0")
        script = (f"exec 5<{outer} 7<<EOF1 8<<EOF2\nfile text\nEOF1\ndata text\nEOF2\n"
                  f"exec {binary} --args 5 --file 7 /f --perms 0640 --ro-bind-data 8 /d "
                  "sh -c 'cat /f /d; echo $NESTED; stat -c %a /d'")
        result = jailpy.raw(["bash", "-c", script])
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.split("\n")[:4])
    assert outputs[0] == outputs[1] == ["file text", "data text", "yes", "640"]


def _bpf_denying_mkdir() -> bytes:
    """A raw classic-BPF program: mkdir and mkdirat -> EPERM, everything else allowed
    (x86-64 and aarch64 numbers; the architecture is not checked, as a client's
    hand-written filter might not)."""
    import platform
    import struct

    numbers = {"x86_64": (83, 258), "aarch64": (34, 34)}[platform.machine()]
    ins = [(0x20, 0, 0, 0),  # ld [nr]
           (0x15, 2, 0, numbers[0]),  # jeq mkdir -> deny
           (0x15, 1, 0, numbers[1]),  # jeq mkdirat -> deny
           (0x06, 0, 0, 0x7fff0000),  # ret ALLOW
           (0x06, 0, 0, 0x00050000 | 1)]  # deny: ret ERRNO(EPERM)
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def test_flatpak_pattern_args_seccomp_sync_info_lock(jailpy, user_tmp):
    bpf = user_tmp / "filter.bpf"
    bpf.write_bytes(_bpf_denying_mkdir())
    lock = user_tmp / "lock"
    lock.write_text("")
    results = []
    for binary in (BWRAP, FRONT_END):
        args = user_tmp / "args"
        args.write_bytes(b"\0".join(w.encode() for w in [
            *USR, "--bind", str(user_tmp), str(user_tmp), "--tmpfs", "/tmp",
            "--lock-file", str(lock), "--seccomp", "10", "--sync-fd", "11",
            "--info-fd", "12", "--die-with-parent", "--new-session"]) + b"\0")
        script = (f"exec 9<{args} 10<{bpf} 12>{user_tmp}/info; "
                  f"{binary} --args 9 sh -c 'mkdir /tmp/x 2>&1; echo mkdir=$?; "
                  f"echo ok' 11>/dev/null; echo status=$?; grep -c child-pid {user_tmp}/info")
        results.append(jailpy.raw(["bash", "-c", script]).stdout)
    assert results[0] == results[1]
    assert results[1].endswith("Operation not permitted\nmkdir=1\nok\nstatus=0\n1\n")


def test_bubblejail_pattern(jailpy):
    args = [*USR, "--proc", "/proc", "--dev", "/dev", "--as-pid-1", "--unshare-all",
            "--share-net", "--die-with-parent"]
    script = ("[ \"$(readlink /proc/self/ns/net)\" = \"$HOST_net\" ] && echo net shared; "
              "[ \"$(readlink /proc/self/ns/pid)\" != \"$HOST_pid\" ] && echo pid new")
    want = _run(jailpy, BWRAP, args, script)
    got = _run(jailpy, FRONT_END, args, script)
    assert got.returncode == want.returncode == 0, got.stderr
    assert got.stdout == want.stdout == "net shared\npid new\n"


def test_version_and_help_shape(jailpy):
    version = jailpy.raw([FRONT_END, "--version"])
    assert version.returncode == 0 and version.stdout.startswith("bubblewrap ")
    help_text = jailpy.raw([FRONT_END, "--help"]).stdout
    real = jailpy.raw([BWRAP, "--help"]).stdout
    assert help_text.splitlines()[0] == real.splitlines()[0].replace(BWRAP, FRONT_END)
    for line in real.splitlines()[2:]:  # every option the installed bwrap lists
        assert line.split()[0] in help_text


def test_jailpy_bwrap_subcommand(jailpy):
    result = jailpy.run(["bwrap", *USR, "sh", "-c", "echo hi"])
    assert (result.returncode, result.stdout) == (0, "hi\n")


def test_tmp_overlay_beyond_installed_bwrap(jailpy, user_tmp):
    """--overlay-src/--tmp-overlay (bwrap 0.11; Debian's 0.8 lacks them): writes land
    in a tmpfs, the host directory is unchanged."""
    (user_tmp / "lower").mkdir()
    (user_tmp / "lower" / "a").write_text("host\n")
    for path in (user_tmp / "lower", user_tmp / "lower" / "a"):
        os.chown(path, jailpy.user.uid, jailpy.user.gid)
    result = jailpy.raw([FRONT_END, *USR, "--overlay-src", str(user_tmp / "lower"),
                         "--tmp-overlay", "/data", "sh", "-c",
                         "echo new > /data/a; cat /data/a"])
    assert (result.returncode, result.stdout) == (0, "new\n"), result.stderr
    assert (user_tmp / "lower" / "a").read_text() == "host\n"


def test_pid_1_nested_userns_and_data_binds_as_bwrap(jailpy, user_tmp):
    """--as-pid-1 makes the command pid 1; --disable-userns leaves nothing inside able
    to create a user namespace (and --assert-userns-disabled holds there, but not
    without it); --bind-data binds a writable copy over a host file, which keeps
    its content; --userns FD joins the namespace of another sandbox."""
    data = user_tmp / "data"
    data.write_text("host\n")
    os.chown(data, jailpy.user.uid, jailpy.user.gid)
    outputs = []
    for binary in (BWRAP, FRONT_END):
        script = (
            f"b={binary}; u='{' '.join(USR)}'; "
            "$b $u --unshare-pid --as-pid-1 sh -c 'echo pid=$$'; "
            "$b $u --unshare-user --disable-userns sh -c "
            "'unshare -U true 2>/dev/null && echo nested=made || echo nested=refused'; "
            "$b $u --unshare-user --disable-userns --assert-userns-disabled true; "
            "echo asserted=$?; "
            "$b $u --assert-userns-disabled true 2>/dev/null; echo unasserted=$?; "
            f"$b $u --bind {user_tmp} {user_tmp} --bind-data 5 {data} sh -c "
            f"'cat {data}; echo more >> {data}; cat {data}; stat -c %a {data}' 5<<EOF\n"
            "copy\nEOF\n"
            f"cat {data}; "
            "$b --ro-bind / / --unshare-user --info-fd 3 sh -c "
            "'readlink /proc/self/ns/user; sleep 2' "
            f"3>{user_tmp}/info >{user_tmp}/first 2>/dev/null & "
            f"for i in $(seq 100); do [ -s {user_tmp}/first ] && break; sleep 0.1; done; "
            f"pid=$(sed -n 's/.*child-pid\": \\([0-9]*\\).*/\\1/p' {user_tmp}/info); "
            "$b --ro-bind / / --userns 7 readlink /proc/self/ns/user 7</proc/$pid/ns/user "
            f"| cmp -s - {user_tmp}/first && [ -s {user_tmp}/first ] && echo joined; "
            "kill %1; wait")
        result = jailpy.raw(["bash", "-c", script])
        outputs.append(result.stdout)
    assert outputs[1] == outputs[0]
    assert outputs[1] == ("pid=1\nnested=refused\nasserted=0\nunasserted=1\n"
                          "copy\ncopy\nmore\n600\nhost\njoined\n")


def test_die_with_parent_takes_the_sandbox_and_its_lock(jailpy, user_tmp):
    """Killing the caller of `bwrap --die-with-parent --lock-file L` ends the sandbox,
    the command too (without a pid namespace it is not killed with one), and so
    releases the lock, as with bwrap."""
    lock = user_tmp / "lock"
    lock.write_text("")
    os.chown(lock, jailpy.user.uid, jailpy.user.gid)
    # A POSIX write lock, not waited for: fails while the sandbox holds its read lock.
    try_lock = ("import fcntl, sys; "
                "fcntl.lockf(open(sys.argv[1], 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)")
    outputs = []
    for binary in (BWRAP, FRONT_END):
        marker = "299.25" if binary == BWRAP else "299.75"
        script = (
            f"bash -c '{binary} {' '.join(USR)} --bind {user_tmp} {user_tmp} "
            f"--die-with-parent --lock-file {lock} sleep {marker}; true' >/dev/null 2>&1 & "
            "shell=$!; "
            f"for i in $(seq 100); do python3 -c \"{try_lock}\" {lock} 2>/dev/null || break; "
            "sleep 0.1; done; "
            f"python3 -c \"{try_lock}\" {lock} 2>/dev/null || echo locked; "
            "kill -9 $shell; "
            f"for i in $(seq 100); do pgrep -f '^sleep {marker}$' >/dev/null || break; sleep 0.1; "
            "done; "
            f"pgrep -f '^sleep {marker}$' >/dev/null && echo leftover || echo gone; "
            f"python3 -c \"{try_lock}\" {lock} && echo unlocked")
        outputs.append(jailpy.raw(["bash", "-c", script]).stdout)
    assert outputs[0] == outputs[1] == "locked\ngone\nunlocked\n"


#: Inside the sandbox: a jailpy set-up error, framed as pid 1 frames its reports
#: (runtime/channel.py), written to every pipe pid 1 holds that the command can open.
FORGE_REPORT = r"""
import marshal, os, stat
body = marshal.dumps(dict(error="SetupError", message="FORGED by the command",
                          origin=None, hint=None, exit_code=125))
for name in os.listdir("/proc/1/fd"):
    path = f"/proc/1/fd/{name}"
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, len(body).to_bytes(4, "little") + body)
            os.close(fd)
    except OSError:
        pass
"""


def test_the_command_cannot_speak_for_jailpy_through_pid_1(jailpy):
    """In bwrap mode pid 1 is dumpable (clients read /proc/CHILD-PID/ns), so the
    command can open what pid 1 holds: pid 1 has given up its report pipe by then,
    and what the command writes there reaches nobody. Signals keep bwrap's 128+N."""
    args = [FRONT_END, *USR, "--proc", "/proc", "--unshare-pid", "--unshare-user"]
    forged = jailpy.raw([*args, "python3", "-c", FORGE_REPORT])
    assert "FORGED" not in forged.stderr and forged.returncode == 0, forged.stderr
    killed = jailpy.raw([*args, "sh", "-c", "kill -TERM $$"])
    assert killed.returncode == 128 + 15, killed.stderr


#: As a client that keeps its own pid namespace would (bwrap's test-specifying-pidns):
#: a helper holds a user and a pid namespace; the front end joins them with --userns
#: and --pidns and makes a new pid namespace under the joined one (--unshare-pid),
#: the command its pid 1. What is child-pid on --info-fd and --json-status-fd?
PIDNS_CALLER = r"""
import fcntl, json, os, select, subprocess, sys
NS_GET_PARENT = 0xb702  # _IO(0xb7, 0x2), ioctl_ns(2)

def read_to_eof(fd):
    data = b""
    while select.select([fd], [], [], 20)[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            return data.decode()
        data += chunk
    raise SystemExit("no EOF on a report fd")

helper = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork",
                           "sh", "-c", "echo ready; exec cat"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
assert helper.stdout.readline() == "ready\n"
with open(f"/proc/{helper.pid}/task/{helper.pid}/children") as f:
    held = int(f.read().split()[0])
userns = os.open(f"/proc/{held}/ns/user", os.O_RDONLY)
pidns = os.open(f"/proc/{held}/ns/pid", os.O_RDONLY)
info_r, info_w = os.pipe()
status_r, status_w = os.pipe()
command = ["sh", "-c", "readlink /proc/self/ns/pid; read line; exit 7", "pidns-probe"]
proc = subprocess.Popen(
    [sys.argv[1], "--userns", str(userns), "--pidns", str(pidns), "--unshare-pid",
     "--as-pid-1", "--info-fd", str(info_w), "--json-status-fd", str(status_w),
     "--ro-bind", "/", "/", "--proc", "/proc", *command],
    pass_fds=(userns, pidns, info_w, status_w), stdin=subprocess.PIPE,
    stdout=subprocess.PIPE, text=True)
for fd in (info_w, status_w):
    os.close(fd)
info = json.loads(read_to_eof(info_r))
pid = info["child-pid"]
seen = {"info": info, "joined": os.readlink(f"/proc/{held}/ns/pid")}
seen["inside"] = proc.stdout.readline().strip()  # the command runs: pid 1 has exec'd
try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        seen["cmdline"] = f.read().decode().split("\0")[:-1]
    seen["ns"] = os.readlink(f"/proc/{pid}/ns/pid")
    with open(f"/proc/{pid}/status") as f:
        seen["nspid"] = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
    parent = fcntl.ioctl(fd, NS_GET_PARENT)
    seen["parent"] = [os.fstat(parent).st_ino, os.fstat(pidns).st_ino]
except OSError as exc:
    seen["error"] = f"{type(exc).__name__}: {exc}"
proc.communicate("go\n", timeout=30)
seen["status"] = proc.returncode
seen["json_status"] = [json.loads(line) for line in read_to_eof(status_r).splitlines()]
helper.stdin.close()
helper.wait(timeout=10)
print(json.dumps(seen))
"""


def test_pidns_with_unshare_pid_reports_the_host_pid(jailpy, user_tmp):
    """--pidns FD with --unshare-pid: the process jailpy forks is born inside the
    joined pid namespace, so fork() answers that namespace's number. child-pid must
    be the host's number for it, the one a client opens /proc/PID/ns by: its
    namespace is the new one under the joined one, and its command line is the
    command (--as-pid-1)."""
    caller = user_tmp / "pidns_caller.py"
    caller.write_text(PIDNS_CALLER)
    result = jailpy.raw(["/usr/bin/python3", str(caller), FRONT_END])
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    pid = seen["info"]["child-pid"]
    assert "error" not in seen, seen
    assert seen["cmdline"] == ["sh", "-c", "readlink /proc/self/ns/pid; read line; exit 7",
                               "pidns-probe"], seen
    new_ns = f"pid:[{seen['info']['pid-namespace']}]"
    assert seen["ns"] == seen["inside"] == new_ns != seen["joined"], seen
    assert seen["parent"][0] == seen["parent"][1], seen  # made under the joined one
    # The host's number, the joined namespace's, and 1 in its own.
    assert seen["nspid"][0] == str(pid) and seen["nspid"][-1] == "1" and len(seen["nspid"]) == 3
    assert seen["status"] == 7  # the command's own status, through both reports
    assert seen["json_status"][0]["child-pid"] == pid
    assert seen["json_status"][-1] == {"exit-code": 7}
