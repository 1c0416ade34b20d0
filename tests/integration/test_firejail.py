"""`jailpy profile import-firejail` against firejail's own corpus and firejail itself.

The corpus test runs README's `--all` command over every profile of the
firejail-profiles package (no sandbox per profile, to keep CI time bounded); the
command loads each result as `jailpy profile check` does. The semantic tests run firejail and jailpy with
the same profile, as the unprivileged test user, and compare what each shows:
the secrets firejail hides, the app's own config directory, the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from desktop_apps import Desk, pdf_bytes
from jailpy.profile import firejail

pytestmark = pytest.mark.integration

CORPUS = Path(firejail.SYSTEM_DIR)
needs_corpus = pytest.mark.skipif(not (CORPUS / "firefox.profile").exists(),
                                  reason="firejail-profiles is not installed "
                                         "(scripts/setup.sh installs it)")
needs_firejail = pytest.mark.skipif(shutil.which("firejail") is None,
                                    reason="firejail is not installed (scripts/setup.sh)")

#: The secrets checked in every profile; firejail hides them in most.
SECRETS = (".ssh", ".aws", ".gnupg")
#: Ten popular profiles and the app's own config directory in each.
APPS = {"firefox": ".mozilla", "chromium": ".config/chromium", "vlc": ".config/vlc",
        "evince": ".config/evince", "libreoffice": ".config/libreoffice",
        "thunderbird": ".thunderbird", "gimp": ".config/GIMP", "mpv": ".config/mpv",
        "transmission-gtk": ".config/transmission", "steam": ".steam"}
#: The shipped profiles converted from firejail's (scripts/import-firejail-profiles.sh)
#: and the app's own config directory in each.
SHIPPED = {"vlc": ".config/vlc", "thunderbird": ".thunderbird", "gimp": ".config/GIMP",
           "inkscape": ".config/inkscape", "transmission-gtk": ".config/transmission",
           "steam": ".steam", "audacity": ".audacity-data", "eog": ".config/eog",
           "totem": ".config/totem", "rhythmbox": ".local/share/rhythmbox",
           "gedit": ".config/gedit", "okular": ".local/share/okular",
           "krita": ".local/share/krita", "shotwell": ".local/share/shotwell",
           "hexchat": ".config/hexchat", "keepassxc": ".config/keepassxc",
           "telegram-desktop": ".local/share/TelegramDesktop",
           "signal-desktop": ".config/Signal", "discord": ".config/discord", "zoom": ".zoom"}
#: The firejail-profiles version the shipped conversions were made from.
SHIPPED_FROM = "0.9.72"
#: Secrets a shipped profile shows because firejail's shows them too: thunderbird's
#: whitelists ~/.gnupg for OpenPGP (test_same_view_as_firejail[thunderbird] checks it).
SHOWN = {"thunderbird": {".gnupg"}}
PROFILES = Path(__file__).resolve().parents[2] / "profiles"
#: The probe's own programs, added to private-bin (and un-hidden like allow-bin-sh.inc
#: does) the same way for firejail and for the conversion: one more profile line each.
PROBE_BIN = "sh,ls,cat,tail,cut,tr,sort"


def _corpus_version() -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "firejail-profiles"],
                            capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


#: README's command for the whole corpus; test_documented_commands.py leaves it to
#: this test, so CI converts the corpus once.
CORPUS_COMMAND = "jailpy profile import-firejail --all /etc/firejail -o converted/"


@needs_corpus
def test_whole_corpus_converts_and_checks(jailpy, user_tmp):
    """README's --all command, as written, as the test user: every profile converts
    and passes `jailpy profile check`, or fails with one clear line."""
    assert CORPUS_COMMAND in (PROFILES.parent / "README.md").read_text()
    args = CORPUS_COMMAND.split()[1:]
    assert args[3] == str(CORPUS)
    result = jailpy.run(args, cwd=user_tmp, timeout=600)
    assert "Traceback" not in result.stderr + result.stdout
    summary = result.stdout.splitlines()
    converted, total = (int(n) for n in summary[0].split()[1:4:2])
    assert total >= 1000, f"only {total} profiles in {CORPUS}"
    assert converted / total >= 0.95, result.stdout
    failures = [line for line in summary if line.startswith("  failed ")]
    assert len(failures) == total - converted
    for line in failures:   # a clear one-line reason each
        assert ": jailpy: " in line, line
    assert result.returncode == (0 if not failures else 125)
    made = sorted(p.name for p in (user_tmp / "converted").glob("*.toml"))
    assert len(made) == converted
    assert (user_tmp / "converted" / "firefox.toml").read_text().startswith(
        "# jailpy profile converted")


#: Files and directories firejail may hide under /etc and /usr (disable-*.inc's
#: blacklists; a whitelist of /usr/share leaves the rest out) that exist on every test
#: machine (scripts/setup.sh installs gcc and man-db; util-linux, passwd, adduser, dpkg
#: and apt are always there).
SYSTEM_FILES = ("/etc/default/useradd", "/etc/adduser.conf", "/usr/bin/gcc",
                "/usr/bin/mount", "/usr/bin/su")
SYSTEM_DIRS = ("/etc/cron.daily", "/etc/kernel", "/usr/share/man")


def _probe(config_dir: str) -> str:
    """Prints, one line each: the secrets and the config dir visible or hidden, the
    network interfaces, then each of SYSTEM_FILES readable or not and each of
    SYSTEM_DIRS listed or empty."""
    checks = " ".join(f"~/{p}" for p in (*SECRETS, config_dir))
    return (f"for p in {checks}; do if ls -d $p >/dev/null 2>&1; then echo visible; "
            "else echo hidden; fi; done; "
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '; echo; "
            f"for f in {' '.join(SYSTEM_FILES)}; do if cat $f >/dev/null 2>&1; "
            "then echo readable; else echo unreadable; fi; done; "
            f"for d in {' '.join(SYSTEM_DIRS)}; do if [ -n \"$(ls -A $d 2>/dev/null)\" ]; "
            "then echo listed; else echo empty; fi; done")


@pytest.fixture(scope="module")
def probe_home(test_user):
    """The secrets and the apps' config dirs in the test user's real home (firejail
    reads the passwd home), removed afterwards if this fixture made them."""
    home = Path(test_user.home)
    made = []
    for rel in (*SECRETS, *APPS.values(), *SHIPPED.values(), ".config/firejail"):
        path = home
        for part in rel.split("/"):
            path = path / part
            if not path.exists():
                path.mkdir()
                os.chown(path, test_user.uid, test_user.gid)
                made.append(path)
    yield home
    for path in reversed(made):
        shutil.rmtree(path, ignore_errors=True)


@needs_corpus
@needs_firejail
@pytest.mark.parametrize("app", sorted(APPS))
def test_same_view_as_firejail(app, jailpy, test_user, probe_home, user_tmp):
    probe_profile = probe_home / ".config" / "firejail" / f"jailpy-probe-{app}.profile"
    probe_profile.write_text(f"include allow-bin-sh.inc\nprivate-bin {PROBE_BIN}\n"
                             f"include {app}.profile\n")
    os.chown(probe_profile, test_user.uid, test_user.gid)
    try:
        script = _probe(APPS[app])
        # firejail fails without a session bus to filter; jailpy skips it (optional)
        theirs = jailpy.raw(["firejail", "--quiet", f"--profile={probe_profile.stem}",
                             "--dbus-user=none", "--dbus-system=none", "sh", "-c", script])
        assert theirs.returncode == 0, theirs.stderr
        out = user_tmp / f"{app}.toml"
        imported = jailpy.run(["profile", "import-firejail", probe_profile.stem, "-o", str(out)])
        assert imported.returncode == 0, imported.stderr
        ours = jailpy.run(["run", "-p", str(out), "--", "sh", "-c", script])
        assert ours.returncode == 0, ours.stderr
    finally:
        probe_profile.unlink()
    fj, jp = theirs.stdout.splitlines(), ours.stdout.splitlines()
    for secret, seen_by_firejail, seen_by_jailpy in zip(SECRETS, fj, jp):
        if seen_by_firejail == "hidden":
            assert seen_by_jailpy == "hidden", f"~/{secret}: firejail hides it, jailpy shows it"
    assert fj[3] == "visible", f"firejail does not show ~/{APPS[app]}"
    assert jp[3] == "visible", f"~/{APPS[app]}: firejail shows it, jailpy hides it"
    assert jp[4] == fj[4], "network interfaces differ"
    # The system files firejail blacklists are covered (`hide`), not left readable.
    for path, seen_by_firejail, seen_by_jailpy in zip((*SYSTEM_FILES, *SYSTEM_DIRS),
                                                      fj[5:], jp[5:]):
        if seen_by_firejail in ("unreadable", "empty"):
            assert seen_by_jailpy == seen_by_firejail, f"{path}: firejail hides it, jailpy not"
    print(app, "firejail:", fj, "jailpy:", jp)  # the table in docs/firejail.md


@needs_corpus
def test_private_lib_conversion_runs_evince_with_only_its_libraries(test_user, user_tmp,
                                                                    jailpy_bin):
    """firejail's evince profile has private-bin and private-lib: the conversion
    binds only what evince loads (read from the ELF headers when converting), and
    evince still shows the PDF on Xvfb, while the rest of /usr/lib is gone."""
    desk = Desk(test_user, user_tmp, jailpy_bin)
    try:
        out = user_tmp / "evince.toml"
        converted = desk.jailpy(["profile", "import-firejail", "evince", "-o", str(out)])
        assert converted.returncode == 0, converted.stderr
        assert '{ tmpfs = "/usr/lib" }' in out.read_text()
        pdf = desk.file("Documents/paper.pdf", pdf_bytes())
        app = desk.start(["run", "-p", str(out), "--", "evince", str(pdf)], "evince")
        assert desk.wait_title(r"^paper\.pdf$")
        app.stop()
        paths = {"/usr/lib/libreoffice": False, "/usr/lib/python3": False,
                 "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0": False,
                 "/usr/lib/x86_64-linux-gnu/gdk-pixbuf-2.0": True,
                 "/lib64/ld-linux-x86-64.so.2": True}
        shown = desk.jailpy(["run", "-p", str(out), "--ro-bind", "/usr/bin/sh", "/usr/bin/sh",
                             "--", "sh", "-c", f"for p in {' '.join(paths)}; do "
                             "test -e $p && echo $p; done; true"])
        assert shown.returncode == 0, shown.stderr
        assert set(shown.stdout.split()) == {p for p, seen in paths.items() if seen}
        assert all(os.path.exists(p) for p in paths), "the host lacks a path checked"
    finally:
        desk.stop()


def test_shipped_conversions_are_exactly_the_listed_ones():
    converted = {p.stem for p in PROFILES.glob("*.toml")
                 if p.read_text().startswith("# jailpy profile converted from firejail")}
    assert converted == set(SHIPPED)


@pytest.mark.parametrize("app", sorted(SHIPPED))
def test_shipped_conversion(app, jailpy, probe_home):
    """Each shipped conversion runs by name: the secrets hidden, the app's config dir
    visible, the host network as firejail gives it (the comparison with firejail
    itself for the profiles in APPS is test_same_view_as_firejail)."""
    probe_bins = [arg for name in PROBE_BIN.split(",")
                  for arg in ("--ro-bind-try", f"/usr/bin/{name}", f"/usr/bin/{name}")]
    result = jailpy.run(["run", "-p", app, *probe_bins, "--", "sh", "-c",
                         _probe(SHIPPED[app])])
    assert result.returncode == 0, result.stderr
    expected = ["visible" if s in SHOWN.get(app, ()) else "hidden" for s in SECRETS]
    assert result.stdout.splitlines()[:4] == [*expected, "visible"]


@needs_corpus
@pytest.mark.skipif(not _corpus_version().startswith(SHIPPED_FROM),
                    reason=f"the shipped conversions were made from firejail-profiles "
                           f"{SHIPPED_FROM}; this machine has {_corpus_version() or 'none'}")
def test_shipped_conversions_are_regenerated_unchanged(tmp_path):
    for app in SHIPPED:
        conversion = firejail.convert(f"{firejail.SYSTEM_DIR}/{app}.profile", str(tmp_path))
        assert firejail.render(conversion) == (PROFILES / f"{app}.toml").read_text(), app


@needs_corpus
def test_cli_writes_checked_profile_and_notes(jailpy, user_tmp):
    out = user_tmp / "vlc.toml"
    result = jailpy.run(["profile", "import-firejail", "vlc", "-o", str(out)])
    assert result.returncode == 0, result.stderr
    assert "note: /etc/firejail/vlc.profile:" in result.stderr
    assert "apparmor not converted" in result.stderr
    assert jailpy.run(["profile", "check", str(out)]).returncode == 0
    text = out.read_text()
    assert "# /etc/firejail/vlc.profile:" in text     # origins as FILE:LINE


@pytest.mark.parametrize("name, cause", [
    ("no-such-app-xyz", "no-such-app-xyz.profile"),
    # The corpus's one failure: its include is not in the package (firejail itself
    # says "cannot access profile file"); docs/firejail.md lists it.
    (f"{CORPUS}/electron-hardened.inc.profile",
     "include chrome-common-hardened.inc.profile: file not found")])
def test_cli_failure_is_one_line_125(jailpy, name, cause):
    if name.startswith("/") and not os.path.exists(name):
        pytest.skip("firejail-profiles is not installed (scripts/setup.sh installs it)")
    result = jailpy.run(["profile", "import-firejail", name])
    assert result.returncode == 125
    assert result.stderr.startswith("jailpy: ") and cause in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def _python_denying(jailpy, user_tmp: Path, deny: list[str], script: str) -> list[str]:
    """Output lines of `python3 -c script` under the default profile plus `deny`."""
    path = user_tmp / "deny.toml"
    path.write_text(f'extends = ["default"]\n[seccomp]\ndeny = {deny!r}\n'.replace("'", '"'))
    result = jailpy.run(["run", "-p", str(path), "--", "python3", "-c", script])
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_protocol_groups_refuse_other_socket_families(jailpy, user_tmp):
    """firejail's `protocol unix` as converted: AF_INET and AF_PACKET refused, AF_UNIX not."""
    script = ("import socket\n"
              "for fam, kind in ((1, 1), (2, 1), (10, 2), (17, 3), (16, 3), (38, 5)):\n"
              "    try:\n        socket.socket(fam, kind).close(); print(fam, 'ok')\n"
              "    except OSError as e:\n        print(fam, e.errno)\n")
    lines = _python_denying(jailpy, user_tmp, ["@socket-other", "@socket-inet", "@socket-inet6",
                                               "@socket-netlink", "@socket-packet",
                                               "@socket-bluetooth"], script)
    assert lines == ["1 ok", "2 1", "10 1", "17 1", "16 1", "38 1"]


def test_memory_deny_write_execute(jailpy, user_tmp):
    script = ("import mmap\n"
              "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE); print('rw ok')\n"
              "try:\n    mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
              "    print('wx ok')\nexcept OSError as e:\n    print('wx', e.errno)\n")
    assert _python_denying(jailpy, user_tmp, ["@memory-deny-write-execute"], script) == \
        ["rw ok", "wx 1"]
