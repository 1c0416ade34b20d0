"""Each shipped profile resolves and runs something real, and gives what its
description promises (and nothing more), as the unprivileged test user."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = pytest.mark.integration

#: Interfaces other than loopback in /proc/net/dev.
NO_NETWORK = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | grep -vx lo || echo none"


def test_default(jailpy, test_user):
    script = (f"id -u; hostname; ls -A \"$HOME\" | wc -l; test -r /etc/passwd && echo etc; "
              f"touch /usr/x 2>/dev/null || echo usr-ro; touch /tmp/x && echo tmp-rw; "
              f"{NO_NETWORK}")
    result = jailpy.sandbox(script, "--profile", "default")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(test_user.uid), "jailpy", "0", "etc", "usr-ro",
                                     "tmp-rw", "none"]


def test_minimal(jailpy):
    script = ("python3 -c 'import sys; print(sys.version_info[0])'; awk 'BEGIN{print \"awk\"}'; "
              "test -e /etc/passwd || echo no-passwd; test -e /etc/resolv.conf || echo no-dns; "
              "test -e /home || echo no-home; echo \"$HOME\" \"$PWD\"; "
              "touch /usr/x 2>/dev/null || echo usr-ro; touch /tmp/x && echo tmp-rw; "
              f"ls /; {NO_NETWORK}")
    result = jailpy.sandbox(script, "-p", "minimal")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "awk", "no-passwd", "no-dns", "no-home", "/tmp",
                                     "/tmp", "usr-ro", "tmp-rw", "bin", "dev", "etc", "lib",
                                     "lib64", "proc", "sbin", "tmp", "usr", "none"]
    # the counterpart: the same script outside sees the host's /etc and /home
    outside = jailpy.raw(["sh", "-c", "test -e /etc/passwd && test -e /home && echo host"])
    assert outside.stdout == "host\n"


_PROBE = r"""
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    DIR *d = opendir("/");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') printf("%s\n", e->d_name);
    const char *paths[] = {"/etc/passwd", "/usr/bin/sh", "/home", 0};
    for (int i = 0; paths[i]; i++)
        printf("%s:%s\n", paths[i], open(paths[i], O_RDONLY) < 0 ? strerror(errno) : "OPEN");
    printf("tmp:%s\n", open("/tmp/w", O_CREAT | O_WRONLY, 0600) < 0 ? strerror(errno) : "OK");
    printf("root:%s\n", mkdir("/new", 0700) < 0 ? strerror(errno) : "OK");
    return 0;
}
"""


@pytest.fixture(scope="module")
def static_probe(tmp_path_factory) -> Path:
    """A statically linked program that reports what it can see."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build a static test program (scripts/setup.sh installs it)")
    work = tmp_path_factory.mktemp("probe")
    (work / "probe.c").write_text(_PROBE)
    built = subprocess.run(["gcc", "-static", "-O1", "-o", str(work / "probe"),
                            str(work / "probe.c")], capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        pytest.skip(f"cannot build a static program (is libc6-dev installed?): {built.stderr}")
    target = Path("/var/tmp") / f"jailpy-probe-{os.getpid()}"
    target.mkdir(exist_ok=True)
    shutil.copy2(work / "probe", target / "probe")
    target.chmod(0o755)
    (target / "probe").chmod(0o755)
    yield target / "probe"
    shutil.rmtree(target, ignore_errors=True)


def test_strict_runs_a_static_program_that_sees_nothing_of_the_host(jailpy, static_probe):
    result = jailpy.run(["run", "-p", "strict", "--ro-bind", str(static_probe), "/probe",
                         "--", "/probe"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines[:4]) == ["dev", "probe", "proc", "tmp"], lines
    assert lines[4:] == ["/etc/passwd:No such file or directory",
                         "/usr/bin/sh:No such file or directory",
                         "/home:No such file or directory", "tmp:OK",
                         "root:Read-only file system"]
    # the counterpart: the same program outside sees the host
    outside = jailpy.raw([str(static_probe)])
    assert "/etc/passwd:OPEN" in outside.stdout and "usr" in outside.stdout.split()


def test_strict_has_no_shell(jailpy):
    result = jailpy.run(["run", "-p", "strict", "--", "sh", "-c", "true"])
    assert result.returncode == 127, result.stderr
    assert "command not found" in result.stderr


_CONNECT = ("import socket, sys; s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5);"
            " print(s.recv(16).decode())")


def test_net_client_has_a_network_but_not_the_hosts_loopback(jailpy):
    """net-client: slirp4netns, without the host's 127.0.0.1 unless --host-loopback;
    the counterpart for "has a network" is the default profile, which has none."""
    with _hello_server() as port:
        devices = "python3 -c 'import socket; print(len(socket.if_nameindex()))'"
        check = jailpy.sandbox(f"{devices}; grep -c 10.0.2.3 /etc/resolv.conf; "
                               "ls -A \"$HOME\" | wc -l", "-p", "net-client")
        assert check.stdout.split() == ["2", "1", "0"], check
        assert jailpy.sandbox(devices, "-p", "default").stdout.split() == ["1"]
        for address in ("127.0.0.1", "10.0.2.2"):
            blocked = jailpy.run(["run", "-p", "net-client", "--", "python3", "-c",
                                  _CONNECT.replace("127.0.0.1", address), str(port)])
            assert blocked.returncode != 0, blocked.stdout
        allowed = jailpy.run(["run", "-p", "net-client", "--host-loopback", "--", "python3",
                              "-c", _CONNECT.replace("127.0.0.1", "10.0.2.2"), str(port)])
        assert allowed.stdout == "hello\n", allowed.stderr


def test_ci_build_net_has_a_network_but_keeps_ci_builds_box(jailpy, user_tmp):
    """ci-build-net: ci-build's workspace, empty home and cleared environment,
    plus slirp4netns; the host's 127.0.0.1 stays unreachable (counterpart:
    the same listener answers outside, and ci-build itself has no network)."""
    with _hello_server() as port:
        devices = "python3 -c 'import socket; print(len(socket.if_nameindex()))'"
        probe = (f"{devices}; grep -c 10.0.2.3 /etc/resolv.conf; ls -A \"$HOME\" | wc -l; "
                 "echo built > out.txt; echo ${SECRET_TOKEN:-no-token}")
        result = jailpy.run(["run", "-p", "ci-build-net", "--", "sh", "-c", probe],
                            env={"SECRET_TOKEN": "hunter2"})
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["2", "1", "0", "no-token"]
        assert (user_tmp / "out.txt").read_text() == "built\n"
        offline = jailpy.run(["run", "-p", "ci-build", "--", "sh", "-c", devices])
        assert offline.stdout.split() == ["1"]
        for address in ("127.0.0.1", "10.0.2.2"):
            blocked = jailpy.run(["run", "-p", "ci-build-net", "--", "python3", "-c",
                                  _CONNECT.replace("127.0.0.1", address), str(port)])
            assert blocked.returncode != 0, blocked.stdout
        outside = jailpy.raw(["python3", "-c", _CONNECT, str(port)])
        assert outside.stdout == "hello\n", outside.stderr


@contextlib.contextmanager
def _hello_server() -> Iterator[int]:
    """A listener on the host's 127.0.0.1 that answers one connection with "hello";
    yields its port. Its thread is bounded by the socket's timeout."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    thread = threading.Thread(target=_serve_once, args=(server,), daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        thread.join(5)


def _serve_once(server: socket.socket) -> None:
    try:
        conn, _ = server.accept()
        conn.sendall(b"hello")
        conn.close()
    except OSError:
        pass
