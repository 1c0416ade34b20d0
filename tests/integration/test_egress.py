"""Egress by name: network.mode = "proxy", --allow-host, --egress-log.

The real CLI as the unprivileged test user, curl, python and pip inside the
sandbox. The servers are this test's own, on the host's 127.0.0.1 (plain HTTP,
and HTTPS with a CA made here with the openssl CLI); the proxy's test-only
resolver (JAILPY_EGRESS_TEST_RESOLVE) maps the test's names to 127.0.0.1 and
fails every other name, so nothing here reaches a real resolver or host.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest

from conftest import VENV, chown_tree, poll, process_tree

NAMES = ("allowed.test", "denied.test", "api.wild.test", "deep.api.wild.test", "wild.test",
         "noport.test", "index.test", "other-index.test", "other.test")
PROXY_MARKER = b"jailpy.runtime.egress"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(directory: Path, context: ssl.SSLContext | None = None) -> tuple:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _make_ca(where: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for allowed.test and other.test."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=jailpy egress test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=allowed.test")
    (where / "ext.cnf").write_text("subjectAltName=DNS:allowed.test,DNS:other.test\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return where / "ca.pem", where / "server.pem", where / "server.key"


def _wheel(directory: Path) -> None:
    """A minimal pure-Python wheel, egresspkg 1.0, in a PEP 503-style tree."""
    directory.mkdir(parents=True)
    files = {"egresspkg/__init__.py": "VALUE = 'from the local index'\n",
             "egresspkg-1.0.dist-info/METADATA":
                 "Metadata-Version: 2.1\nName: egresspkg\nVersion: 1.0\n",
             "egresspkg-1.0.dist-info/WHEEL":
                 "Wheel-Version: 1.0\nGenerator: jailpy-test\nRoot-Is-Purelib: true\n"
                 "Tag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in files) + "egresspkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(directory / "egresspkg-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in {**files, "egresspkg-1.0.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)


@pytest.fixture(scope="module")
def servers():
    root = Path(tempfile.mkdtemp(prefix="jailpy-egress-", dir="/var/tmp"))  # test user can read
    root.chmod(0o755)
    docroot = root / "www"
    docroot.mkdir()
    (docroot / "hello.txt").write_text("hello through the proxy\n")
    (docroot / "big.bin").write_bytes(os.urandom(256 * 1024))
    _wheel(docroot / "simple" / "egresspkg")
    ca, cert, key = _make_ca(root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    plain, http_port = _serve(docroot)
    tls, https_port = _serve(docroot, context)
    yield {"root": root, "ca": ca, "http": http_port, "https": https_port}
    plain.shutdown()
    tls.shutdown()
    shutil.rmtree(root, ignore_errors=True)


def _resolver_env() -> dict[str, str]:
    return {"JAILPY_EGRESS_TEST_RESOLVE": ",".join(f"{n}=127.0.0.1" for n in NAMES)}


#: Runs inside: TLS through the proxy with a chosen SNI (None: no SNI at all), and
#: direct connections and lookups that ignore the proxy variables.
PROBE = r"""
import socket, ssl, sys
ca, https_port = sys.argv[1], int(sys.argv[2])

def tunnel(sni):
    sock = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    sock.sendall(b"CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test\r\n\r\n" % https_port)
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    try:
        tls = ctx.wrap_socket(sock, server_hostname=sni)
        tls.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        return "GOT " + tls.recv(4096).decode(errors="replace").split("\r\n")[0]
    except (OSError, ssl.SSLError) as exc:
        return "REFUSED " + type(exc).__name__

print("sni-match", tunnel("allowed.test"))
print("sni-other", tunnel("other.test"))
print("sni-none", tunnel(None))
try:
    socket.getaddrinfo("allowed.test", 80)
    print("dns resolved")
except OSError as exc:
    print("dns FAIL", type(exc).__name__)
for address in ("10.0.2.2", "192.0.2.1", "127.0.0.1"):
    try:
        socket.create_connection((address, https_port), timeout=3).close()
        print("direct", address, "CONNECTED")
    except OSError as exc:
        print("direct", address, "FAIL", exc.errno)
