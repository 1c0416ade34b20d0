"""Everyday use as README promises it: help, version, completion, man pages,
`jailpy check`, and messages that say what, where and how to fix (issue 13).
Each runs the installed CLI as the test user."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess

import pytest

from conftest import REPO, VENV, without_cwd_note
from terminal import PROMPT, Terminal

import jailpy as package


def test_bare_jailpy_prints_help_on_stdout_and_exits_0(jailpy):
    result = jailpy.run([])
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("Usage: jailpy [OPTIONS] COMMAND") or \
        result.stdout.startswith("Usage: jailpy [OPTIONS] [COMMAND]")
    assert "jailpy check" in result.stdout and "Commands:" in result.stdout


#: The oldest click pyproject.toml allows, installed beside the venv by scripts/setup.sh.
OLDEST_CLICK = VENV / "click-oldest"


@pytest.mark.parametrize("click_path", [None, OLDEST_CLICK],
                         ids=["installed-click", "click-8.1.0"])
def test_bare_jailpy_and_grouped_help_with_any_allowed_click(jailpy, click_path):
    """Bare `jailpy` and `jailpy run --help` behave the same with the oldest click the
    package allows as with the installed one (click 8.1 and 8.2+ differ on no_args_is_help)."""
    env = {}
    if click_path is not None:
        assert (click_path / "click").is_dir(), "run scripts/setup.sh (it installs click 8.1.0)"
        env["PYTHONPATH"] = str(click_path)
        version = jailpy.raw([str(VENV / "bin/python"), "-c", "import click.core, importlib."
                              "metadata as m; print(m.version('click'), click.core.__file__)"],
                             env=env).stdout.split()
        assert version == ["8.1.0", str(click_path / "click/core.py")]
    bare = jailpy.run([], env=env)
    assert (bare.returncode, bare.stderr) == (0, "")
    assert bare.stdout.startswith("Usage: jailpy [OPTIONS]") and "Commands:" in bare.stdout
    grouped = jailpy.run(["run", "--help"], env=env)
    assert grouped.returncode == 0 and "\nNetwork:\n" in grouped.stdout
    assert "Examples:" in grouped.stdout


def test_version_is_the_one_version_source(jailpy):
    assert jailpy.run(["--version"]).stdout == f"jailpy, version {package.__version__}\n"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject
    assert not re.search(r"\d+\.\d+\.\d+", (REPO / "man" / "jailpy.1").read_text().split("\n")[0])


def test_run_help_is_grouped_with_examples(jailpy):
    text = jailpy.run(["run", "--help"]).stdout
    headings = [line[:-1] for line in text.splitlines() if re.match(r"^[A-Z][^ ].*:$", line)]
    assert headings[:8] == ["Profile", "Filesystem (in command-line order, after the profile's "
                            "mounts)", "Identity, process and environment", "Network",
                            "Security: capabilities, seccomp, Landlock", "Limits", "Desktop",
                            "Output and diagnostics"]
    network = text.split("\nNetwork:\n", 1)[1].split("\n\n", 1)[0]
    assert "--publish" in network and "--bind" not in network
    assert "Examples:" in text and "jailpy run -- bash" in text


# --- messages -----------------------------------------------------------------


def test_env_docker_spelling_sets_a_variable(jailpy):
    result = jailpy.run(["run", "-e", "FOO=1", "--env=BAR=x=y", "--", "sh", "-c",
                         'echo "$FOO $BAR"'])
    assert (result.returncode, result.stdout) == (0, "1 x=y\n"), result.stderr


@pytest.mark.parametrize("argv, first_line, hint", [
    (["--setenv", "FOO=1", "--", "env"],
     "jailpy: --setenv: expected NAME VALUE but got '--', the end of the options", "--"),
    (["--setenv", "FOO=1", "2", "--", "env"],
     "jailpy: --setenv FOO=1 2: variable name 'FOO=1' contains '='", "-e FOO=1"),
    (["--bind", "/tmp", "--", "true"],
     "jailpy: --bind: expected SRC DEST but got '--', the end of the options", "--bind SRC"),
    (["--cap-keep", "NET_BIND", "--", "true"],
     "jailpy: --cap-keep NET_BIND: unknown capability 'NET_BIND'", "CAP_NET_BIND_SERVICE"),
    (["--share-user", "--", "true"],
     "jailpy: --share-user: cannot create namespaces without a user namespace of the sandbox's "
     "own: that needs CAP_SYS_ADMIN, which an ordinary user does not have", "drop --share-user"),
    (["--chdir", "/nonexistent", "--", "true"],
     "jailpy: --chdir: cannot change directory to /nonexistent: No such file or directory", ""),
])
def test_option_mistakes_name_the_option_and_the_fix(jailpy, argv, first_line, hint):
    result = jailpy.run(["run", *argv])
    assert result.returncode == 125
    lines = result.stderr.splitlines()
    assert lines[0] == first_line and hint in result.stderr, result.stderr
    assert len(lines) <= 2 and "Traceback" not in result.stderr


def test_relative_paths_are_taken_from_the_callers_directory(jailpy, user_tmp):
    (user_tmp / "proj").mkdir()
    (user_tmp / "proj" / "f").write_text("inside\n")
    (user_tmp / "tool").write_text("#!/bin/sh\necho tool ran\n")
    (user_tmp / "tool").chmod(0o755)
    subprocess.run(["chown", "-R", f"{jailpy.user.uid}:{jailpy.user.gid}", str(user_tmp)],
                   check=True)
    result = jailpy.run(["run", "--bind", "proj", "proj", "--ro-bind", "./tool", "/tool",
                         "--", "sh", "-c", f"cat {user_tmp}/proj/f; /tool"])
    assert (result.returncode, result.stdout) == (0, "inside\ntool ran\n"), result.stderr
    workspace = jailpy.run(["run", "--workspace", "proj", "--", "pwd"])
    assert workspace.stdout == f"{user_tmp}/proj\n", workspace.stderr


def test_integer_mode_written_as_octal_digits_is_refused(jailpy, user_tmp):
    profile = user_tmp / "m.toml"
    profile.write_text('extends = ["default"]\n[filesystem]\n'
                       'mounts = [{ tmpfs = "/x", mode = 755 }]\n')
    result = jailpy.run(["run", "-p", str(profile), "--", "true"])
    assert result.returncode == 125
    assert result.stderr.startswith(f"jailpy: {profile}: filesystem.mounts[")
    assert "mode 755 is a decimal number in TOML (= 0o1363)" in result.stderr
    assert 'write the mode as a string, "0755", or as 0o755' in result.stderr
    profile.write_text('extends = ["default"]\n[filesystem]\n'
                       'mounts = [{ tmpfs = "/x", mode = 0o755 }]\n')
    ok = jailpy.run(["run", "-p", str(profile), "--", "stat", "-c", "%a", "/x"])
    assert ok.stdout == "755\n", ok.stderr


def test_profile_check_resolves_syscall_names_as_run_does(jailpy, user_tmp):
    profile = user_tmp / "sc.toml"
    profile.write_text('extends = ["default"]\n[seccomp]\ndeny = ["no_such_syscall_xyz"]\n')
    run = jailpy.run(["run", "-p", str(profile), "--", "true"])
    check = jailpy.run(["profile", "check", str(profile)])
    assert run.returncode == check.returncode == 125
    assert "unknown syscall 'no_such_syscall_xyz'" in check.stderr
    assert check.stderr.splitlines()[0] == run.stderr.splitlines()[0]


def test_missing_python_prctl_is_one_line(jailpy):
    code = ("import sys; sys.modules['_prctl'] = None; sys.argv = ['jailpy', 'run', '--', "
            "'true']; from jailpy.cli import main; main()")
    result = jailpy.raw([str(VENV / "bin" / "python"), "-c", code])
    assert result.returncode == 125
    assert result.stderr.splitlines()[0] == (
        "jailpy: this machine: python-prctl is not installed in the Python that runs jailpy")
    assert "Traceback" not in result.stderr


def test_unknown_architecture_is_refused(jailpy):
    """setarch makes the kernel report another machine: jailpy must not guess its
    syscall numbers (it used to fall back to x86_64's)."""
    result = jailpy.raw(["setarch", "i686", jailpy.binary, "run", "--", "true"])
    assert result.returncode == 125
    assert result.stderr.splitlines()[0] == ("jailpy: this machine: jailpy does not know the "
                                             "syscall numbers of this architecture (i686)")


# --- jailpy check ---------------------------------------------------------------


def test_check_exits_1_without_user_namespaces_and_names_this_kernels_knob(jailpy):
    """In a user namespace whose max_user_namespaces is 0 no sandbox can start."""
    script = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {jailpy.binary} check"
    result = jailpy.raw(["unshare", "--user", "--map-root-user", "sh", "-c", script])
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "user namespaces" in line)
    assert lines[at].startswith("MISSING    core")
    assert "sysctl -w user.max_user_namespaces=15000" in lines[at + 1]
    assert "/etc/sysctl.d/50-jailpy-userns.conf" in lines[at + 1]
    if not __import__("os").path.exists("/proc/sys/kernel/unprivileged_userns_clone"):
        assert "unprivileged_userns_clone" not in result.stdout


