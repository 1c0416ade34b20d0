"""The five desktop apps, for real, in their shipped profiles on Xvfb (issue 14).

scripts/setup.sh installs firefox-esr, chromium, libreoffice-writer, evince
and mpv; nothing here skips when one is missing. Each test shows the app's
window with its content (its title names the document, or a pixel of it is
read back), and the things that broke before: Chromium's own sandbox,
Firefox's profile between runs and its content sandbox, Chromium and Firefox
restarting themselves, the host app taking over a profile after a killed
sandbox, two sandboxes on one profile, `jailpy wrap` covering every entry,
and each app started sandboxed from its wrapped menu entry and command.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket

import pytest

from conftest import chown_tree, poll, without_cwd_note
from desktop_apps import (Desk, DevTools, Launched, cmdline, ns, pdf_bytes, seccomp_filters,
                          unlocked)
from desktop_servers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def desk(test_user, user_tmp, jailpy_bin):
    d = Desk(test_user, user_tmp, jailpy_bin)
    yield d
    d.stop()


def chromium(desk: Desk, name: str, *options: str) -> tuple:
    """Chromium in its profile, windowed on Xvfb, driven over its DevTools pipe."""
    devtools = DevTools()
    app = desk.start(["run", "--profile", "chromium", *options, "--pass-fd", "3", "--pass-fd",
                      "4", "--", "chromium", "--no-first-run", "--remote-debugging-pipe"],
                     name, devtools)
    return app, devtools


def browsers(app) -> list[int]:
    """Chromium browser processes (not its zygotes, renderers, helpers; nor one gone
    since the listing)."""
    found = []
    for pid in app.processes("/usr/lib/chromium/chromium"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"--type=" not in f.read():
                    found.append(pid)
        except FileNotFoundError:
            continue
    return found


# -- Chromium ------------------------------------------------------------------------


@pytest.mark.parametrize("options", [(), ("--allow-nesting",)], ids=["profile", "nesting"])
def test_chromium_runs_with_its_own_namespace_and_seccomp_sandbox(desk, options):
    """The shipped profile (allow_userns, Landlock kept) and the same with nesting
    (docs/security.md, "Nesting": browsers do not need it, but a CI runner's may)."""
    app, devtools = chromium(desk, "chromium", *options)
    text = devtools.page_text("chrome://sandbox", "sandboxed.")
    rows = dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)
    assert rows["Layer 1 Sandbox"] == "Namespace"
    assert rows["PID namespaces"] == "Yes" and rows["Network namespaces"] == "Yes"
    assert rows["Seccomp-BPF sandbox"] == "Yes"
    assert "You are adequately sandboxed." in text
    assert desk.wait_title(r"^Sandbox Status - Chromium$")
    # The renderers, seen from the host: a user, pid and network namespace of
    # their own under jailpy's, and Chromium's BPF filter stacked on jailpy's.
    browser = browsers(app)[0]
    checked = 0
    for pid in app.processes("--type=renderer"):
        try:
            seen = {kind: ns(pid, kind) for kind in ("user", "pid", "net")}
            filters = seccomp_filters(pid)
        except FileNotFoundError:  # an earlier page's renderer, gone since the listing
            continue
        for kind, namespace in seen.items():
            assert namespace != ns(browser, kind), kind
        assert filters == seccomp_filters(browser) + 1
        checked += 1
    assert checked, "no live renderer"
    devtools.call("Browser.close")
    assert app.wait() == 0, app.output()[-2000:]
    devtools.close()


def test_chromium_survives_restarting_itself(desk):
    """chrome://restart: the browser starts its successor and exits; the sandbox
    (process.wait_all, on in the gui profile) keeps the successor running."""
    app = desk.start(["run", "--profile", "chromium", "--", "chromium", "--no-first-run"],
                     "restart")
    desk.wait_title(r"^New Tab - Chromium$")
    first = wait_for(lambda: browsers(app), 30, "the browser")
    # The tab's title may change under us (a restored page): any browser window will do.
    window = desk.window_id(r" - Chromium$")

    def restarted() -> list[int]:
        # Keys sent before the omnibox takes input are lost: send them again.
        if browsers(app) == first:
            # The window goes while the first browser ends: then only wait.
            desk.type_into(window, "ctrl+l", "+chrome://restart", "Return",
                           window_may_go=True)
        return poll(lambda: [pid for pid in browsers(app) if pid not in first], 10, 0.2)

    wait_for(restarted, 60, "the restarted browser", interval=0.1)
    wait_for(lambda: first[0] not in browsers(app), 30, "the first browser to exit")
    # The successor restores the session: a retyped address that a lost key turned
    # into a search leaves that tab's title, so any Chromium window counts.
    assert desk.wait_title(r" - Chromium$")
    # A child the browser has just forked shows the browser's command line until it
    # execs as a --type= helper: what counts is that every browser now is a new one.
    now = browsers(app)
    assert app.alive() and now and not set(now) & set(first)