lines = open("/proc/net/dev").read().splitlines()[2:]
print("interfaces", sorted(line.split(":")[0].strip() for line in lines))
print("routes", len(open("/proc/net/route").read().splitlines()) - 1)
"""


def _curl(url: str, *extra: str) -> str:
    return (f"echo {url} $(curl -sS -o /dev/null -w '%{{http_code}}' {' '.join(extra)} "
            f"{url} 2>/dev/null)")


def test_only_allowed_names_pass_and_every_attempt_is_logged(jailpy, servers):
    hp, tp, ca = servers["http"], servers["https"], servers["ca"]
    log = jailpy.workdir / "egress.jsonl"
    status = jailpy.workdir / "status.json"
    script = "; ".join([
        "echo HTTP_PROXY=$HTTP_PROXY https_proxy=$https_proxy",
        f"curl -sS http://allowed.test:{hp}/hello.txt",
        f"curl -sS --cacert {ca} https://allowed.test:{tp}/hello.txt",
        _curl(f"http://denied.test:{hp}/hello.txt"),
        _curl(f"http://127.0.0.1:{hp}/hello.txt", "--noproxy ''"),
        _curl(f"http://api.wild.test:{hp}/hello.txt"),
        _curl(f"http://deep.api.wild.test:{hp}/hello.txt"),
        _curl(f"http://wild.test:{hp}/hello.txt"),
        _curl(f"http://noport.test:{hp}/hello.txt"),
        f"/usr/bin/python3 -c '{PROBE}' {ca} {tp}",
    ])
    result = jailpy.sandbox(
        script, "--allow-host", f"allowed.test:{hp}", "--allow-host", f"allowed.test:{tp}",
        "--allow-host", f"*.wild.test:{hp}", "--allow-host", "noport.test",
        "--ro-bind", str(servers["root"]), str(servers["root"]),
        "--egress-log", str(log), "--json-status", str(status), env=_resolver_env())
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "HTTP_PROXY=http://127.0.0.1:3128 https_proxy=http://127.0.0.1:3128" in out
    assert out.count("hello through the proxy") == 2  # HTTP and HTTPS
    for url, code in ((f"http://denied.test:{hp}/", 403), (f"http://127.0.0.1:{hp}/", 403),
                      (f"http://api.wild.test:{hp}/", 200),
                      (f"http://deep.api.wild.test:{hp}/", 200),
                      (f"http://wild.test:{hp}/", 403), (f"http://noport.test:{hp}/", 403)):
        assert f"{url}hello.txt {code}" in out, (url, out)
    assert "sni-match GOT HTTP/1.0 200 OK" in out
    assert "sni-other REFUSED" in out and "sni-none REFUSED" in out
    # A program ignoring the proxy variables: no resolver, no route, nothing on the
    # sandbox's own 127.0.0.1 but the proxy.
    assert "dns FAIL" in out
    assert "direct 10.0.2.2 FAIL 101" in out and "direct 192.0.2.1 FAIL 101" in out
    assert "direct 127.0.0.1 FAIL 111" in out
    assert "interfaces ['lo']" in out and "routes 0" in out

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    by = {}
    for entry in entries:
        by.setdefault((entry["name"], entry["port"], entry["decision"]), []).append(entry)
    assert by[("allowed.test", hp, "allowed")][0]["received"] > len("hello through the proxy")
    assert by[("allowed.test", hp, "allowed")][0]["sent"] > 0
    assert len(by[("allowed.test", tp, "allowed")]) == 2  # curl and the matching SNI
    assert by[("denied.test", hp, "denied")][0]["reason"] == "host not in allow_hosts"
    assert by[("127.0.0.1", hp, "denied")][0]["reason"] == "IP literal not in allow_hosts"
    assert by[("wild.test", hp, "denied")][0]["reason"] == "host not in allow_hosts"
    assert "port" in by[("noport.test", hp, "denied")][0]["reason"]
    reasons = sorted(e["reason"] for e in by[("allowed.test", tp, "denied")])
    assert reasons == ["TLS ClientHello without SNI",
                       "TLS SNI 'other.test' does not match the CONNECT host"]
    assert all(e["received"] == 0 for e in by[("allowed.test", tp, "denied")])
    for entry in entries:
        assert {"time", "name", "port", "decision", "reason", "sent", "received"} <= set(entry)

    summary = json.loads(status.read_text())["egress"]
    assert summary["allowed"] == 5 and summary["denied"] == 6
    assert summary["hosts"][f"denied.test:{hp}"]["denied"] == 1
    assert summary["received"] == sum(e["received"] for e in entries)


def test_pip_installs_from_an_allowed_index_only(jailpy, servers):
    """With the shipped ci-build profile, as a CI job would run it."""
    hp = servers["http"]
    pip = (f"{VENV}/bin/python -m pip install --no-cache-dir --disable-pip-version-check "
           "--retries 0 --timeout 10 --no-deps --target {target} --index-url "
           "http://{name}:" + str(hp) + "/simple/ --trusted-host {name} egresspkg")
    script = "; ".join([
        pip.format(target="denied-pkgs", name="other-index.test") + " >denied.out 2>&1",
        "echo denied-status $?",
        pip.format(target="pkgs", name="index.test") + " >allowed.out 2>&1",
        "echo allowed-status $?",
        f"PYTHONPATH=pkgs {VENV}/bin/python -c 'import egresspkg; print(egresspkg.VALUE)'",
    ])
    chown_tree(jailpy.workdir, jailpy.user)
    result = jailpy.sandbox(script, "-p", "ci-build", "--allow-host", f"index.test:{hp}",
                            "--egress-log", "-", env=_resolver_env())
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    allowed = (jailpy.workdir / "allowed.out").read_text()
    assert "allowed-status 0" in result.stdout, allowed
    assert "from the local index" in result.stdout
    denied = (jailpy.workdir / "denied.out").read_text()
    assert "denied-status 0" not in result.stdout
    assert "No matching distribution found for egresspkg" in denied, denied
    assert {(e["name"], e["decision"]) for e in entries} == {("other-index.test", "denied"),
                                                            ("index.test", "allowed")}
    assert not (jailpy.workdir / "denied-pkgs" / "egresspkg").exists()


def _proxies(root: int) -> list[int]:
    pids = []
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if PROXY_MARKER in f.read():
                    pids.append(pid)
        except OSError:
            pass
    return pids


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_the_proxy_ends_with_the_sandbox(jailpy, ending):
    command = ["sh", "-c", "read line"] if ending == "exit" else ["sleep", "60"]
    proc = jailpy.popen(["run", "--allow-host", "allowed.test", "--", *command],
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    proxies = poll(lambda: _proxies(proc.pid), 10)
    assert len(proxies) == 1
    if ending == "exit":
        proc.communicate(b"done\n", timeout=30)
        assert proc.returncode == 0
    else:
        supervisor = next(pid for pid in process_tree(proc.pid)
                          if open(f"/proc/{pid}/comm").read().strip() == "jailpy")
        os.kill(supervisor, signal.SIGKILL)
        proc.wait(timeout=30)
    assert poll(lambda: not os.path.exists(f"/proc/{proxies[0]}"), 5), "proxy outlived jailpy"
