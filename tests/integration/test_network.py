"""Networking: none, host, slirp4netns and pasta; host loopback, publishing,
Landlock port rules, generated /etc files, helper lifecycle and failure modes.

Everything runs the real CLI as the unprivileged test user with the real
helpers. Traffic goes only to 127.0.0.1: on the host itself for none/host and
slirp4netns (whose 10.0.2.2 never leaves the helper), and, for pasta, inside a
network namespace this module makes (pasta turns a connection to an unmapped
address into a real one from the host side, so those must end somewhere we
own: a veth pair with nothing behind it, and no route to 10.0.2.0/24).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import Completed, chown_tree, comm, poll, process_tree, processes

HELPERS = ("slirp4netns", "pasta")
IS_ROOT = os.geteuid() == 0

#: Runs in the sandbox (or outside, as a counterpart): fetch http://HOST:PORT/ and
#: print "BODY <body>" or "FAIL <exception> <errno>"; retries for a published port.
CLIENT = """
import socket, sys, time
host, port, timeout, tries = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
proto = sys.argv[5] if len(sys.argv) > 5 else "tcp"
for attempt in range(tries):
    try:
        if proto == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(b"ping", (host, port))
                data = s.recvfrom(4096)[0]
        else:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            data = data.split(b"\\r\\n\\r\\n", 1)[-1]
        if data:
            print("BODY", data.decode())
            break
        raise ConnectionResetError(104, "empty reply")
    except OSError as exc:
        if attempt == tries - 1:
            print("FAIL", type(exc).__name__, exc.errno)
        else:
            time.sleep(0.1)
"""

#: A one-shot server inside the sandbox: answers one TCP (HTTP) or UDP request.
SERVER = """
import socket, sys
port, proto, body = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
with socket.socket(socket.AF_INET, kind) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.settimeout(30)
    if proto == "udp":
        data, peer = s.recvfrom(4096)
        s.sendto(body, peer)
    else:
        s.listen()
        conn, _ = s.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
        conn.close()
"""

#: The test's own HTTP server, on 127.0.0.1 of the host side; prints its port.
HOST_SERVER = """
import http.server, sys
body = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

#: Network set-up of the namespace the pasta tests run in (see module docstring).
TEST_NETNS = """
ip link set lo up
ip link add jp0 type veth peer name jp1
ip addr add 10.99.0.2/24 dev jp0
ip link set jp0 up
ip link set jp1 up
ip route add default via 10.99.0.1 dev jp0
ip route add unreachable 10.0.2.0/24
echo ready
exec sleep 900
"""


class HostSide:
    """Where the host end of a test lives: [] is the real host, else an nsenter prefix."""

    def __init__(self, prefix: list[str]):
        self.prefix = prefix

    def command(self, argv: list[str]) -> list[str]:
        return [*self.prefix, *argv]