# -- Firefox -------------------------------------------------------------------------

STORE_PAGE = """<!doctype html><html><head><title>loading</title><script>
const prev = localStorage.getItem("jailpy");
if (prev) { document.title = "seen " + prev; }
else { localStorage.setItem("jailpy", "%s"); document.title = "stored"; }
</script></head><body>jailpy page</body></html>
"""


#: Waits (bounded) until the page's server accepts connections: Firefox shows an
#: error page, not the page, if it asks first (a fixed sleep is a guess on a loaded machine).
SERVER_UP = """
import socket, sys, time
for _ in range(400):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
        break
    except OSError:
        time.sleep(0.05)
"""


def firefox_run(desk: Desk, port: int, name: str):
    """Firefox on a page served inside its sandbox (an http origin keeps site data)."""
    script = (f"cd ~/Downloads && timeout 120 python3 -m http.server -b 127.0.0.1 {port} "
              f">/dev/null 2>&1 & python3 -c {shlex.quote(SERVER_UP)} {port}; "
              f"exec firefox http://127.0.0.1:{port}/page.html")
    return desk.start(["run", "--profile", "firefox", "--", "sh", "-c", script], name)


def test_firefox_keeps_its_profile_between_runs_and_sandboxes_its_content(desk):
    token = f"run1-{secrets.token_hex(4)}"
    desk.file("Downloads/page.html", STORE_PAGE % token)
    port = 8765
    first = firefox_run(desk, port, "firefox1")
    assert desk.wait_title(r"^stored — Mozilla Firefox$")
    profiles = desk.home / ".config" / "mozilla" / "firefox"
    # Firefox writes site data a moment later: wait until it is on disk.
    wait_for(lambda: any(token.encode() in path.read_bytes()
                         for path in profiles.glob(f"*/storage/default/http+++127.0.0.1+{port}"
                                                   "/ls/data.sqlite*")),
             60, "the page's localStorage on disk")
    # Its content processes sandboxed in user and network namespaces of their own.
    parent = first.processes("firefox http://127.0.0.1")
    content = first.processes("-contentproc -isForBrowser")
    assert parent and content
    for pid in content:
        assert ns(pid, "user") != ns(parent[0], "user")
        assert ns(pid, "net") != ns(parent[0], "net")
    first.stop()
    caches = sorted((desk.home / ".cache" / "mozilla" / "firefox").iterdir())
    log = first.output()
    assert "CanCreateUserNamespace" not in log and "chroot" not in log, log[-2000:]

    second = firefox_run(desk, port, "firefox2")
    assert desk.wait_title(rf"^seen {token} — Mozilla Firefox$")
    second.stop()
    # One profile, in the XDG place Firefox 153 uses, and no new cache folder.
    assert len(list(profiles.glob("*.default-esr"))) == 1
    assert sorted((desk.home / ".cache" / "mozilla" / "firefox").iterdir()) == caches


def firefoxes(app) -> list[int]:
    """Firefox parent processes (not its content or utility processes)."""
    return [pid for pid in app.processes("firefox-esr")
            if cmdline(pid).startswith("firefox-esr ") and "-contentproc" not in cmdline(pid)]


def restart_normally(desk: Desk, app) -> None:
    """about:profiles' "Restart normally…" button, pressed from the keyboard: it
    is the page's second tab stop (after "Restart with Add-ons Disabled…").
    Keys sent before the page takes focus are lost: reload it and press again."""
    window = desk.window_id(r"^About Profiles — Mozilla Firefox$")
    first = firefoxes(app)

    def pressed() -> bool:
        if firefoxes(app) == first and app.alive():
            desk.type_into(window, "F5", "Tab", "Tab", "Return")
        return poll(lambda: firefoxes(app) != first or not app.alive(), 10, 0.2)

    wait_for(pressed, 60, "Firefox to restart", interval=0.1)


