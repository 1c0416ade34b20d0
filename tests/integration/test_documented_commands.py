"""Every `jailpy` command README.md and the man pages' EXAMPLES show is run, so
the documentation cannot drift from the code.

Each documented command must have an entry in HOW, and every entry must still
be documented: a new example, a changed one or a removed one fails here
until this table says how to check it. Commands run as written, as the test
user, with HOME and the current directory in a scratch directory prepared with
what they name (a Makefile, my.toml, build.sh, the man page's profiles), except:
  explain  the command needs what a test may not reach (the Internet, a
           placeholder `cmd` or `./client`, a server that runs until stopped):
           it runs with --explain, which resolves and validates everything
           but starts nothing; the behaviour itself has its own test (named)
  desktop  needs an X11/Wayland session or an installed browser: the desktop
           tests (tests/integration/test_desktop_*.py) cover these options
  server   `jailpy serve` runs until SIGTERM: tests/integration/test_serve.py
           starts it (as the test user, in a scratch socket directory), serves
           requests through it and stops it
  corpus   converts firejail's whole profile corpus (a minute of CPU):
           tests/integration/test_firejail.py runs it as written, once
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO, VENV

RUN, EXPLAIN, DESKTOP, SERVER, CORPUS = "run", "explain", "desktop", "server", "corpus"

#: command as documented -> how it is checked (and, for run, the exit status expected).
HOW: dict[str, tuple[str, int | str]] = {
    # README.md
    "jailpy run -- sh -c 'id; hostname; touch /usr/x'": (RUN, 1),
    "jailpy completion bash > ~/.local/share/bash-completion/completions/jailpy": (RUN, 0),
    "jailpy check": (RUN, 0),
    "jailpy run -- true": (RUN, 0),
    "jailpy profile show --seccomp default": (RUN, 0),
    "jailpy profile show --export-bpf f.bpf default": (RUN, 0),
    "jailpy run --cap-keep CAP_NET_RAW --seccomp-deny @network-io -- cmd":
        (EXPLAIN, "cmd is a placeholder"),
    "jailpy run -p ci-build --json-status build.json -- make test": (RUN, 0),
    "jailpy run --net slirp4netns -- curl https://example.org":
        (EXPLAIN, "the Internet: test_network.py reaches a host server through slirp4netns"),
    "jailpy run --net pasta --publish 8080:80 -- python3 -m http.server 80":
        (EXPLAIN, "serves until stopped: test_server_inside_binds_port_80_published_to_the_host"),
    "jailpy run --net slirp4netns --host-loopback -- curl http://10.0.2.2:5000/":
        (EXPLAIN, "needs a host server on 5000: test_network.py covers --host-loopback"),
    "jailpy run --allow-connect-tcp 443 --net pasta -- ./client":
        (EXPLAIN, "./client is a placeholder: test_network.py covers port rules"),
    "jailpy run --net host -- ...": (EXPLAIN, "... is a placeholder"),
    "jailpy run -p ci-build --allow-host pypi.org --allow-host files.pythonhosted.org -- "
    "pip install -t vendor requests":
        (EXPLAIN, "the Internet: test_egress.py runs pip in ci-build through the proxy "
                  "against a local index"),
    "jailpy run --x11 -- xeyes": (DESKTOP, "X11"),
    "jailpy run --x11-untrusted -- xeyes": (DESKTOP, "X11"),
    "jailpy run --dbus-talk org.freedesktop.Notifications -- notify-send hi": (DESKTOP, "D-Bus"),
    "jailpy run --profile firefox -- firefox": (DESKTOP, "firefox"),
    "jailpy wrap firefox": (DESKTOP, "firefox"),
    "jailpy unwrap firefox": (DESKTOP, "firefox"),
    "jailpy profile list": (RUN, 0),
    "jailpy profile show --origins default": (RUN, 0),
    "jailpy profile check my.toml": (RUN, 0),
    "jailpy run -p ./my.toml --explain -- make": (RUN, 0),
    "jailpy serve -p default --listen unix:/run/jailpy/jailpy.sock --pool 4":
        (SERVER, "test_serve.py"),
    # man/jailpy.1
    "jailpy run -- sh -c 'id; hostname'": (RUN, 0),
    "jailpy run -- bash":
        (EXPLAIN, "interactive: test_terminal.py types into it through a real pty"),
    'jailpy run --bind "$PWD" "$PWD" -- make': (RUN, 0),
    "jailpy run -p minimal -- python3 -c 'print(1)'": (RUN, 0),
    "jailpy run -p strict --ro-bind ./static-tool /tool -- /tool": (RUN, 0),
    "jailpy run --profile ./my.toml --explain -- true": (RUN, 0),
    "jailpy profile check ~/.config/jailpy/profiles/*.toml": (RUN, 0),
    "jailpy run --x11 --dbus-talk org.freedesktop.Notifications -- xmessage hi":
        (DESKTOP, "X11 and D-Bus"),
    "jailpy wrap firefox && firefox": (DESKTOP, "firefox"),
    "cd project && jailpy run -p ci-build --json-status - -- make test": (RUN, 0),
    "jailpy run --workspace . --timeout 10m --rlimit nofile=1024 --memory-max 2G -- ./build.sh":
        (RUN, 0),
    "jailpy run --changes -- npx prettier --write .":
        (EXPLAIN, "npx fetches from the Internet: test_overlays.py runs --changes"),
    "jailpy changes show --diff": (RUN, 0),
    "jailpy changes commit latest src/": (RUN, 0),
    "jailpy changes discard latest": (RUN, 0),
    "jailpy wrap --list": (RUN, 0),
    "jailpy profile import-firejail vlc -o ~/.config/jailpy/profiles/vlc.toml": (RUN, 0),
    # Debian 12's corpus holds one profile whose include is missing from the package
    # (firejail refuses it too; docs/firejail.md): the summary names it, status 125.
    "jailpy profile import-firejail --all /etc/firejail -o converted/":
        (CORPUS, "test_firejail.py::test_whole_corpus_converts_and_checks"),
    "jailpy bwrap --ro-bind / / --proc /proc --dev /dev --unshare-all --share-net -- true":
        (RUN, 0),
    # man/jailpy.1
    "cd project && jailpy run --changes -- npx prettier --write .":
        (EXPLAIN, "npx fetches from the Internet: test_overlays.py runs --changes"),
    "jailpy changes show --diff latest && jailpy changes commit latest src/": (RUN, 0),
    # man/jailpy-profile.5
    "jailpy run --profile build --explain -- make": (RUN, 0),
    # README.md, "Learn a profile"
    "jailpy learn -o learned.toml -- make test": (RUN, 0),
    "jailpy run -p ./learned.toml -- make test": (RUN, 0),
}

#: Where a command runs: the project directory (README's `cd project`; a workspace must
#: not contain HOME, which here is the scratch directory).
CWD = {"jailpy run -p ci-build --json-status build.json -- make test": "project",
       "jailpy run --changes -- npx prettier --write .": "project",
       "jailpy run -p ci-build --allow-host pypi.org --allow-host files.pythonhosted.org -- "
       "pip install -t vendor requests": "project",
       "jailpy run --workspace . --timeout 10m --rlimit nofile=1024 --memory-max 2G -- "
       "./build.sh": "project",
       "jailpy learn -o learned.toml -- make test": "project",
       "jailpy run -p ./learned.toml -- make test": "project"}


def _readme_commands() -> list[str]:
    """Commands in README's code (fenced or indented), `$ ` and `# comments` removed."""
    commands, fenced = [], False
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            continue
        text = re.sub(r"\s+#\s.*$", "", line.strip().removeprefix("$ "))
        if text.startswith("jailpy ") or text.startswith("cd ") and " && jailpy" in text:
            commands.append(text)
    return commands