def test_check_json_and_optional_rows(jailpy):
    result = jailpy.run(["check", "--json"])
    assert result.returncode == 0, result.stdout
    rows = json.loads(result.stdout)
    assert {"area", "feature", "status", "detail", "fix"} <= set(rows[0])
    core = [r for r in rows if r["area"] == "core"]
    assert core and all(r["status"] == "ok" for r in core)
    display = next(r for r in rows if r["feature"] == "X11 display")
    assert display["status"] == "not needed"  # no DISPLAY in the test environment
    every = json.loads(jailpy.run(["check", "--json", "--all"]).stdout)
    assert next(r for r in every if r["feature"] == "X11 display")["status"] == "MISSING"


def test_check_lines_are_never_wrapped(jailpy):
    """On a narrow terminal each row and its fix stay one line each, to copy whole."""
    result = jailpy.raw(["script", "-qec", f"{jailpy.binary} check --all", "/dev/null"],
                        env={"TERM": "xterm", "COLUMNS": "40"})
    lines = result.stdout.replace("\r", "").splitlines()
    at = next(i for i, line in enumerate(lines) if "X11 display" in line)
    assert lines[at] == "MISSING    desktop    X11 display: DISPLAY is not set"
    assert lines[at + 1] == " " * 22 + "fix: only needed for desktop.x11"


