"""profile/learn.py: the strace log is untrusted input; the profile it leads to is exact.

The log comes from inside a sandbox. These tests feed it hostile paths
(quotes, newlines, fake results inside a name), lines that are not strace's
and random text, and check that only what strace itself reported is taken,
that the written profile parses back to the same content, and the collapse
rule.
"""

from __future__ import annotations

import os
import tomllib

from hypothesis import given, settings, strategies as st

from jailpy.api import load_policy
from jailpy.policy import MountOp
from jailpy.profile import learn


def hx(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return "".join(f"\\x{b:02x}" for b in data)


def line(pid: int, call: str) -> str:
    return f"{pid}  {call}\n"


def test_a_hostile_file_name_is_one_path_not_a_second_call():
    name = '/w/x", O_RDONLY) = 3</etc/shadow>\n4 openat(AT_FDCWD, "/root/.ssh/id_rsa'
    log = [line(4, f'openat(AT_FDCWD<{hx("/w")}>, "{hx(name)}", O_RDONLY) = 3<{hx(name)}>')]
    seen = learn.read_trace(log, "/w").seen
    assert set(seen.paths) == {name.encode()}
    assert seen.paths[name.encode()] == {"read"}


def test_unescaped_strings_and_foreign_lines_are_skipped_not_guessed():
    log = ['4  openat(AT_FDCWD, "/etc/shadow", O_RDONLY) = 3\n',  # not strace -xx's form
           "strace: something\n", "garbage (\n",
           line(4, f'openat(AT_FDCWD<{hx("/w")}>, "{hx("/etc/pass")}"..., O_RDONLY) = 3')]
    seen = learn.read_trace(log, "/w").seen
    assert seen.paths == {}
    assert sum(seen.skipped.values()) == 4


def test_relative_paths_resolve_against_the_decorated_cwd_and_dirfd():
    log = [line(7, f'openat(AT_FDCWD<{hx("/proj")}>, "{hx("a.c")}", O_RDONLY) = 3'),
           line(7, f'newfstatat(5<{hx("/proj/sub")}>, "{hx("b.h")}", {{st_mode=S_IFREG}}, 0)'
                   " = 0"),
           line(7, f'openat(AT_FDCWD<{hx("/proj")}>, "{hx("out.o")}", '
                   "O_WRONLY|O_CREAT|O_TRUNC, 0666) = 4"),
           line(7, f'chdir("{hx("/elsewhere")}") = 0'),
           line(7, f'access("{hx("rel")}", R_OK) = 0')]
    seen = learn.read_trace(log, "/start").seen
    assert seen.paths == {b"/proj/a.c": {"read"}, b"/proj/sub/b.h": {"read"},
                          b"/proj/out.o": {"create"}, b"/elsewhere": {"read"},
                          b"/elsewhere/rel": {"read"}}


def test_unfinished_calls_are_joined_with_their_resumption():
    log = [line(3, f'openat(AT_FDCWD<{hx("/p")}>, "{hx("f")}", O_RDONLY <unfinished ...>'),
           line(4, "getpid() = 4"),
           line(3, "<... openat resumed>) = 5"),
           line(4, "exit_group(0) = ?"), "4  +++ exited with 0 +++\n"]
    seen = learn.read_trace(log, "/").seen
    assert seen.paths == {b"/p/f": {"read"}}
    assert seen.syscalls == {"openat", "getpid", "exit_group"}


def test_tcp_connects_and_binds_by_socket_type():
    sock = hx("socket:[77]")
    udp = hx("socket:[78]")
    log = [line(2, f"socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3<{sock}>"),
           line(2, f"socket(AF_INET, SOCK_DGRAM, IPPROTO_IP) = 4<{udp}>"),
           line(2, f"connect(3<{sock}>, {{sa_family=AF_INET, sin_port=htons(8080), "
                   f'sin_addr=inet_addr("{hx("127.0.0.1")}")}}, 16) = 0'),
           line(2, f"connect(4<{udp}>, {{sa_family=AF_INET, sin_port=htons(53), "
                   f'sin_addr=inet_addr("{hx("10.0.2.3")}")}}, 16) = 0'),
           line(2, f"bind(3<{sock}>, {{sa_family=AF_INET, sin_port=htons(9000), "
                   f'sin_addr=inet_addr("{hx("0.0.0.0")}")}}, 16) = 0'),
           line(2, f'connect(5<{hx("socket:[9]")}>, {{sa_family=AF_UNIX, '
                   f'sun_path="{hx("/tmp/.X11-unix/X0")}"}}, 110) = 0')]
    seen = learn.read_trace(log, "/").seen
    assert seen.tcp_connect == {8080} and seen.tcp_bind == {9000}
    assert seen.unix == {b"/tmp/.X11-unix/X0"}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list('0123456789 abc()<>{}[]"=,.?\\x/-_')),
                        max_size=80), max_size=20))
def test_random_lines_never_raise(lines):
    learn.read_trace([f"1 {text}\n" for text in lines] + lines, "/")