def _man_examples(name: str) -> list[str]:
    text = (REPO / "man" / name).read_text()
    section = text.split(".SH EXAMPLES", 1)[1].split("\n.SH ", 1)[0]
    lines = (line.replace("\\-", "-").strip() for line in section.splitlines())
    return [line for line in lines if re.match(r"(jailpy |cd \S+ && jailpy )", line)]


def _man_profiles() -> list[str]:
    """The TOML examples of jailpy-profile(5), in order."""
    text = (REPO / "man" / "jailpy-profile.5").read_text()
    section = text.split(".SH EXAMPLES", 1)[1].split("\n.SH ", 1)[0]
    blocks = re.findall(r"^\.nf\n(.*?)^\.fi", section, re.M | re.S)
    return [b.replace("\\-", "-").replace("\\en", "\\n") for b in blocks if "=" in b]


DOCUMENTED = sorted({*_readme_commands(), *_man_examples("jailpy.1"),
                     *_man_examples("jailpy-profile.5")})


def test_every_documented_command_has_a_check_and_every_check_is_documented():
    assert sorted(set(DOCUMENTED) - set(HOW)) == [], "documented, not checked: add to HOW"
    assert sorted(set(HOW) - set(DOCUMENTED)) == [], "checked, no longer documented"


@pytest.fixture
def scratch(jailpy, user_tmp: Path, test_user):
    """HOME and the current directory: what the documented commands name."""
    import os

    profiles = user_tmp / ".config" / "jailpy" / "profiles"
    profiles.mkdir(parents=True)
    (user_tmp / ".local" / "share" / "bash-completion" / "completions").mkdir(parents=True)
    build, local_default, tables = _man_profiles()
    (profiles / "build.toml").write_text(build)
    (user_tmp / "default-tweak.toml").write_text(local_default)
    (user_tmp / "my.toml").write_text('extends = ["default"]\ndescription = "mine"\n')
    (user_tmp / "Makefile").write_text("all:\n\techo built > built.txt\n")
    project = user_tmp / "project"
    project.mkdir()
    (project / "src").mkdir()
    (project / "Makefile").write_text("test:\n\ttest -w . && echo tested\n")
    (project / "build.sh").write_text("#!/bin/sh\nulimit -n\n")
    (project / "build.sh").chmod(0o755)
    # strict has nothing from the host, so its example binds a static program.
    _compile_static(user_tmp / "static-tool")
    (user_tmp / "static-tool").chmod(0o755)
    (user_tmp / "tables.toml").write_text('extends = ["default"]\n' + tables)
    (user_tmp / "src" / "tool").mkdir(parents=True)
    if os.geteuid() == 0:
        for path in [user_tmp, *user_tmp.rglob("*")]:
            os.chown(path, test_user.uid, test_user.gid)
    return user_tmp