# --- completion and man pages, as installed ----------------------------------------


def _bash_complete(jailpy, user_tmp, *words: str) -> list[str]:
    script = f"""
source /usr/share/bash-completion/bash_completion
eval "$({jailpy.binary} completion bash)"
COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
_jailpy 2>/dev/null; printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    path = f"{VENV}/bin:/usr/bin:/bin"
    result = jailpy.raw(["bash", "-c", script], env={"PATH": path})
    return result.stdout.splitlines()


@pytest.mark.skipif(not shutil.which("bash") or
                    not __import__("os").path.exists("/usr/share/bash-completion/bash_completion"),
                    reason="bash-completion is not installed (scripts/setup.sh installs it)")
def test_bash_completion(jailpy, user_tmp):
    (user_tmp / "some-dir").mkdir()
    (user_tmp / "some-file").write_text("")
    assert "slirp4netns" in _bash_complete(jailpy, user_tmp, "jailpy", "run", "--net", "s")
    assert _bash_complete(jailpy, user_tmp, "jailpy", "run", "--cap-keep", "CAP_NET_B") == \
        ["CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST"]
    assert "@network-io" in _bash_complete(jailpy, user_tmp, "jailpy", "run", "--seccomp-deny",
                                           "@net")
    assert "minimal" in _bash_complete(jailpy, user_tmp, "jailpy", "run", "-p", "mi")
    assert "kill-thread" in _bash_complete(jailpy, user_tmp, "jailpy", "run",
                                           "--seccomp-action", "kill")
    # Paths: bash's own file-name completion, for both arguments of --bind.
    assert set(_bash_complete(jailpy, user_tmp, "jailpy", "run", "--bind", "some")) == \
        {"some-dir", "some-file"}
    assert "some-dir" in _bash_complete(jailpy, user_tmp, "jailpy", "run", "--bind", "/x",
                                        "some")
    # After --: the command, then that command's own arguments.
    assert "bash" in _bash_complete(jailpy, user_tmp, "jailpy", "run", "--", "bas")
    assert "some-file" in _bash_complete(jailpy, user_tmp, "jailpy", "run", "--", "cat", "some")


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_completion(jailpy, user_tmp):
    (user_tmp / "some-file").write_text("")
    script = (f"{jailpy.binary} completion fish | source; "
              "complete -C 'jailpy run --net s'; complete -C 'jailpy run --bind some-f'; "
              "complete -C 'jailpy run -- ech'")
    out = jailpy.raw(["fish", "-c", script], env={"PATH": f"{VENV}/bin:/usr/bin:/bin"}).stdout
    lines = [line.split("\t")[0] for line in out.splitlines()]
    assert "slirp4netns" in lines and "some-file" in lines and "echo" in lines, out


# zsh completes only inside its line editor: a real terminal, zsh -f with compinit and
# the script `jailpy completion zsh` prints; list-choices (bound to ^Xl) prints what a
# TAB would offer without changing the line.
_ZSH_SETUP = ('autoload -Uz compinit && compinit -u -D && eval "$(jailpy completion zsh)" '
              '&& bindkey "^Xl" list-choices && print zsh-ready')


def _zsh_offers(terminal, line: str) -> list[str]:
    """The words zsh lists for `line` + TAB (the listing under the line, split)."""
    terminal.send(line + "\x18l")
    terminal.expect(re.escape(line) + "\a?\n")  # zsh beeps when the word stays ambiguous
    listing = terminal.expect(f"(?s)(.*?)\n{re.escape(PROMPT)}{re.escape(line)}").group(1)
    terminal.send("\x15")  # kill the line for the next one
    return listing.split()


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed (scripts/setup.sh "
                    "installs it)")
def test_zsh_completion_at_a_terminal(jailpy, test_user, user_tmp):
    (user_tmp / "some-dir").mkdir()
    (user_tmp / "some-file").write_text("")
    terminal = Terminal(test_user, str(user_tmp), rows=50, cols=200,
                        env={"PATH": f"{VENV}/bin:/usr/bin:/bin", "TERM": "dumb"},
                        shell=("/usr/bin/zsh", "-f", "-i"))
    try:
        terminal.line(_ZSH_SETUP)
        terminal.expect(f"\nzsh-ready\n.*{re.escape(PROMPT)}")
        offers = functools.partial(_zsh_offers, terminal)
        assert {"run", "check", "completion", "profile"} <= set(offers("jailpy "))
        assert offers("jailpy run --net ") == ["none", "host", "slirp4netns", "pasta", "proxy"]
        assert offers("jailpy run --cap-keep CAP_NET_B") == ["CAP_NET_BIND_SERVICE",
                                                             "CAP_NET_BROADCAST"]
        assert "@network-io" in offers("jailpy run --seccomp-deny @net")
        assert "kill-thread" in offers("jailpy run --seccomp-action ")
        assert "minimal" in offers("jailpy run -p mi")
        assert "--net" in offers("jailpy run --ne")
        # Paths: zsh's own file-name completion, for both arguments of --bind.
        assert offers("jailpy run --bind some") == ["some-dir/", "some-file"]
        assert offers("jailpy run --bind /x some") == ["some-dir/", "some-file"]
        assert offers("jailpy run --workspace some") == ["some-dir/"]
        # After --: the command, then that command's own arguments.
        assert "bash" in offers("jailpy run -- bas")
        assert offers("jailpy run --net host -- cat some-f") == ["some-file"]
    finally:
        terminal.close()


def test_installed_man_pages_and_completion_files(jailpy):
    """The wheel's data files land beside bin/, where man finds them for a bin/ on PATH."""
    for page in ("share/man/man1/jailpy.1", "share/man/man5/jailpy-profile.5",
                 "share/bash-completion/completions/jailpy", "share/zsh/site-functions/_jailpy",
                 "share/fish/vendor_completions.d/jailpy.fish"):
        assert (VENV / page).is_file(), page
    found = jailpy.raw(["man", "-w", "jailpy"], env={"PATH": f"{VENV}/bin:/usr/bin:/bin"})
    assert found.stdout.strip() == f"{VENV}/share/man/man1/jailpy.1", found.stderr
    assert (VENV / "share/bash-completion/completions/jailpy").read_text() == \
        jailpy.run(["completion", "bash"]).stdout


