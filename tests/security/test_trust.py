"""The trust boundary (issue 11): nothing a sandbox writes may decide how a later
sandbox is built, and jailpy's own files and inputs are hardened.

Each test replays one finding of the attack review as the unprivileged test
user with the real CLI: a first, untrusted run (or a planted file) tries to
change what the next, unchanged `jailpy run` does, or to make jailpy write
where it must not. The homes and workspaces are scratch directories (HOME
points there), so a run against an unfixed jailpy poisons nothing shared.
"""

from __future__ import annotations

import json
import marshal
import os
import tomllib
import uuid
from pathlib import Path

import pytest

from conftest import as_user_file, chown_tree, process_tree

SECRET = "the-ssh-key-" + uuid.uuid4().hex


def as_user(jailpy, args: list[str], env: dict[str, str], **kwargs):
    """`jailpy ARGS` as the test user with exactly these variables set (runuser
    itself resets HOME to the passwd entry's)."""
    assigned = [f"{name}={value}" for name, value in env.items()]
    return jailpy.raw(["env", *assigned, jailpy.binary, *args], **kwargs)


@pytest.fixture
def ci(jailpy, test_user, user_tmp):
    """A CI machine in miniature: a home holding a secret and a workspace (the cwd)
    that keeps the caches and config in it, as CI setups commonly do."""
    home = user_tmp / "home"
    workspace = user_tmp / "project"
    as_user_file(home / ".ssh" / "id_rsa", SECRET, test_user, 0o600)
    workspace.mkdir()
    chown_tree(user_tmp, test_user)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(workspace / ".cache"),
           "XDG_CONFIG_HOME": str(workspace / ".config")}

    def run(script: str, *options: str, extra_env: dict[str, str] | None = None):
        return as_user(jailpy, ["run", *options, "--", "sh", "-c", script],
                       {**env, **(extra_env or {})}, cwd=workspace)

    run.home, run.workspace, run.env = home, workspace, env  # type: ignore[attr-defined]
    return run


def _secret_readable(ci) -> bool:
    """The unchanged next run of the CI step: can the build read ~/.ssh?"""
    result = ci(f"cat {ci.home}/.ssh/id_rsa 2>/dev/null || true", "-p", "ci-build")
    assert result.returncode == 0, result.stderr
    return SECRET in result.stdout


def _forged_default(ci) -> bytes:
    """A parse-cache file whose entry for the shipped default.toml binds the home
    read-write and turns seccomp and Landlock off (the stat key is what anyone who
    can see the install computes)."""
    from jailpy.profile.loader import shipped_profiles_dir

    shipped = shipped_profiles_dir()
    installed = Path(os.environ.get("JAILPY_VENV", "/opt/jailpy/venv"))
    found = sorted(installed.glob("lib/python3*/site-packages/jailpy/profiles/default.toml"))
    path = os.path.realpath(found[0] if found else shipped / "default.toml")
    st = os.stat(path)
    doc = tomllib.loads(Path(path).read_text())
    doc["filesystem"]["mounts"].append({"bind": str(ci.home)})
    doc["seccomp"] = {"enabled": False}
    doc["landlock"] = {"enabled": False}
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return marshal.dumps({"format": 1, "entries": {path: (key, doc)}})


def _cache_files(cache_home: Path) -> list[Path]:
    """Where a parse cache is read from: v1 before issue 11, v2 (signed) after; the
    attacker writes both."""
    return [cache_home / "jailpy" / f"profiles-v{n}.marshal" for n in (1, 2)]


def _write_from_inside(ci, path: Path, data: bytes, *options: str, extra_env=None):
    """The untrusted build writes `data` to `path` (private dir and file, as jailpy's)."""
    octal = "".join("\\%03o" % b for b in data)  # printf's format: no '%' left in it
    script = (f"mkdir -p -m 700 {path.parent} && umask 077 && "
              f"printf '{octal}' > {path}.new && mv {path}.new {path}; echo rc=$?")
    return ci(script, *options, extra_env=extra_env)


def test_build_cannot_plant_a_profile_for_the_next_run(ci):
    """Finding 1: $XDG_CONFIG_HOME in the workspace, a planted ci-build.toml."""
    assert not _secret_readable(ci)
    planted = ci.workspace / ".config" / "jailpy" / "profiles" / "ci-build.toml"
    text = f'extends = ["default"]\n[filesystem]\nmounts = [{{ bind = "{ci.home}" }}]\n'
    _write_from_inside(ci, planted, text.encode(), "-p", "ci-build")
    assert not _secret_readable(ci), "a profile planted by the build applied to the next run"


