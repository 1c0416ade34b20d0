"""Known escapes, each run inside the `default` profile as the unprivileged test user.

Every attack asserts the exact failure inside (errno, or death by SIGSYS) and
has a counterpart that runs the same probe outside the sandbox, as the same
user, and shows it works there, so none of these tests can pass by accident.
Where an unprivileged user cannot do the thing on the host either (mount,
pivot_root), the counterpart runs in a plain user+mount namespace from
unshare(1), which is what the sandbox is built from: the difference is
jailpy's layers. docs/security.md maps each attack to the layer that stops it.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import subprocess
import time

import pytest

from .conftest import SIGSYS_STATUS, parse

pytestmark = pytest.mark.integration


def _wait_exec(pid: int, name: str) -> None:
    """Until the victim has exec'd `name` (bounded)."""
    for _ in range(200):
        try:
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == name:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"victim {pid} never became {name}")


def _wait_new_userns(pid: int) -> None:
    mine = os.readlink("/proc/self/ns/user")
    for _ in range(200):
        try:
            if os.readlink(f"/proc/{pid}/ns/user") != mine:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"victim {pid} never entered a new user namespace")


# -- terminal injection ---------------------------------------------------------------


def _in_pty(test_user, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run argv as the test user with a fresh pty as controlling terminal and stdio."""
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(test_user.gid)
                os.setuid(test_user.uid)
            os.chdir("/")
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    os.close(master)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


@pytest.mark.parametrize("variant", ["", "high-bits"])
@pytest.mark.parametrize("session", ["--new-session", "--no-new-session"])
def test_tiocsti_injection_refused(jailpy, helpers, test_user, session, variant):
    """TIOCSTI would push input into the caller's terminal; with --no-new-session the
    sandbox even shares the caller's session, so only the seccomp argument filter
    (which masks the upper 32 bits of cmd, as the kernel does) stops it."""
    h = str(helpers.dir)
    argv = [jailpy.binary, "run", "--ro-bind", h, h, session, "--", "python3", helpers.probe,
            "tiocsti", *([variant] if variant else [])]
    code, output = _in_pty(test_user, argv, jailpy.env())
    assert code == 0, output
    assert parse(output) == {"ok": False, "errno": "EPERM"}


@pytest.mark.parametrize("variant", ["", "high-bits"])
def test_tiocsti_counterpart_works_outside(jailpy, helpers, test_user, variant):
    argv = ["python3", helpers.probe, "tiocsti", *([variant] if variant else [])]
    code, output = _in_pty(test_user, argv, jailpy.env())
    assert code == 0, output
    assert parse(output)["ok"] is True
    assert output.startswith("#")  # the injected byte came back as terminal input (echo)


def test_tioclinux_refused(jailpy, helpers, test_user):
    h = str(helpers.dir)
    argv = [jailpy.binary, "run", "--ro-bind", h, h, "--no-new-session", "--", "python3",
            helpers.probe, "tioclinux"]
    code, output = _in_pty(test_user, argv, jailpy.env())
    assert code == 0, output
    assert parse(output) == {"ok": False, "errno": "EPERM"}


def test_tioclinux_counterpart_reaches_tty_driver(jailpy, helpers, test_user):
    """Outside, the ioctl reaches the pty driver, which answers (not EPERM)."""
    code, output = _in_pty(test_user, ["python3", helpers.probe, "tioclinux"], jailpy.env())
    assert code == 0, output
    assert parse(output).get("errno") != "EPERM"


# -- other processes ---------------------------------------------------------------------


def test_ptrace_host_process(attack, victim):
    pid = victim().pid
    _wait_exec(pid, "sleep")
    attack.works_outside("ptrace", str(pid))
    assert attack.refused("ptrace", str(pid)) == "EPERM"       # seccomp @ptrace


def test_process_vm_readv_host_process(attack, victim):
    pid = victim().pid
    _wait_exec(pid, "sleep")
    with open(f"/proc/{pid}/maps") as f:
        address = next(line.split("-")[0] for line in f if " r" in line)
    attack.works_outside("vm-read", str(pid), address)
    assert attack.refused("vm-read", str(pid), address) == "EPERM"  # seccomp @ptrace


def test_kill_host_pid(attack, victim):
    proc = victim()
    attack.works_outside("kill", str(proc.pid))
    assert attack.refused("kill", str(proc.pid)) == "ESRCH"    # pid namespace
    assert proc.poll() is None


def test_proc_root_of_host_pid(attack, victim):
    pid = victim().pid
    _wait_exec(pid, "sleep")
    attack.works_outside("proc-root", str(pid))
    assert attack.refused("proc-root", str(pid)) == "ENOENT"   # procfs of the sandbox's pid ns


def test_proc_ns_of_host_pid(attack, victim):
    pid = victim().pid
    _wait_exec(pid, "sleep")
    attack.works_outside("proc-ns", str(pid))
    assert attack.refused("proc-ns", str(pid)) == "ENOENT"


def test_setns_with_leaked_namespace_fd(attack, victim):
    """A user namespace fd handed in with --pass-fd cannot be joined."""
    pid = victim("unshare", "--user", "sleep", "60").pid
    _wait_new_userns(pid)
    fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    try:
        attack.works_outside("setns", str(fd), pass_fds=(fd,))
        assert attack.refused("setns", str(fd), options=("--pass-fd", str(fd)),
                              pass_fds=(fd,)) == "EPERM"       # seccomp @namespaces
    finally:
        os.close(fd)


# -- privileged kernel interfaces -------------------------------------------------------


def test_open_by_handle_at(attack):
    """The 'shocker' escape: forge a handle to reach files outside the sandbox root.
    Outside, name_to_handle_at works for the user (open_by_handle_at then needs
    CAP_DAC_READ_SEARCH); inside, seccomp refuses the first call already."""
    outside = attack.outside("handle", "/etc/hostname")
    assert parse(outside.stdout).get("value") != "name_to_handle_at", outside.stdout
    verdict = parse(attack.inside("handle", "/etc/hostname").stdout)
    assert verdict == {"ok": False, "value": "name_to_handle_at", "errno": "EPERM"}


def test_open_by_handle_at_counterpart_as_host_root(helpers):
    """The complete attack works for whoever holds CAP_DAC_READ_SEARCH: the host's root."""
    if os.geteuid() != 0:
        pytest.skip("only the host's root holds CAP_DAC_READ_SEARCH (run the suite as root)")
    result = subprocess.run(["python3", helpers.probe, "handle", "/etc/hostname"],
                            capture_output=True, text=True, timeout=30)
    assert parse(result.stdout)["ok"] is True, result.stdout


def test_mount_umount_pivot_root(attack, user_tmp):
    """Reveal the old root by mounting, unmounting or pivoting."""
    target = user_tmp / "mnt"
    target.mkdir()
    target.chmod(0o777)
    counterpart = attack.outside("mount-then-pivot", str(target),
                                 wrap=("unshare", "-Urm", "--propagation", "private"))
    assert parse(counterpart.stdout) == {"ok": True, "value": "pivoted"}, counterpart.stderr
    assert attack.refused("mount", "/tmp") == "EPERM"            # seccomp @mount
    assert attack.refused("umount", "/proc") == "EPERM"
    assert attack.refused("pivot-root") == "EPERM"
    mountinfo = attack.jailpy.sandbox("cat /proc/self/mountinfo; ls -a /")
    assert "oldroot" not in mountinfo.stdout and "newroot" not in mountinfo.stdout


def test_remount_readonly_bind_readwrite(attack, user_tmp):
    data = user_tmp / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, attack.jailpy.user.uid, attack.jailpy.user.gid)
    script = (f"mount --bind {data} {data} && mount -o remount,bind,ro {data} && "
              f"python3 {attack.helpers.probe} remount-rw {data}")
    counterpart = attack.outside("-c", script, program="sh", wrap=("unshare", "-Urm"))
    assert parse(counterpart.stdout) == {"ok": True, "value": "written"}, counterpart.stderr
    (data / "written").unlink()
    result = attack.inside("remount-rw", str(data), options=("--ro-bind", str(data), str(data)))
    assert parse(result.stdout) == {"ok": False, "value": "mount: EPERM", "errno": "EPERM"}
    assert not (data / "written").exists()