def test_the_profile_parses_back_and_loads(tmp_path):
    weird = tmp_path / 'dollar $HOME "quote"'
    weird.mkdir()
    (weird / "f").write_text("x")
    seen = learn.Observations()
    seen.use(os.fsencode(weird / "f"), "read")
    (tmp_path / "out").mkdir()
    seen.use(os.fsencode(tmp_path / "out" / "made"), "create")
    seen.syscalls = {"read", "openat", "keyctl"}
    learning = (MountOp("ro-bind", "/", "/"), MountOp("bind", str(tmp_path), str(tmp_path)))
    learned = learn.learn(seen, (), learning, ("/",), frozenset({"keyctl"}))
    learned.runs.append("sh -c 'echo a\nrm -rf /' -> exit 0")
    native = {"read", "openat", "open", "execve", "exit", "exit_group", "write", "brk", "mmap",
              "munmap", "rt_sigreturn", "unlink", "unlinkat"}
    text = learn.document(learned, "default", ("/",), "none", native)
    doc = tomllib.loads(text)
    mounts = doc["filesystem"]["mounts"]
    assert {"ro-bind": str(weird / "f").replace("$", "$$")} in mounts
    assert {"bind": str(tmp_path / "out")} in mounts
    assert "keyctl" not in doc["seccomp"]["allow"] and doc["seccomp"]["deny"] == ["keyctl"]
    assert {"open", "unlink", "unlinkat"} <= set(doc["seccomp"]["allow"])
    assert "# run: sh -c 'echo a\\nrm -rf /' -> exit 0" in text
    out = tmp_path / "learned.toml"
    out.write_text(text)
    policy = load_policy(str(out))
    assert policy.seccomp.default_action == "deny"
    sources = {op.source for op in policy.filesystem.ops}
    assert str(weird / "f") in sources  # $$ is one dollar again after expansion
    back, base = learn.read_learned(str(out))
    assert base == "default" and back.binds.keys() == learned.binds.keys()
    assert back.runs == ["sh -c 'echo a\\nrm -rf /' -> exit 0"]


def test_collapse_rule_and_the_protected_home(tmp_path):
    lib = tmp_path / "deep" / "lib"
    lib.mkdir(parents=True)
    for i in range(10):
        (lib / f"m{i}.so").write_text("")
    home = tmp_path / "home"
    home.mkdir()
    for i in range(10):
        (home / f"dot{i}").write_text("")
    seen = learn.Observations()
    for i in range(8):
        seen.use(os.fsencode(lib / f"m{i}.so"), "read")
    for i in range(9):
        seen.use(os.fsencode(home / f"dot{i}"), "read")
    seen.use(os.fsencode(home), "list")
    learned = learn.learn(seen, (), (), ("/", str(home)), frozenset())
    assert learned.binds[str(lib)][0] == "ro"  # 8 of 10: collapsed
    assert not any(str(lib) + "/" in path for path in learned.binds)
    assert str(home) not in learned.binds  # never the home directory whole
    assert len([p for p in learned.binds if p.startswith(str(home) + "/")]) == 9


def test_the_closer_is_left_out_and_every_process_must_end():
    """jailpy's closer (a shell that closes the record's descriptor and execs the
    command) is the first process until its second execve succeeds: its opens are
    not the command's. A process whose end is not in the record leaves it unended."""
    log = [line(5, 'execve("' + hx("/bin/sh") + '", ["sh"], 0x1 /* 3 vars */) = 0'),
           line(5, f'openat(AT_FDCWD<{hx("/")}>, "{hx("/etc/shell-only")}", O_RDONLY) = 3<'
                   f'{hx("/etc/shell-only")}>'),
           line(5, 'execve("' + hx("/usr/local/bin/cmd") + '", ["cmd"], 0x1) = -1 ENOENT '
                   '(No such file or directory)'),
           line(5, 'execve("' + hx("/usr/bin/cmd") + '", ["cmd"], 0x1 /* 3 vars */) = 0'),
           line(5, f'openat(AT_FDCWD<{hx("/")}>, "{hx("/etc/cmd-only")}", O_RDONLY) = 3<'
                   f'{hx("/etc/cmd-only")}>'),
           line(5, "clone(child_stack=NULL, flags=SIGCHLD) = 6"),
           line(6, "getpid() = 6"),
           line(6, "+++ exited with 0 +++")]
    record = learn.read_trace(log, "/", wrapped=True)
    assert set(record.seen.paths) == {b"/usr/bin/cmd", b"/etc/cmd-only"}
    assert record.unended == {"5"}
    record.feed(line(5, "+++ killed by SIGTERM +++"))
    assert record.unended == set()
    unwrapped = learn.read_trace(log, "/").seen
    assert b"/etc/shell-only" in unwrapped.paths


def test_a_thread_that_execs_ends_as_the_leader():
    log = [line(7, "clone3({flags=CLONE_VM|CLONE_THREAD, ...}, 88) = 8"),
           line(8, 'execve("' + hx("/usr/bin/next") + '", ["next"], 0x1 <unfinished ...>'),
           line(7, "+++ superseded by execve in pid 8 +++"),
           line(7, "<... execve resumed>) = 0"),
           line(7, "+++ exited with 0 +++")]
    assert learn.read_trace(log, "/").unended == set()


def test_a_write_led_by_a_changed_symlink_to_a_read_only_place_binds_nothing(tmp_path):
    """The record says where the command wrote (in the learn run's writable
    directory); a symlink swapped in on the way since leads elsewhere, where the
    learn run was read-only: that is not bound read-write."""
    project, elsewhere = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    elsewhere.mkdir()
    (elsewhere / "dotfile").write_text("x")
    (project / "sub").symlink_to(elsewhere)
    seen = learn.Observations()
    seen.use(os.fsencode(project / "sub" / "dotfile"), "write")
    seen.use(os.fsencode(project / "own"), "write")
    (project / "own").write_text("x")
    learning = (MountOp("ro-bind", "/", "/"), MountOp("bind", str(project), str(project)))
    learned = learn.learn(seen, (), learning, ("/",), frozenset())
    assert learned.binds == {str(project / "own"): ("rw", "written")}
    assert any("a symlink on the way changed" in note for note in learned.notes)