def test_build_cannot_poison_the_parse_cache_for_the_next_run(ci):
    """Finding 1: $XDG_CACHE_HOME in the workspace, a forged parse cache."""
    assert not _secret_readable(ci)
    for cache in _cache_files(ci.workspace / ".cache"):
        result = _write_from_inside(ci, cache, _forged_default(ci), "-p", "ci-build")
        assert result.returncode == 0, result.stderr
    assert not _secret_readable(ci), "a cache entry forged by the build applied to the next run"


def test_cache_written_where_no_run_protected_it_is_not_believed(ci):
    """Finding 1, second layer: a build run WITHOUT $XDG_CACHE_HOME (so the
    workspace's .cache was no cache dir then, and not hidden) forges a cache that a
    later run with XDG_CACHE_HOME=workspace/.cache reads: the per-user key, which
    no sandbox sees, is what stops it."""
    for cache in _cache_files(ci.workspace / ".cache"):
        result = _write_from_inside(ci, cache, _forged_default(ci), "-p", "ci-build",
                                    extra_env={"XDG_CACHE_HOME": ""})
        assert "rc=0" in result.stdout, result.stdout + result.stderr
    assert not _secret_readable(ci), "an unsigned cache entry was believed"


def test_whole_home_read_write_cannot_change_the_next_run(ci):
    """Done-when: `--bind ~ ~` gives the sandbox the whole home read-write; it plants
    a profile and a forged cache in the home's own config and cache directories,
    and the next plain `jailpy run` is unchanged."""
    env = {"XDG_CACHE_HOME": "", "XDG_CONFIG_HOME": ""}
    home = ci.home
    profile = home / ".config" / "jailpy" / "profiles" / "default.toml"
    text = f'extends = ["default"]\n[filesystem]\nmounts = [{{ bind = "{home}" }}]\n'
    _write_from_inside(ci, profile, text.encode(), "--bind", str(home), str(home),
                       extra_env=env)
    for cache in _cache_files(home / ".cache"):
        _write_from_inside(ci, cache, _forged_default(ci), "--bind", str(home), str(home),
                           extra_env=env)
    after = ci(f"cat {home}/.ssh/id_rsa 2>/dev/null; ls {home}", extra_env=env)
    assert after.returncode == 0, after.stderr
    assert SECRET not in after.stdout, "the whole-home sandbox changed the next run"
    assert not profile.exists()


def test_whole_home_sandbox_sees_jailpy_state_hidden_and_explain_says_so(ci):
    home = str(ci.home)
    env = {"XDG_CACHE_HOME": "", "XDG_CONFIG_HOME": ""}
    explained = ci("true", "--explain", "--bind", home, home, extra_env=env)
    assert f"hide       {home}/.config/jailpy" in explained.stdout, explained.stdout
    assert f"hide       {home}/.cache/jailpy" in explained.stdout
    inside = ci(f"touch {home}/.cache/jailpy/x 2>&1; ls -A {home}/.cache/jailpy", "--bind",
                home, home, extra_env=env)
    assert "Read-only file system" in inside.stdout, inside.stdout


def test_status_file_is_never_written_through_a_symlink(jailpy, ci, test_user, user_tmp):
    """Finding 2: a symlink committed in the workspace at the status file's name."""
    victim = as_user_file(user_tmp / "victim", "precious\n", test_user, 0o644)
    link = ci.workspace / "status.json"
    link.symlink_to(victim)
    os.lchown(link, test_user.uid, test_user.gid)
    result = ci("true", "--json-status", str(link))
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "precious\n", "jailpy wrote through the planted symlink"
    assert not link.is_symlink() and '"exit_code": 0' in link.read_text()


def test_build_cannot_touch_the_status_file_while_it_runs(ci):
    """The status file lies in the workspace: the build must not append to it (an
    unfixed jailpy wrote its JSON over the start and left the rest)."""
    status = ci.workspace / "status.json"
    forged = '{"exit_code": 0}' + " " * 4000 + "forged"
    result = ci(f"for f in status.json .status.json.*.tmp; do [ -f $f ] && "
                f"printf '%s' '{forged}' >> $f 2>/dev/null && echo WROTE; done; true",
                "-p", "ci-build", "--json-status", str(status))
    assert result.returncode == 0, result.stderr
    assert "WROTE" not in result.stdout
    assert json.loads(status.read_text())["exit_code"] == 0


def test_wrap_refuses_a_program_name_with_a_newline(jailpy, test_user, user_tmp):
    """Finding 3: `tool\\ntouch X` became a shell line of its own in the wrapper."""
    tools, bin_dir, elsewhere = user_tmp / "tools", user_tmp / "bin", user_tmp / "cwd"
    name = "tool\ntouch PWNED"
    as_user_file(tools / name, "#!/bin/sh\nexit 0\n", test_user, 0o755)
    elsewhere.mkdir()
    chown_tree(user_tmp, test_user)
    result = as_user(jailpy, ["wrap", "-p", "default", "--bin-dir", str(bin_dir), name],
                     {"PATH": f"{tools}:/usr/bin:/bin", "HOME": str(user_tmp)})
    wrapper = bin_dir / name
    if wrapper.exists():  # what an unfixed jailpy leaves: run it as a menu would
        jailpy.raw(["sh", str(wrapper)], cwd=elsewhere)
    assert not (elsewhere / "PWNED").exists(), "a line of the wrapper ran outside any sandbox"
    assert result.returncode == 125, result.stdout + result.stderr
    assert "control character" in result.stderr and "Traceback" not in result.stderr