def test_mount_point_in_a_read_only_directory_names_the_cause(jailpy):
    result = jailpy.run(["run", "--bind", "/dev/null", "/usr/bin/x", "--", "true"])
    assert result.returncode == 125
    assert result.stderr.splitlines()[0] == (
        "jailpy: --bind /dev/null /usr/bin/x: cannot create the mount point /usr/bin/x: "
        "/usr/bin is read-only in the sandbox")
    assert "--tmpfs /usr/bin" in result.stderr


def test_command_the_profile_hides_says_so(jailpy, user_tmp):
    """127 for a command on the host's PATH that the sandbox cannot see, and for a
    script whose #! interpreter it cannot see."""
    bin_dir = user_tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "mytool").write_text("#!/bin/sh\necho hi\n")
    (bin_dir / "mytool").chmod(0o755)
    (user_tmp / "s.py").write_text(f"#!{bin_dir}/mytool\n")
    (user_tmp / "s.py").chmod(0o755)
    subprocess.run(["chown", "-R", f"{jailpy.user.uid}:{jailpy.user.gid}", str(user_tmp)],
                   check=True)
    path = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    hidden = jailpy.run(["run", "--", "mytool"], env=path)
    assert hidden.returncode == 127
    assert without_cwd_note(hidden.stderr).splitlines() == [
        "jailpy: mytool: command not found",
        f"  hint: {bin_dir}/mytool exists on the host, but the profile does not show {bin_dir}: "
        f"--ro-bind {bin_dir} {bin_dir} (or a profile that has it; for the current directory, "
        "--workspace .)"]
    script = jailpy.run(["run", "--ro-bind", f"{user_tmp}/s.py", f"{user_tmp}/s.py", "--",
                         f"{user_tmp}/s.py"], env=path)
    assert script.returncode == 127
    assert without_cwd_note(script.stderr).splitlines()[0] == (
        f"jailpy: {user_tmp}/s.py: its interpreter {bin_dir}/mytool is not in the sandbox")
    assert f"--ro-bind {bin_dir} {bin_dir}" in script.stderr
    # Counterpart: with the directory shown, both run.
    shown = jailpy.run(["run", "--ro-bind", str(user_tmp), str(user_tmp), "--", "mytool"],
                       env=path)
    assert (shown.returncode, shown.stdout) == (0, "hi\n"), shown.stderr


def test_explain_lists_what_its_own_sections_found_unavailable(jailpy):
    result = jailpy.run(["run", "--memory-max", "1G", "--explain", "--", "true"],
                        env={"JAILPY_CGROUP_PARENT": "/no/such"})
    assert result.returncode == 0, result.stderr
    last = result.stdout.split("[cannot apply on this machine]\n", 1)[1]
    assert "limits: memory max" in last and "UNAVAILABLE" in last
    assert "nothing" not in last