def test_firefox_restarting_itself_keeps_its_sandbox(desk):
    """Firefox's own "Restart normally": the running Firefox starts its successor
    and exits. process.wait_all (on in the gui profile) keeps the sandbox, and
    the successor's window comes back; with --no-wait-all the sandbox ends."""
    host_pids = os.readlink("/proc/self/ns/pid")
    app = desk.start(["run", "--profile", "firefox", "--", "firefox-esr", "about:profiles"],
                     "firefox-restart")
    desk.wait_title(r"^About Profiles — Mozilla Firefox$")
    first = wait_for(lambda: firefoxes(app), 30, "Firefox")
    restart_normally(desk, app)
    wait_for(lambda: first[0] not in firefoxes(app), 30, "the first Firefox to exit")
    successor = wait_for(lambda: firefoxes(app), 30, "the restarted Firefox")
    assert successor[0] not in first and ns(successor[0], "pid") != host_pids
    # The first Firefox's windows went with its X connection: this one is the successor's.
    # A key lost under load can land on "Restart with Add-ons Disabled…" instead, so
    # the successor opens with its Troubleshoot Mode question: its window all the same.
    assert desk.wait_title(r" — Mozilla Firefox$|^Open Firefox in Troubleshoot Mode\?$")
    assert app.alive() and firefoxes(app) == successor
    app.stop()

    ended = desk.start(["run", "--profile", "firefox", "--no-wait-all", "--", "firefox-esr",
                        "about:profiles"], "firefox-restart-ends")
    desk.wait_title(r"^About Profiles — Mozilla Firefox$")
    wait_for(lambda: firefoxes(ended), 30, "Firefox")
    restart_normally(desk, ended)
    ended.wait(30)
    assert not firefoxes(ended)


# -- evince, mpv ------------------------------------------------------------------------


def test_evince_shows_the_pdf(desk):
    path = desk.file("Documents/paper.pdf", pdf_bytes())
    app = desk.start(["run", "--profile", "evince", "--", "evince", str(path)], "evince")
    assert desk.wait_title(r"^paper\.pdf$")
    app.stop()


def test_mpv_shows_the_image(desk):
    red = desk.workdir / "red.png"
    result = desk.run(["convert", "-size", "160x120", "xc:#ff0000", str(red)])
    assert result.returncode == 0, result.stderr
    path = desk.file("Videos/red.png", red.read_bytes())
    app = desk.start(["run", "--profile", "mpv", "--", "mpv", "--geometry=+0+0",
                      "--image-display-duration=inf", str(path)], "mpv")
    assert desk.wait_title(r"^red\.png - mpv$")
    window = desk.window_id(r"^red\.png - mpv$")
    wait_for(lambda: desk.pixel(window, 80, 60) == (255, 0, 0), 30, "the red image on screen")
    app.stop()


# -- LibreOffice, locks and hostname -------------------------------------------------------


def test_libreoffice_shows_the_document_and_the_host_takes_over_after_a_kill(desk):
    note = desk.file("Documents/note.txt", "jailpy text\n")
    app = desk.start(["run", "--profile", "libreoffice", "--", "libreoffice", "--writer",
                      str(note)], "writer")
    assert desk.wait_title(r"^note\.txt - LibreOffice Writer$")
    lock = desk.home / ".config" / "libreoffice" / "4" / ".lock"
    assert f"Host={socket.gethostname()}\n" in lock.read_text()

    # A second sandbox on the same profile is refused, not run unknowingly.
    second = desk.jailpy(["run", "--profile", "libreoffice", "--", "libreoffice", "--writer"])
    assert second.returncode == 125
    assert "is in use by another sandbox" in second.stderr.splitlines()[0]

    # Killed (jailpy gets SIGKILL, the sandbox dies with it): the host's own
    # LibreOffice then opens the profile, not a lock dialog or a hung splash.
    app.kill()
    wait_for(lambda: not app.processes("soffice"), 30, "the sandboxed LibreOffice to die")
    # Its window goes with its X connection: gone, so the title seen next is the host's.
    wait_for(lambda: "note.txt - LibreOffice Writer" not in desk.titles(), 30,
             "the killed LibreOffice's window to close")
    host = desk.start(["libreoffice", "--writer", str(note)], "host-writer", jailpy=False)
    assert desk.wait_title(r"Document Recovery|^note\.txt - LibreOffice Writer$")
    assert host.alive()