def test_minimal_refuses_ptrace_and_io_uring_like_default(jailpy):
    """Finding 4: a stricter-sounding profile refuses at least what default does."""
    probe = ("import ctypes, os\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "for name, nr, args in (('ptrace', 101, (0x7fff, 0, 0, 0)),"
             " ('io_uring_setup', 425, (1, ctypes.create_string_buffer(120)))):\n"
             "    ret = libc.syscall(nr, *args)\n"
             "    print(name, 'EPERM' if ret < 0 and ctypes.get_errno() == 1 else 'ALLOWED')\n")
    for profile in ("default", "minimal"):
        result = jailpy.run(["run", "-p", profile, "--", "python3", "-c", probe])
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["ptrace", "EPERM", "io_uring_setup", "EPERM"], \
            f"{profile}: {result.stdout}"


def test_workspace_guard_uses_the_passwd_home(jailpy, test_user):
    """Finding 5: HOME elsewhere, ci-build started in the real home."""
    result = as_user(jailpy, ["run", "-p", "ci-build", "--", "ls", "-A", "."],
                     {"HOME": "/var/tmp"}, cwd=test_user.home)
    assert result.returncode == 125, result.stdout + result.stderr
    assert f"contains the home directory {os.path.realpath(test_user.home)}" in result.stderr


def test_sandbox_cannot_take_the_users_inotify_instances(jailpy, test_user):
    """Finding 6: the sandbox's user namespace carries its own, lower quota, so the
    user's programs outside still get inotify instances while it holds all it can."""
    hog = ("import ctypes, sys, time\nlibc = ctypes.CDLL(None)\nn = 0\n"
           "while n < 100000 and libc.inotify_init() >= 0:\n    n += 1\n"
           "print(n, flush=True)\ntime.sleep(30)\n")
    proc = jailpy.popen(["run", "--", "python3", "-c", hog], stdout=-1, text=True)
    try:
        held = int(proc.stdout.readline())
        outside = jailpy.raw(["python3", "-c",
                              "import ctypes; print(ctypes.CDLL(None).inotify_init())"])
    finally:
        for pid in reversed(process_tree(proc.pid)):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        proc.wait(timeout=10)
    assert int(outside.stdout) >= 0, f"the sandbox took all {held} inotify instances"
    assert held <= 32


@pytest.mark.parametrize("options, cause", [
    (("--json-status-fd", "1"), "is the command's stdout"),
    (("--json-status-fd", "2"), "is the command's stderr"),
    (("--json-status-fd", "3", "--pass-fd", "3"), "also given to the command"),
])
def test_status_fd_conflicts_are_refused(jailpy, options, cause):
    """Finding 7 (first half): the status fd must be no fd the command writes."""
    result = jailpy.run(["run", *options, "--", "sh", "-c", "echo visible"])
    assert result.returncode == 125, result.stdout + result.stderr
    assert cause in result.stderr and "visible" not in result.stdout


@pytest.mark.parametrize("options, env, cause", [
    (("--size", "0", "--tmpfs", "/scratch"), {}, "size of 0"),
    (("--hostname", "a\nb"), {}, "not a valid hostname"),
    (("-p", ""), {}, "not a profile name"),
    ((), {"HOME": "/"}, "${HOME} is /, a system directory"),
    ((), {"HOME": "/usr"}, "${HOME} is /usr, a system directory"),
])
def test_bad_input_is_one_clear_line(jailpy, options, env, cause):
    """Finding 8: each is refused with 125 and a line naming it, never passed on."""
    result = as_user(jailpy, ["run", *options, "--", "true"], env)
    assert result.returncode == 125, result.stdout + result.stderr
    assert cause in result.stderr and "Traceback" not in result.stderr


def test_huge_mount_list_is_refused_quickly(jailpy, test_user, user_tmp):
    """Finding 8: 200,000 mount ops ran past 20 s; now a limit with a clear error."""
    ops = "".join(f'  {{ tmpfs = "/t/{i}" }},\n' for i in range(200_000))
    profile = as_user_file(user_tmp / "huge.toml", f"[filesystem]\nmounts = [\n{ops}]\n",
                           test_user)
    result = jailpy.run(["run", "-p", str(profile), "--", "true"], timeout=20)
    assert result.returncode == 125, result.stderr
    assert "larger than 4 MiB" in result.stderr or "mount ops; at most" in result.stderr