@pytest.fixture(scope="module")
def test_netns():
    """A network namespace of our own for pasta's host side (root only)."""
    proc = subprocess.Popen(["unshare", "--net", "sh", "-ec", TEST_NETNS],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "ready", "could not set up the test network namespace"
        yield HostSide(["nsenter", f"--net=/proc/{proc.pid}/ns/net"])
    finally:
        proc.kill()
        proc.wait()


def _skip_unless_usable(helper: str) -> None:
    if shutil.which(helper) is None:
        pytest.skip(f"{helper} is not installed (Debian package "
                    f"{'passt' if helper == 'pasta' else helper})")


@pytest.fixture(params=HELPERS)
def helper(request) -> str:
    _skip_unless_usable(request.param)
    return request.param


@pytest.fixture
def host(helper: str, request) -> HostSide:
    if helper == "slirp4netns":
        return HostSide([])
    if not IS_ROOT:
        pytest.skip("pasta's tests need root to make the network namespace their "
                    "outbound traffic is confined to")
    return request.getfixturevalue("test_netns")


class HostServer:
    def __init__(self, side: HostSide, token: str):
        self.token = token
        self.proc = subprocess.Popen(side.command(["python3", "-c", HOST_SERVER, token]),
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def serve():
    """serve(side) -> a HostServer on that side's 127.0.0.1; stopped after the test."""
    servers: list[HostServer] = []

    def start(side: HostSide = HostSide([])) -> HostServer:
        server = HostServer(side, f"token-{os.urandom(4).hex()}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def jailpy_on(jailpy, side: HostSide, args: list[str], timeout: float = 60,
              env: dict | None = None) -> Completed:
    proc = subprocess.run(side.command(jailpy.user.command([jailpy.binary, *args])),
                          capture_output=True, text=True, timeout=timeout, cwd=jailpy.workdir,
                          env=jailpy.env(env))
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def fetch(jailpy, side: HostSide, options: list[str], host: str, port: int,
          timeout: float = 3, tries: int = 1) -> str:
    """Run CLIENT in a sandbox with these options; its one output line."""
    result = jailpy_on(jailpy, side, ["run", *options, "--", "python3", "-c", CLIENT,
                                      host, str(port), str(timeout), str(tries)])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def free_port(side: HostSide, proto: str = "tcp") -> int:
    """A port that is free on the host side now (the kernel's choice)."""
    kind = "SOCK_STREAM" if proto == "tcp" else "SOCK_DGRAM"
    code = (f"import socket; s = socket.socket(socket.AF_INET, socket.{kind}); "
            "s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    return int(subprocess.run(side.command(["python3", "-c", code]), capture_output=True,
                              text=True, check=True).stdout)


# --- none and host ----------------------------------------------------------------------


def test_none_has_only_loopback_and_cannot_reach_the_hosts_loopback(jailpy, serve):
    server = serve()
    result = jailpy.sandbox("python3 -c 'import socket; print(socket.if_nameindex())'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[(1, 'lo')]"
    assert fetch(jailpy, HostSide([]), [], "127.0.0.1", server.port).startswith(
        "FAIL ConnectionRefusedError")
    # Counterpart: the same client outside the sandbox, as the same user, gets through.
    outside = jailpy.raw(["python3", "-c", CLIENT, "127.0.0.1", str(server.port), "3", "1"])
    assert outside.stdout.strip() == f"BODY {server.token}"


def test_host_mode_reaches_the_hosts_loopback(jailpy, serve):
    server = serve()
    assert fetch(jailpy, HostSide([]), ["--net", "host"], "127.0.0.1",
                 server.port) == f"BODY {server.token}"


def test_explain_says_host_mode_loudly(jailpy):
    result = jailpy.run(["run", "--net", "host", "--explain", "--", "true"])
    assert result.returncode == 0, result.stderr
    assert "[network]" in result.stdout
    assert "HOST -- SHARES THE HOST'S NETWORK NAMESPACE" in result.stdout
    assert "net     SHARED with the host" in result.stdout


# --- slirp4netns and pasta -------------------------------------------------------------


def test_helper_gives_an_interface_and_generated_etc_files(jailpy, helper, host):
    script = ("python3 -c 'import socket; print(sorted(n for _, n in socket.if_nameindex()))'; "
              "ip -4 -o addr show scope global | awk '{print $4}'; ip route show default; "
              "cat /etc/resolv.conf /etc/hosts")
    result = jailpy_on(jailpy, host, ["run", "--net", helper, "--", "sh", "-c", script])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "'lo'" in lines[0] and len(eval(lines[0])) == 2  # lo and the helper's device
    assert lines[1] == "10.0.2.100/24"
    assert lines[2].startswith("default via 10.0.2.2 ")
    assert "nameserver 10.0.2.3" in lines
    assert "127.0.0.1\tlocalhost" in lines
    assert "127.0.1.1\tjailpy" in lines


def test_host_loopback_is_reachable_only_when_allowed(jailpy, helper, host, serve):
    server = serve(host)
    allowed = fetch(jailpy, host, ["--net", helper, "--host-loopback"], "10.0.2.2", server.port)
    assert allowed == f"BODY {server.token}"
    denied = fetch(jailpy, host, ["--net", helper], "10.0.2.2", server.port, timeout=1.5)
    assert denied.startswith("FAIL")
    # The sandbox's own 127.0.0.1 is not the host's either way (pasta: -T none).
    inside = fetch(jailpy, host, ["--net", helper, "--host-loopback"], "127.0.0.1", server.port)
    assert inside.startswith("FAIL ConnectionRefusedError")


def _old_pasta() -> bool:
    """Debian 12's pasta (2023-03) drops UDP replies to clients on the host's loopback."""
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "passt"],
                             capture_output=True, text=True).stdout
    return version.startswith("0.0~git2023") or version.startswith("0.0~git2022")