def test_two_sandboxes_on_one_app_profile(desk):
    first = desk.start(["run", "--profile", "libreoffice", "--", "sleep", "60"], "first")
    state = desk.home / ".config" / "libreoffice"
    wait_for(lambda: first.processes("sleep 60"), 30, "the first sandbox")
    second = desk.jailpy(["run", "--profile", "libreoffice", "--", "true"])
    assert second.returncode == 125
    first_line = second.stderr.splitlines()[0]
    assert first_line.endswith(f"libreoffice.toml: desktop.app_dirs[0]: {state} is in use "
                               "by another sandbox"), second.stderr
    first.kill()  # the lock goes with the sandbox, even when jailpy is killed
    # Its pid 1 and namespace child die of their PDEATHSIG a moment after jailpy: the
    # next run is started once the kernel has released the lock, not before.
    wait_for(lambda: unlocked(state), 30, "the killed sandbox's lock to go")
    third = desk.jailpy(["run", "--profile", "libreoffice", "--", "true"])
    assert third.returncode == 0, third.stderr


# -- wrap: every command and menu entry ----------------------------------------------------

COVERED = {
    "firefox": ({"firefox-esr.desktop"}, {"firefox-esr"}),
    "chromium": ({"chromium.desktop"}, set()),
    "libreoffice": ({"libreoffice-startcenter.desktop", "libreoffice-writer.desktop",
                     "libreoffice-xsltfilter.desktop"}, {"soffice", "lowriter", "loffice"}),
    "evince": ({"org.gnome.Evince.desktop"}, set()),
    "mpv": ({"mpv.desktop"}, set()),
}


def test_wrap_covers_every_menu_entry_and_command_of_each_app(desk):
    bin_dir = desk.home / ".local" / "bin"
    applications = desk.home / ".local" / "share" / "applications"
    path = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    env = ["env", f"PATH={path}", "XDG_DATA_DIRS=/usr/share"]
    # A command of the user's own is never replaced; --list names it as not covered.
    desk.file(".local/bin/loffice", "#!/bin/sh\nexec /usr/bin/loffice \"$@\"\n", 0o755)
    chown_tree(desk.home, desk.user)
    for app in COVERED:
        done = desk.run([*env, desk.jailpy_bin, "wrap", app])
        assert done.returncode == 0, done.stderr
    listed = desk.run([*env, desk.jailpy_bin, "wrap", "--list"]).stdout
    for app, (entries, commands) in COVERED.items():
        for entry in entries:
            text = (applications / entry).read_text()
            execs = [line[5:] for line in text.splitlines() if line.startswith("Exec=")]
            assert execs and all(shlex.split(e)[0].startswith(str(bin_dir)) for e in execs)
            assert f"  menu      {applications / entry}" in listed
            wrapper = (bin_dir / os.path.basename(shlex.split(execs[0])[0])).read_text()
            assert f"run --profile {app} -- " in wrapper
        for command in commands - {"loffice"}:
            assert f"run --profile {app} -- " in (bin_dir / command).read_text()
            assert f"  command   {command}\t" in listed
    assert f"  NOT COVERED command loffice (/usr/bin/loffice)" in listed
    assert listed.count("NOT COVERED") == 1, listed

    # From the menu: the writer entry's Exec= starts LibreOffice sandboxed.
    text = (applications / "libreoffice-writer.desktop").read_text()
    exec_line = next(line[5:] for line in text.splitlines() if line.startswith("Exec="))
    note = desk.file("Documents/menu.txt", "from the menu\n")
    argv = [str(note) if word == "%U" else word for word in shlex.split(exec_line)]
    app = desk.start([*env, *argv], "menu-writer", jailpy=False)
    assert desk.wait_title(r"^menu\.txt - LibreOffice Writer$")
    soffice = app.processes("soffice.bin")
    assert soffice and ns(soffice[0], "pid") != os.readlink("/proc/self/ns/pid")
    app.stop()

    for app in COVERED:
        assert desk.run([*env, desk.jailpy_bin, "unwrap", app]).returncode == 0
    assert not list(applications.glob("*.desktop"))
    assert sorted(p.name for p in bin_dir.iterdir()) == ["loffice"]