def _compile_static(path: Path) -> None:
    """A static program that prints a line (gcc and libc6-dev come with scripts/setup.sh)."""
    import subprocess

    source = path.with_suffix(".c")
    source.write_text('#include <stdio.h>\nint main(void) { puts("static tool"); return 0; }\n')
    subprocess.run(["gcc", "-static", "-O1", "-o", str(path), str(source)], check=True)


def _shell(jailpy, scratch: Path, command: str, cwd: str | None = None):
    env = {"PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin"}
    # HOME through env(1): runuser would reset it to the user's own.
    return jailpy.raw(["env", f"HOME={scratch}", "sh", "-c", command], env=env,
                      cwd=scratch / (cwd or ""), timeout=120)


#: A run of `jailpy run --changes` in the project, left for the `jailpy changes` examples.
CHANGES_RUN = ("cd project && jailpy run --changes -- "
               "sh -c 'echo new > src/made && echo x > top'")


@pytest.mark.parametrize("command", [c for c in HOW
                                     if HOW[c][0] not in (DESKTOP, SERVER, CORPUS)])
def test_documented_command(jailpy, scratch, command):
    how, expected = HOW[command]
    cwd = CWD.get(command)
    if command.startswith("jailpy changes "):
        cwd = "project"
        made = _shell(jailpy, scratch, CHANGES_RUN)
        assert made.returncode == 0, made.stderr
    if command.startswith("jailpy run -p ./learned.toml"):  # README learns it first
        made = _shell(jailpy, scratch, "jailpy learn -o learned.toml -- make test", "project")
        assert made.returncode == 0, made.stderr
    if how == EXPLAIN:
        command = command.replace("jailpy run ", "jailpy run --explain ", 1)
        expected = 0
    result = _shell(jailpy, scratch, command, cwd)
    assert result.returncode == expected, (command, result.stdout, result.stderr)


def test_readme_first_example_prints_what_readme_shows(jailpy, scratch):
    shown = (REPO / "README.md").read_text().split("```console\n", 1)[1].split("```")[0]
    command, *output = shown.splitlines()
    result = _shell(jailpy, scratch, command.removeprefix("$ "))
    # README runs it from the home (/home/you), which the default profile replaces.
    stderr = [line.replace(str(scratch), "/home/you") for line in result.stderr.splitlines()]
    shown_stderr = [line for line in output if line.startswith(("jailpy: note:", "touch:"))]
    assert stderr == shown_stderr
    assert result.stdout.splitlines()[1:] == [line for line in output
                                              if line not in shown_stderr][1:]
    assert result.stdout.startswith(f"uid={jailpy.user.uid}(")


def test_man_page_profiles_are_valid(jailpy, scratch):
    result = _shell(jailpy, scratch, "jailpy profile check default-tweak.toml tables.toml")
    assert result.returncode == 0, result.stderr