#: Waits (bounded) for slirp4netns' IPv6 router advertisement, then fetches [fd00::2]:PORT.
CLIENT6 = """
import socket, sys, time
port = int(sys.argv[1])
for _ in range(100):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.connect(("fd00::2", port))  # succeeds once there is a route
        break
    except OSError:
        time.sleep(0.05)
else:
    print("NOROUTE")
    sys.exit()
try:
    with socket.create_connection(("fd00::2", port), timeout=2) as s:
        print("BODY", s.recv(100).decode().strip())
except OSError as exc:
    print("FAIL", type(exc).__name__, exc.errno)
"""


@pytest.mark.skipif(not os.path.exists("/proc/sys/net/ipv6/conf/lo"), reason="no IPv6 here")
def test_host_loopback_rule_covers_ipv6_with_slirp4netns(jailpy):
    _skip_unless_usable("slirp4netns")
    token = f"v6-{os.urandom(4).hex()}"
    with socket.socket(socket.AF_INET6) as server:
        server.bind(("::1", 0))
        server.listen()
        port = server.getsockname()[1]

        def fetch6(*options: str) -> str:
            proc = subprocess.Popen(jailpy.user.command(
                [jailpy.binary, "run", "--net", "slirp4netns", *options, "--", "python3", "-c",
                 CLIENT6, str(port)]), stdout=subprocess.PIPE, text=True, cwd=jailpy.workdir,
                env=jailpy.env())
            jailpy.started.append(proc)
            server.settimeout(10)
            if "--host-loopback" in options:
                conn, _ = server.accept()
                conn.sendall(token.encode())
                conn.close()
            return proc.communicate(timeout=30)[0].strip()

        assert fetch6("--host-loopback") == f"BODY {token}"
        assert fetch6().startswith("FAIL")  # with a route to fd00::2, but no host loopback


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_published_port_answers_on_the_hosts_loopback(jailpy, helper, host, proto):
    options = ["--net", helper]
    if proto == "udp" and helper == "slirp4netns":
        # libslirp drops every packet to 10.0.2.2, UDP replies to a published
        # port's loopback client included, unless host loopback is allowed
        # (podman#4586; see docs/network.md).
        options.append("--host-loopback")
    if proto == "udp" and helper == "pasta" and _old_pasta():
        pytest.skip("this pasta (Debian 12, 2023-03) does not return UDP replies to clients "
                    "on the host's loopback; see docs/network.md")
    port = free_port(host, proto)
    body = f"published-{os.urandom(4).hex()}"
    sandbox = subprocess.Popen(
        host.command(jailpy.user.command([
            jailpy.binary, "run", *options, "--publish", f"{port}:8000/{proto}", "--",
            "python3", "-c", SERVER, "8000", proto, body])),
        cwd=jailpy.workdir, env=jailpy.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    jailpy.started.append(sandbox)
    client = subprocess.run(host.command(["python3", "-c", CLIENT, "127.0.0.1", str(port),
                                          "0.5", "60", proto]), capture_output=True, text=True,
                            timeout=60)
    out, err = sandbox.communicate(timeout=30)
    assert client.stdout.strip() == f"BODY {body}", (client.stdout, err)
    assert sandbox.returncode == 0, err


def test_server_inside_binds_port_80_published_to_the_host(jailpy, helper, host):
    """README's example: the network namespace is jailpy's, so it lets a server
    inside bind a low port (net.ipv4.ip_unprivileged_port_start = 0 there)."""
    port = free_port(host)
    body = f"port80-{os.urandom(4).hex()}"
    sandbox = subprocess.Popen(
        host.command(jailpy.user.command([
            jailpy.binary, "run", "--net", helper, "--publish", f"{port}:80", "--",
            "python3", "-c", SERVER, "80", "tcp", body])),
        cwd=jailpy.workdir, env=jailpy.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    jailpy.started.append(sandbox)
    client = subprocess.run(host.command(["python3", "-c", CLIENT, "127.0.0.1", str(port),
                                          "0.5", "60", "tcp"]), capture_output=True, text=True,
                            timeout=60)
    out, err = sandbox.communicate(timeout=30)
    assert client.stdout.strip() == f"BODY {body}", (client.stdout, err)
    assert sandbox.returncode == 0, err


def test_low_ports_open_only_in_a_network_namespace_jailpy_made(jailpy):
    bind80 = "import socket; socket.socket().bind(('127.0.0.1', 80)); print('bound')"
    own = jailpy.run(["run", "--", "python3", "-c", bind80])
    assert (own.returncode, own.stdout.strip()) == (0, "bound"), own.stderr
    # The host's namespace keeps its limit, and the sandbox cannot lower it.
    shared = jailpy.run(["run", "--net", "host", "--", "sh", "-c",
                         "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                         "echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start"])
    host_value = open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read().strip()
    assert shared.stdout.strip() == host_value and shared.returncode != 0


def test_published_port_in_use_on_the_host_is_a_clear_error(jailpy, helper, host, serve):
    server = serve(host)  # holds 127.0.0.1:PORT on the host side
    result = jailpy_on(jailpy, host, ["run", "--net", helper, "--publish",
                                      f"{server.port}:80", "--", "true"])
    assert result.returncode == 125
    assert f"--publish {server.port}:80: host port 127.0.0.1:{server.port}/tcp is already " \
           "in use" in result.stderr
    assert "Traceback" not in result.stderr


# --- outbound port rules (Landlock) ------------------------------------------------------


def test_allow_connect_tcp_lets_only_the_listed_port_connect(jailpy, serve):
    first, second = serve(), serve()
    options = ["--net", "slirp4netns", "--host-loopback"]
    ruled = options + ["--allow-connect-tcp", str(first.port)]
    assert fetch(jailpy, HostSide([]), ruled, "10.0.2.2", first.port) == f"BODY {first.token}"
    assert fetch(jailpy, HostSide([]), ruled, "10.0.2.2", second.port) == \
        "FAIL PermissionError 13"
    # Counterpart: the same sandbox without the rule reaches both.
    assert fetch(jailpy, HostSide([]), options, "10.0.2.2", second.port) == \
        f"BODY {second.token}"


BIND_BOTH = ("python3 -c \"import socket\nfor p in (8001, 8002):\n s = socket.socket()\n try:\n"
             "  s.bind(('127.0.0.1', p)); print(p, 'bound')\n except OSError as e:\n"
             "  print(p, 'refused', e.errno)\"")


def test_allow_bind_tcp_lets_only_the_listed_port_be_bound(jailpy):
    ruled = jailpy.sandbox(BIND_BOTH, "--allow-bind-tcp", "8001")
    assert ruled.stdout.split("\n")[:2] == ["8001 bound", "8002 refused 13"], ruled.stderr
    plain = jailpy.sandbox(BIND_BOTH)
    assert plain.stdout.split("\n")[:2] == ["8001 bound", "8002 bound"], plain.stderr


#: Runs jailpy with landlock_create_ruleset failing ENOSYS, as on a kernel without Landlock.
NO_LANDLOCK = """
import os, sys
import pyseccomp as seccomp
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(38), "landlock_create_ruleset")
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_port_rules_fail_closed_without_landlock_unless_best_effort(jailpy, user_tmp,
                                                                       test_user):
    python = str(Path(jailpy.binary).parent / "python")
    ruled = jailpy.raw([python, "-c", NO_LANDLOCK, jailpy.binary, "run",
                        "--allow-connect-tcp", "443", "--", "true"])
    assert ruled.returncode == 125
    assert "--allow-connect-tcp 443: Landlock is not available" in ruled.stderr
    assert "set network.best_effort = true" in ruled.stderr
    profile = user_tmp / "lenient.toml"
    profile.write_text('extends = ["default"]\n[network]\nallow_connect_tcp = [443]\n'
                       'best_effort = true\n')
    chown_tree(user_tmp, test_user)
    lenient = jailpy.raw([python, "-c", NO_LANDLOCK, jailpy.binary, "run", "--profile",
                          str(profile), "--", "echo", "ran"])
    assert (lenient.returncode, lenient.stdout) == (0, "ran\n"), lenient.stderr


# --- generated files never touch the host -------------------------------------------------


def test_generated_files_cover_a_read_write_etc_without_writing_it(jailpy, user_tmp, test_user):
    etc = user_tmp / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("HOST FILE\n")
    os.symlink("../run/resolv-target", etc / "resolv.conf")  # as systemd-resolved sets it up
    chown_tree(user_tmp, test_user)
    host_resolv = hashlib.sha256(Path("/etc/resolv.conf").read_bytes()).hexdigest()
    script = ("cat /etc/resolv.conf /etc/hosts; echo x > /etc/hosts 2>/dev/null; "
              "echo write=$?; echo x > /etc/resolv.conf 2>/dev/null; echo write=$?")
    result = jailpy.sandbox(script, "--net", "slirp4netns", "--bind", str(etc), "/etc")
    assert result.returncode == 0, result.stderr
    assert "nameserver 10.0.2.3" in result.stdout
    assert "127.0.1.1\tjailpy" in result.stdout
    assert "HOST FILE" not in result.stdout
    assert "write=0" not in result.stdout  # read-only inside
    assert result.stderr.count("Read-only file system") == 2
    assert (etc / "hosts").read_text() == "HOST FILE\n"
    assert os.readlink(etc / "resolv.conf") == "../run/resolv-target"
    assert not (user_tmp / "run").exists()
    assert hashlib.sha256(Path("/etc/resolv.conf").read_bytes()).hexdigest() == host_resolv


def test_a_profile_op_for_resolv_conf_wins_over_the_generated_one(jailpy, user_tmp, test_user):
    mine = user_tmp / "resolv.conf"
    mine.write_text("nameserver 192.0.2.53\n")
    chown_tree(user_tmp, test_user)
    result = jailpy.sandbox("cat /etc/resolv.conf", "--net", "slirp4netns",
                            "--ro-bind", str(mine), "/etc/resolv.conf")
    assert result.stdout == "nameserver 192.0.2.53\n", result.stderr


def test_explain_shows_the_network_plan(jailpy):
    result = jailpy.run(["run", "--net", "slirp4netns", "--publish", "8080:80",
                         "--allow-connect-tcp", "443", "--explain", "--", "true"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "mode        slirp4netns" in out
    assert "host 127.0.0.1 not reachable" in out
    assert "publish     127.0.0.1:8080 on the host -> sandbox port 80/tcp    [--publish 8080:80]" \
        in out
    assert "tcp connect only ports 443 (Landlock, required)" in out
    assert "ro-bind-data /etc/resolv.conf" in out


#: Which user namespace owns the sandbox's network namespace: "own" (the
#: sandbox's, so it holds every capability over it), "outside" (one it cannot
#: even name: NS_GET_USERNS says EPERM), or "other".
NETNS_OWNER = """
import fcntl, os
net = os.open("/proc/self/ns/net", os.O_RDONLY)
try:
    owner = fcntl.ioctl(net, 0xB701)
except PermissionError:
    print("outside")
else:
    print("own" if os.fstat(owner).st_ino == os.stat("/proc/self/ns/user").st_ino else "other")
"""


def test_sandbox_does_not_own_its_helper_network(jailpy, helper, host):
    served = jailpy_on(jailpy, host, ["run", "--net", helper, "--uid", "0", "--gid", "0",
                                      "--", "python3", "-c", NETNS_OWNER])
    assert served.stdout == "outside\n", served.stderr
    # Counterpart: with a network namespace of its own (none), the sandbox owns it.
    own = jailpy_on(jailpy, host, ["run", "--net", "none", "--uid", "0", "--gid", "0",
                                   "--", "python3", "-c", NETNS_OWNER])
    assert own.stdout == "own\n", own.stderr


def test_slirp4netns_runs_in_its_own_sandbox(jailpy):
    _skip_unless_usable("slirp4netns")
    sandbox = jailpy.popen(["run", "--net", "slirp4netns", "--", "head", "-c1"],
                           stdin=subprocess.PIPE)
    sup = poll(lambda: next((p for p in process_tree(sandbox.pid)
                             if comm(p) == "jailpy"), None), 10)
    slirp = poll(lambda: helper_pids(sup), 10)
    assert slirp, "slirp4netns did not start"
    # Once the command runs, slirp4netns has reported ready: its sandbox is in place.
    assert poll(lambda: [p for p in process_tree(sup) if comm(p) == "head"], 10)
    with open(f"/proc/{slirp[0]}/mountinfo") as f:
        mounts = sorted({line.split()[4] for line in f})
    with open(f"/proc/{slirp[0]}/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    sandbox.stdin.write(b"x")
    sandbox.stdin.close()
    assert sandbox.wait(timeout=30) == 0
    # --enable-sandbox: a root of its own with only /etc and /run from the host.
    assert "/home" not in mounts and "/usr" not in mounts and "/etc" in mounts, mounts
    assert status["Seccomp"].strip() == "2"  # --enable-seccomp
    assert int(status["CapEff"], 16) & ~(1 << 10) == 0  # at most CAP_NET_BIND_SERVICE


# --- helper lifecycle ---------------------------------------------------------------------


def helper_pids(supervisor: int) -> list[int]:
    """Helpers started by this jailpy: their arguments name its private directory."""
    marker = f"/net-{supervisor}-".encode()
    return [pid for pid, cmdline in processes() if marker in cmdline]


@pytest.mark.parametrize("ending", ["exit", "signal", "sigkill"])
def test_no_helper_outlives_the_sandbox(jailpy, helper, host, ending):
    sandbox = subprocess.Popen(
        host.command(jailpy.user.command([jailpy.binary, "run", "--net", helper, "--",
                                          "head", "-c1"])),
        cwd=jailpy.workdir, env=jailpy.env(), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    jailpy.started.append(sandbox)

    def supervisor() -> int | None:  # the first "jailpy" below runuser (and nsenter)
        return next((p for p in process_tree(sandbox.pid) if comm(p) == "jailpy"), None)

    sup = poll(supervisor, 10)
    assert sup, "jailpy did not start"
    helpers = poll(lambda: helper_pids(sup), 10)
    assert helpers, f"{helper} was not running while the sandbox ran"
    target = poll(lambda: [p for p in process_tree(sup) if comm(p) == "head"], 10)
    assert target
    if ending == "exit":
        sandbox.stdin.write(b"x")
        sandbox.stdin.close()
        assert sandbox.wait(timeout=30) == 0
        assert helper_pids(sup) == []  # stopped and reaped before jailpy exits
    elif ending == "signal":
        os.kill(sup, signal.SIGTERM)
        assert sandbox.wait(timeout=30) == 128 + signal.SIGTERM
        assert helper_pids(sup) == []
    else:
        os.kill(sup, signal.SIGKILL)
        sandbox.wait(timeout=30)
        assert poll(lambda: not helper_pids(sup), 5), "helper outlived jailpy"
        assert poll(lambda: not any(os.path.exists(f"/proc/{p}") for p in target), 5)
    base = f"/tmp/jailpy-{jailpy.user.uid}"  # runtime/rundir.py; the tests set no XDG_RUNTIME_DIR
    assert not any(name.startswith(f"net-{sup}-") for name in os.listdir(base))



# --- failure modes ---------------------------------------------------------------------


def test_missing_helper_names_the_package(jailpy, helper):
    result = jailpy.run(["run", "--net", helper, "--", "true"], env={"PATH": "/nonexistent"})
    assert result.returncode == 125
    package = "passt" if helper == "pasta" else "slirp4netns"
    assert f"network.mode = {helper}: {helper} is not installed" in result.stderr
    assert f"install the '{package}' package" in result.stderr


def _with_tun(jailpy, user_tmp: Path, setup: str, helper: str = "slirp4netns") -> Completed:
    """jailpy in a private mount namespace where /dev/net/tun is what `setup` made it."""
    fixture = user_tmp / "tunfix"
    fixture.mkdir()
    script = (f"set -e; mount -t tmpfs tmpfs {fixture}; {setup}; exec "
              + " ".join(jailpy.user.command([jailpy.binary, "run", "--net", helper, "--",
                                              "echo", "ran"])))
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, cwd=user_tmp,
                          env=jailpy.env())
    return Completed(proc.returncode, proc.stdout, proc.stderr)


TUN_NODE = "mknod {d}/tun c 10 200; chmod {mode} {d}/tun; mount --bind {d}/tun /dev/net/tun"


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give a private /dev/net/tun other modes")
def test_inaccessible_tun_device_is_diagnosed(jailpy, user_tmp):
    d = user_tmp / "tunfix"
    result = _with_tun(jailpy, user_tmp, TUN_NODE.format(d=d, mode="0600"))
    assert result.returncode == 125
    assert "slirp4netns needs the tun device, but /dev/net/tun is not accessible to this " \
           "user" in result.stderr
    assert "chmod 0666 /dev/net/tun" in result.stderr
    # Counterpart: the very same node, 0666, works.
    shutil.rmtree(d)
    ok = _with_tun(jailpy, user_tmp, TUN_NODE.format(d=d, mode="0666"))
    assert (ok.returncode, ok.stdout) == (0, "ran\n"), ok.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to hide /dev/net/tun in a mount namespace")
def test_missing_tun_device_is_diagnosed(jailpy, user_tmp):
    result = _with_tun(jailpy, user_tmp, "mount -t tmpfs tmpfs /dev/net")
    assert result.returncode == 125
    assert "/dev/net/tun does not exist" in result.stderr
    assert "modprobe tun" in result.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to put /dev/null in place of /dev/net/tun")
def test_helper_dying_at_start_up_shows_its_output(jailpy, user_tmp, helper):
    # /dev/null opens like the tun device but refuses TUNSETIFF: the helper
    # itself fails, after our checks have passed.
    result = _with_tun(jailpy, user_tmp, "mount --bind /dev/null /dev/net/tun", helper)
    assert result.returncode == 125
    assert f"network.mode = {helper}: {helper} exited during start-up (exit status" \
           in result.stderr
    assert result.stderr.count("\n") <= 2 and "Traceback" not in result.stderr
    assert "printed nothing" not in result.stderr


def test_bad_network_settings_are_one_line_errors(jailpy, user_tmp, test_user):
    cases = [
        (["--net", "slirp"], "unknown network mode 'slirp'", "did you mean 'slirp4netns'?"),
        (["--publish", "8080:80"], "--publish 8080:80: publishing ports needs network.mode",
         "--net slirp4netns"),
        (["--net", "slirp4netns", "--publish", "127.0.0.1:99999:80"],
         "--publish 127.0.0.1:99999:80: bad host port '99999'", None),
        (["--host-loopback"], "network.host_loopback = true needs network.mode", None),
        (["--net", "slirp4netns", "--share-net"], "needs its own network namespace", None),
    ]
    for options, message, hint in cases:
        result = jailpy.run(["run", *options, "--", "true"])
        assert result.returncode == 125, options
        assert message in result.stderr, (options, result.stderr)
        assert hint is None or hint in result.stderr
        assert "Traceback" not in result.stderr
    profile = user_tmp / "bad.toml"
    profile.write_text('[network]\nmode = "pasta"\npublish = ["8080"]\n')
    chown_tree(user_tmp, test_user)
    result = jailpy.run(["run", "--profile", str(profile), "--", "true"])
    assert result.returncode == 125
    assert f"{profile}: network.publish[0]: bad port mapping '8080'" in result.stderr


def test_check_reports_each_backend(jailpy):
    result = jailpy.run(["check"])
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if " network " in f" {line} "]
    text = "\n".join(rows)
    for helper in HELPERS:
        if shutil.which(helper):
            assert any(r.startswith("ok") and f"{helper}: ready" in r for r in rows), text
    assert "TCP port rules (Landlock ABI 4)" in text
    assert "/dev/net/tun" in text