# The four other apps, each started the two ways a user starts it once wrapped:
# its menu entry, launched as a menu does (`gio launch`, which expands the
# field codes and spawns Exec=), and its command typed in a shell. Each time its
# window shows the file it was given and the app runs in a pid namespace under
# jailpy's. (LibreOffice's menu entry is launched in the test above.)
LAUNCHED = {
    # profile: (menu entry, command, the app's program, its file, its window title)
    "evince": ("org.gnome.Evince.desktop", "evince", "/usr/bin/evince", "Documents/paper.pdf",
               r"^paper\.pdf$"),
    "mpv": ("mpv.desktop", "mpv", "/usr/bin/mpv", "Videos/red.png", r"^red\.png - mpv$"),
    "chromium": ("chromium.desktop", "chromium", "/usr/lib/chromium/chromium",
                 "Downloads/menu.html", r"^menu page - Chromium$"),
    "firefox": ("firefox-esr.desktop", "firefox-esr", "/usr/lib/firefox-esr/firefox-esr",
                "Downloads/menu.html", r"^menu page — Mozilla Firefox$"),
}


def test_each_app_starts_sandboxed_from_its_menu_entry_and_its_command(desk):
    bin_dir = desk.home / ".local" / "bin"
    applications = desk.home / ".local" / "share" / "applications"
    env = ["env", f"PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin", "XDG_DATA_DIRS=/usr/share"]
    desk.file("Documents/paper.pdf", pdf_bytes())
    red = desk.workdir / "red.png"
    assert desk.run(["convert", "-size", "160x120", "xc:#ff0000", str(red)]).returncode == 0
    desk.file("Videos/red.png", red.read_bytes())
    desk.file("Downloads/menu.html", "<!doctype html><title>menu page</title>menu\n")
    # The apps' own settings, in their kept directories: mpv's menu entry plays
    # in pseudo-gui mode, which would close after an image's default 1 s.
    desk.file(".config/mpv/mpv.conf", "image-display-duration=inf\ngeometry=+0+0\n")
    desk.file(".config/chromium/First Run", "")
    chown_tree(desk.home, desk.user)
    host_pids = os.readlink("/proc/self/ns/pid")
    for profile in LAUNCHED:
        done = desk.run([*env, desk.jailpy_bin, "wrap", profile])
        assert done.returncode == 0, done.stderr

    def sandboxed(app, program: str, title: str) -> None:
        def running() -> list[int]:  # the program itself, not jailpy naming it
            return [pid for pid in app.processes(program) if cmdline(pid).startswith(program)]

        assert desk.wait_title(title)
        pids = wait_for(running, 30, program)
        assert all(ns(pid, "pid") != host_pids for pid in pids), program
        if program == "/usr/bin/mpv":
            window = desk.window_id(title)
            wait_for(lambda: desk.pixel(window, 80, 60) == (255, 0, 0), 30, "the red image")
        app.stop()
        # Gone before the next start: a second instance would hand its file over.
        wait_for(lambda: not running(), 30, f"{program} to exit")

    for profile, (entry, command, program, path, title) in LAUNCHED.items():
        argument = str(desk.home / path)
        assert desk.launch([*env, "gio", "launch", str(applications / entry), argument],
                           f"menu-{command}") == 0
        sandboxed(Launched(desk, profile), program, title)
        typed = desk.start([*env, command, argument], f"typed-{command}", jailpy=False)
        sandboxed(typed, program, title)


# -- run until the last process exits ------------------------------------------------------


def test_wait_all_keeps_the_sandbox_until_the_last_process(jailpy):
    script = "(sleep 1; echo survived >&2) & exit 3"
    default = jailpy.sandbox(script)
    assert default.returncode == 3 and "survived" not in default.stderr
    waited = jailpy.sandbox(script, "--wait-all")
    assert waited.returncode == 3, waited.stderr  # the command's status, not the last one's
    assert without_cwd_note(waited.stderr) == "survived\n"
    # Signals reach what is left once the command is gone: a timeout ends it.
    timed = jailpy.sandbox("sleep 60 & exit 0", "--wait-all", "--timeout", "1")
    assert timed.returncode == 124, timed.stderr