def test_write_to_readonly_bind(attack, user_tmp):
    data = user_tmp / "ro"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, attack.jailpy.user.uid, attack.jailpy.user.gid)
    attack.works_outside("write", str(data / "outside"))
    assert attack.refused("write", str(data / "inside"),
                          options=("--ro-bind", str(data), str(data))) == "EROFS"
    assert not (data / "inside").exists()


@pytest.mark.parametrize("uid", [None, "0"])
def test_create_device_node(attack, uid):
    """mknod of /dev/null's numbers, also as uid 0 inside; the counterpart is the host's
    real root, the only one who may do it."""
    options = ("--uid", uid) if uid else ()
    assert attack.refused("mknod", "/tmp/null", options=options) == "EPERM"  # no CAP_MKNOD


def test_create_device_node_counterpart_as_host_root(helpers, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only the host's root can create device nodes (run the suite as root)")
    result = subprocess.run(["python3", helpers.probe, "mknod", str(tmp_path / "null")],
                            capture_output=True, text=True, timeout=30)
    assert parse(result.stdout) == {"ok": True, "value": "created"}


@pytest.mark.parametrize("probe,outside_errno", [
    ("keyctl", None),          # the session keyring: works for any user
    ("perf", None),            # a software counter on oneself (perf_event_paranoid <= 2)
    ("userfaultfd", None),     # UFFD_USER_MODE_ONLY works unprivileged
    ("bpf", "EINVAL"),         # the unknown command reaches bpf(), which answers EINVAL
])
def test_privileged_kernel_interfaces(attack, probe, outside_errno):
    outside = parse(attack.outside(probe).stdout)
    if outside_errno is None:
        assert outside["ok"] is True, outside
    else:
        assert outside == {"ok": False, "errno": outside_errno}
    assert attack.refused(probe) == "EPERM"                       # seccomp @default


# -- foreign ABIs ---------------------------------------------------------------------------


def test_i386_syscall_cannot_bypass(attack, helpers):
    """int 0x80 selects the i386 table, where a deny-list keyed on x86_64 numbers would
    match nothing: the filter's architecture check kills the process."""
    binary = helpers.binary("i386_getpid")
    outside = attack.outside(program=binary)
    assert outside.returncode == 0 and parse(outside.stdout)["ok"] is True, outside
    inside = attack.inside(program=binary)
    assert inside.returncode == SIGSYS_STATUS, (inside.returncode, inside.stdout)
    assert inside.stdout == ""


def test_x32_syscall_cannot_bypass(attack, helpers):
    """Syscall numbers with the x32 bit (0x40000000) are refused by the filter itself.
    This kernel has no x32 ABI (CONFIG_X86_X32_ABI off), so outside the call ends in
    ENOSYS; inside, the filter kills the process before the kernel looks."""
    binary = helpers.binary("x32_getpid")
    outside = attack.outside(program=binary)
    assert outside.returncode == 0, outside
    assert parse(outside.stdout)["ok"] in (True, False)           # ran to completion
    inside = attack.inside(program=binary)
    assert inside.returncode == SIGSYS_STATUS, (inside.returncode, inside.stdout)
    assert inside.stdout == ""


# -- nested user namespaces --------------------------------------------------------------


@pytest.mark.parametrize("probe,inside_errno", [
    ("unshare-user", "EPERM"), ("clone-user", "EPERM"), ("clone3-user", "ENOSYS")])
def test_nested_user_namespace_forbidden(attack, probe, inside_errno):
    attack.works_outside(probe)
    assert attack.refused(probe) == inside_errno          # seccomp allow_userns = false


def test_threads_still_work_with_clone3_refused(attack):
    """glibc's pthread_create tries clone3 first; ENOSYS makes it fall back to clone."""
    result = attack.inside("thread")
    assert parse(result.stdout) == {"ok": True, "value": "thread ran"}, result.stderr


def test_unshare_command_fails_inside(jailpy):
    result = jailpy.sandbox("unshare -U true; echo status=$?")
    assert "status=1" in result.stdout
    assert "Operation not permitted" in result.stderr


# -- network ----------------------------------------------------------------------------------


def test_host_abstract_unix_socket(attack, host_listeners):
    name, _ = host_listeners
    attack.works_outside("abstract", name)
    assert attack.refused("abstract", name) == "ECONNREFUSED"    # network namespace


def test_host_abstract_unix_socket_with_shared_network(attack, host_listeners):
    """Even sharing the host network, Landlock's abstract-socket scope refuses it."""
    name, _ = host_listeners
    assert attack.refused("abstract", name, options=("--net", "host")) == "EPERM"
    counterpart = attack.inside("abstract", name, options=("--net", "host", "--no-landlock"))
    assert parse(counterpart.stdout) == {"ok": True, "value": "connected"}


def test_host_tcp_listener(attack, host_listeners):
    _, port = host_listeners
    attack.works_outside("tcp", str(port))
    assert attack.refused("tcp", str(port)) == "ECONNREFUSED"    # network namespace


# -- descriptors, environment, symlinks ---------------------------------------------------


def test_inherited_fd_is_closed(attack):
    """A descriptor the caller leaked (here: /etc/shadow opened by root) is not usable."""
    if os.geteuid() != 0:
        pytest.skip("needs root to open a root-only file for the leak")
    fd = os.open("/etc/shadow", os.O_RDONLY)
    try:
        attack.works_outside("fd-read", str(fd), pass_fds=(fd,))
        assert attack.refused("fd-read", str(fd), pass_fds=(fd,)) == "EBADF"
    finally:
        os.close(fd)


def test_passed_directory_fd_cannot_climb_out(attack, user_tmp):
    """chroot-style escape with a leftover directory fd: openat(fd, "../secret").
    The fd is passed on purpose (--pass-fd); beneath it stays readable, above it
    Landlock refuses."""
    box = user_tmp / "box"
    box.mkdir()
    (box / "inside.txt").write_text("inside")
    (user_tmp / "secret.txt").write_text("secret")
    for path in (box, box / "inside.txt", user_tmp / "secret.txt"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    fd = os.open(box, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert attack.works_outside("dirfd-open", str(fd), "../secret.txt",
                                    pass_fds=(fd,))["value"] == "secret"
        options = ("--pass-fd", str(fd))
        assert attack.refused("dirfd-open", str(fd), "../secret.txt", options=options,
                              pass_fds=(fd,)) == "EACCES"          # Landlock
        inside = attack.inside("dirfd-open", str(fd), "inside.txt", options=options,
                               pass_fds=(fd,))
        assert parse(inside.stdout) == {"ok": True, "value": "inside"}
    finally:
        os.close(fd)


def test_chroot_escape(attack, user_tmp):
    """The classic: chroot into a subdirectory while keeping a cwd outside it."""
    attack.works_outside("chroot", "/", wrap=("unshare", "-Ur"))
    assert attack.refused("chroot", "/tmp") == "EPERM"           # seccomp @mount, no caps


def test_environment_not_passed(attack, helpers):
    preload = helpers.binary("preload.so")
    env = {"LD_PRELOAD": preload, "SECRET_TOKEN": "s3cret", "DBUS_SESSION_BUS_ADDRESS": "x"}
    outside = attack.outside("env", env=env)
    assert f"PRELOADED on {socket.gethostname()}" in outside.stderr
    assert parse(outside.stdout)["value"]["SECRET_TOKEN"] == "s3cret"
    inside = attack.inside("env", env=env)
    assert inside.returncode == 0, inside.stderr
    assert "PRELOADED on jailpy" not in inside.stderr     # jailpy itself runs on the host
    seen = parse(inside.stdout)["value"]
    assert not {"LD_PRELOAD", "SECRET_TOKEN", "DBUS_SESSION_BUS_ADDRESS"} & set(seen)


@pytest.mark.parametrize("link", ["absolute", "relative", "oldroot"])
def test_symlink_in_bind_source_does_not_redirect_ops(jailpy, user_tmp, link):
    """A user-controlled bind source holds a symlink; later ops aimed through it must
    stay inside the sandbox root instead of creating files on the host."""
    source, victim_dir = user_tmp / "src", user_tmp / "victim"
    source.mkdir()
    victim_dir.mkdir()
    target = {"absolute": str(victim_dir),
              "relative": "../" * 12 + str(victim_dir).lstrip("/"),
              "oldroot": "/oldroot" + str(victim_dir)}[link]
    (source / "evil").symlink_to(target)
    for path in (source, victim_dir):
        path.chmod(0o777)
    if link != "oldroot":  # counterpart: followed on the host, the link does reach the victim
        probe = jailpy.raw(["sh", "-c", f"echo x > {source}/evil/probe && cat {victim_dir}/probe"])
        assert probe.stdout.strip() == "x", probe.stderr
        (victim_dir / "probe").unlink()
    result = jailpy.run(["run", "--bind", str(source), "/w", "--file", "pwned", "/w/evil/pwned",
                         "--dir", "/w/evil/newdir", "--", "true"])
    assert result.returncode in (0, 125), result.stderr
    assert sorted(p.name for p in victim_dir.iterdir()) == []


def test_file_capability_binary_gains_nothing(attack, helpers, user_tmp):
    """A binary with file capabilities (setcap) runs without them inside: nosuid
    binds, no_new_privs and locked securebits all refuse the gain."""
    if os.geteuid() != 0 or not shutil.which("setcap"):
        pytest.skip("needs root and setcap to prepare a file-capability binary")
    binary = user_tmp / "capython"
    shutil.copy("/usr/bin/python3", binary)
    subprocess.run(["setcap", "cap_net_raw+ep", str(binary)], check=True)
    binary.chmod(0o755)
    outside = parse(attack.jailpy.raw([str(binary), attack.helpers.probe, "status"]).stdout)
    assert int(outside["value"]["CapEff"], 16) == 1 << 13      # CAP_NET_RAW
    result = attack.jailpy.run(["run", "--ro-bind", str(attack.helpers.dir),
                                str(attack.helpers.dir), "--ro-bind", str(user_tmp),
                                str(user_tmp), "--", str(binary), attack.helpers.probe, "status"])
    inside = parse(result.stdout)
    assert int(inside["value"]["CapEff"], 16) == 0
    assert int(inside["value"]["CapPrm"], 16) == 0
