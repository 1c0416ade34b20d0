"""The egress proxy's rules and parsers, as data: allow_hosts entries, request
heads and TLS ClientHellos (real ones from Python's ssl, and random bytes)."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings, strategies as st

from jailpy.errors import ConfigError
from jailpy.plan import Caller, build_plan
from jailpy.plan.network import canonical_host, parse_host_rule
from jailpy.policy import Environment, Filesystem, MountOp, Network, Policy
from jailpy.profile.network import network_from_profile
from jailpy.runtime import egress
from jailpy.runtime.egress import AllowList, Refused

CALLER = Caller(uid=1000, gid=1000, env={"PATH": "/usr/bin"}, cwd="/", cwd_identity=None)


@pytest.mark.parametrize("spec, canonical", [
    ("PyPI.org", "pypi.org"), ("pypi.org.", "pypi.org"), ("github.com:443", "github.com:443"),
    ("*.pythonhosted.org", "*.pythonhosted.org"), ("10.1.2.3:8080", "10.1.2.3:8080"),
    ("[2001:DB8::1]:443", "[2001:db8::1]:443"), ("::1", "[::1]"), ("a_b.example", "a_b.example"),
])
def test_allow_host_entries_have_one_spelling(spec, canonical):
    assert str(parse_host_rule(spec)) == canonical


@pytest.mark.parametrize("spec", [
    "", "pypi.org:0", "pypi.org:65536", "pypi.org:x", "*.10.0.0.1", "a.*.org", "*", "*.",
    "127.1", "0x7f000001", "2130706433", "-a.org", "a..org", "caf\u00e9.org", "a b.org",
    "[::1", "[::1]x", "x" * 64 + ".org",
])
def test_bad_allow_host_entries_are_refused(spec):
    with pytest.raises(ValueError):
        parse_host_rule(spec)


def test_rules_match_names_wildcards_ports_and_addresses():
    allow = AllowList([parse_host_rule(s) for s in
                       ("pypi.org", "*.pythonhosted.org", "github.com:443", "10.0.0.1:8080")])
    assert allow.check("PYPI.ORG.", 443) == "pypi.org"
    assert allow.check("pypi.org", 80) == "pypi.org"
    assert allow.check("files.pythonhosted.org", 443) == "files.pythonhosted.org"
    assert allow.check("a.b.pythonhosted.org", 80) == "a.b.pythonhosted.org"
    assert allow.check("github.com", 443) == "github.com"
    assert allow.check("10.0.0.1", 8080) == "10.0.0.1"
    refused = {
        ("pythonhosted.org", 443): "host not in allow_hosts",  # the apex is not below itself
        ("evilpythonhosted.org", 443): "host not in allow_hosts",
        ("pypi.org.evil.com", 443): "host not in allow_hosts",
        ("pypi.org", 8443): "port 8443 not allowed for this host",
        ("github.com", 80): "port 80 not allowed for this host",
        ("10.0.0.1", 80): "IP literal not in allow_hosts",
        ("[::1]", 443): "IP literal not in allow_hosts",
        ("127.1", 80): "not a host name",
    }
    for (host, port), reason in refused.items():
        with pytest.raises(Refused) as info:
            allow.check(host, port)
        assert reason in info.value.reason, (host, port)


def test_profile_keys_need_the_proxy_mode_and_say_where():
    origins = {"network.allow_hosts": ["f.toml: network.allow_hosts[0]"],
               "network.mode": "f.toml: network.mode"}
    net = network_from_profile({"mode": "proxy", "allow_hosts": ["PyPI.org", "pypi.org"],
                                "egress_log": "-"}, origins)
    assert net.allow_hosts == ("pypi.org",) and net.egress_log == "-"
    with pytest.raises(ConfigError) as info:
        network_from_profile({"mode": "slirp4netns", "allow_hosts": ["pypi.org"]}, origins)
    assert "needs network.mode = 'proxy'" in info.value.message
    assert info.value.origin == "f.toml: network.allow_hosts[0]"
    with pytest.raises(ConfigError, match="bad host"):
        network_from_profile({"mode": "proxy", "allow_hosts": ["127.1"]}, origins)
    with pytest.raises(ConfigError, match="absolute path"):
        network_from_profile({"mode": "proxy", "egress_log": "log.jsonl"}, {})
    with pytest.raises(ConfigError, match="egress_log needs"):
        network_from_profile({"egress_log": "/tmp/x"}, {})


def test_the_plan_points_programs_at_the_proxy_and_guards_the_log():
    shared = MountOp(kind="bind", source="/var/tmp", dest="/var/tmp")  # the log's directory
    policy = Policy(environment=Environment(clear=True), filesystem=Filesystem(ops=(shared,)),
                    network=Network(mode="proxy", allow_hosts=("pypi.org",),
                                    egress_log="/var/tmp/egress.jsonl"))
    plan = build_plan(policy, ["true"], CALLER)
    assert plan.network_helper == "proxy" and plan.outer_userns
    for name in ("HTTP_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        assert plan.env[name] == "http://127.0.0.1:3128"
    assert plan.env["NO_PROXY"] == "localhost,127.0.0.1,::1"
    resolv = next(op for op in plan.mount_ops if op.dest == "/etc/resolv.conf")
    assert "nameserver" not in resolv.content
    assert any(op.dest == "/var/tmp/egress.jsonl" and op.kind == "protect"
               for op in plan.mount_ops)


def test_explain_lists_each_rule_with_its_ports_and_the_log():
    from jailpy.report.network import explain_sections

    network = Network(mode="proxy", allow_hosts=("pypi.org", "*.pythonhosted.org",
                                                 "github.com:443"), egress_log="-")
    [(_, lines)] = explain_sections(build_plan(Policy(network=network), ["true"], CALLER))
    assert lines[0].startswith("mode        proxy -- own network namespace, loopback only, "
                               "no route and no resolver")
    assert lines[2:] == ["allow       pypi.org, ports 80 and 443",
                         "allow       any name below pythonhosted.org, ports 80 and 443",
                         "allow       github.com, port 443", "log         stderr"]


def test_the_shipped_pypi_profile_allows_the_index_only():
    from jailpy.api import load_policy

    network = load_policy("ci-build-pypi", caller=CALLER).network
    assert network.mode == "proxy"
    assert network.allow_hosts == ("pypi.org", "files.pythonhosted.org")


# --- request heads ------------------------------------------------------------------


def test_requests_in_both_forms():
    req = egress.parse_request(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443", b"")
    assert (req.method, req.host, req.port) == ("CONNECT", "pypi.org", 443)
    req = egress.parse_request(b"GET http://Example.org/a?b HTTP/1.1\r\nHost: example.ORG:80\r\n"
                               b"Proxy-Authorization: x\r\nAccept: */*", b"body")
    assert (req.host, req.port, req.path, req.rest) == ("Example.org", 80, "/a?b", b"body")
    assert req.body_length == 0
    sent = egress._origin_request(req, "example.org").decode()
    assert sent.startswith("GET /a?b HTTP/1.1\r\nHost: example.org\r\n")
    assert "Proxy-Authorization" not in sent and "Content-Length" not in sent
    assert sent.endswith("Accept: */*\r\nConnection: close\r\n\r\n")
    req = egress.parse_request(b"GET http://[::1]:8080?q HTTP/1.0", b"")
    assert (req.host, req.port, req.path) == ("[::1]", 8080, "/?q")


@pytest.mark.parametrize("head, reason", [
    (b"GET https://pypi.org/ HTTP/1.1", "only http://"),
    (b"GET /relative HTTP/1.1", "only http://"),
    (b"CONNECT pypi.org HTTP/1.1", "CONNECT needs HOST:PORT"),
    (b"GET http://user:pw@pypi.org/ HTTP/1.1", "credentials"),
    (b"GET http://pypi.org:99999/ HTTP/1.1", "bad port"),
    (b"GET  http://pypi.org/ HTTP/1.1", "malformed request line"),
    (b"get http://pypi.org/ HTTP/1.1", "malformed method"),
    (b"GET http://pypi.org/ HTTP/1.1\r\nBad Header: x", "malformed header"),
    (b"GET http://pypi.org/ HTTP/1.1\r\n\xff: x", "not ASCII"),
    (b"GET http://pypi.org/ HTTP/2.0", "malformed request line"),
    (b"GET http://pypi.org/ HTTP/1.1\r\nHost: evil.org", "another host than the URL"),
    (b"GET http://pypi.org/ HTTP/1.1\r\nHost: pypi.org:8080", "another host than the URL"),
    (b"GET http://pypi.org/ HTTP/1.1\r\nHost: pypi.org\r\nHost: pypi.org", "more than one Host"),
    # The framing tricks request smuggling is made of.
    (b"POST http://pypi.org/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked",
     "ambiguous framing"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4",
     "more than one Content-Length"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nContent-Length: 4, 4", "not a number"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nContent-Length: +4", "not a number"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked", "Transfer-Encoding"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked", "Transfer-Encoding"),
    (b"POST http://pypi.org/ HTTP/1.0\r\nTransfer-Encoding: chunked", "Transfer-Encoding"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked", "obs-fold"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nX: a\nTransfer-Encoding: chunked", "bare CR or LF"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nX: a\rContent-Length: 9", "bare CR or LF"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nTransfer-Encoding : chunked", "malformed header"),
    (b"POST http://pypi.org/ HTTP/1.1\r\nX: a\x00b", "control character"),
])
def test_malformed_requests_are_refused(head, reason):
    with pytest.raises(Refused) as info:
        egress.parse_request(head, b"")
    assert reason in info.value.reason


class _Feed:
    """A socket stand-in that returns `data` in pieces of `step` bytes."""

    def __init__(self, data: bytes, step: int = 1 << 20) -> None:
        self.data, self.step = data, step

    def recv(self, size: int) -> bytes:
        piece, self.data = self.data[:min(size, self.step)], self.data[min(size, self.step):]
        return piece


def test_request_heads_are_bounded():
    with pytest.raises(Refused) as info:
        egress.read_head(_Feed(b"GET http://a.org/ HTTP/1.1\r\nX: " + b"y" * 20000))
    assert info.value.status == 431
    assert egress.read_head(_Feed(b"GET / HTTP/1.1\r\n\r\nbody", step=3))[0] == b"GET / HTTP/1.1"
    assert egress.read_head(_Feed(b"GET / HTTP/1.1\r\n\r\nbody")) == (b"GET / HTTP/1.1", b"body")


class _Upstream:
    """A socket stand-in that collects what is sent to it."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += bytes(data)


def _body(head: bytes, after_head: bytes, step: int = 1 << 20) -> tuple[bytes, bytes]:
    """(what goes upstream for the body, what the client sent after it)."""
    request = egress.parse_request(head, b"")
    stream = egress._Prefixed(_Feed(after_head, step), b"")
    upstream = _Upstream()
    egress._send_body(stream, upstream, request.body_length, egress.Attempt("test"))
    return upstream.data, stream.read_to_end(1024)[0]


@pytest.mark.parametrize("step", [1, 5, 1 << 20])
def test_bodies_are_forwarded_as_framed_and_nothing_after_them(step):
    smuggled = b"GET http://evil.org/ HTTP/1.1\r\n\r\n"
    head = b"POST http://pypi.org/ HTTP/1.1\r\nContent-Length: 005"
    assert _body(head, b"hello" + smuggled, step) == (b"hello", smuggled)
    assert "Content-Length: 5\r\n" in egress._origin_request(
        egress.parse_request(head, b""), "pypi.org").decode()
    head = b"POST http://pypi.org/ HTTP/1.1\r\nTransfer-Encoding: Chunked"
    chunked = b"3;ext=1\r\nabc\r\n000A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    assert _body(head, chunked + smuggled, step) == (
        b"3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n", smuggled)
    assert "Transfer-Encoding: chunked\r\n" in egress._origin_request(
        egress.parse_request(head, b""), "pypi.org").decode()


@pytest.mark.parametrize("body, reason", [
    (b"3\nabc\r\n0\r\n\r\n", "bare CR or LF"),
    (b"3\r\nabc\n0\r\n\r\n", "not followed by CRLF"),
    (b"3\r\nabcd\r\n0\r\n\r\n", "not followed by CRLF"),
    (b"-3\r\nabc\r\n0\r\n\r\n", "malformed chunk size"),
    (b"0x3\r\nabc\r\n0\r\n\r\n", "malformed chunk size"),
    (b" 3\r\nabc\r\n0\r\n\r\n", "malformed chunk size"),
    (b"1_0\r\n", "malformed chunk size"),
    (b"1" * 17 + b"\r\n", "malformed chunk size"),
    (b"fffffffffff\r\n", "chunk too large"),
    (b"3;a\x00\r\nabc\r\n0\r\n\r\n", "malformed chunk size"),
    (b"0\r\n Folded: x\r\n\r\n", "obs-fold"),
    (b"3\r\nab", "closed in the middle"),
])
def test_malformed_chunked_bodies_are_refused(body, reason):
    head = b"POST http://pypi.org/ HTTP/1.1\r\nTransfer-Encoding: chunked"
    with pytest.raises(Refused, match=reason):
        _body(head, body)


def test_bytes_after_a_request_are_logged_with_what_they_ask_for():
    attempt = egress._pipelined("c", b"GET http://Evil.org:8080/ HTTP/1.1\r\n\r\nrest", 99)
    fields = attempt.fields
    assert (fields["method"], fields["name"], fields["port"], fields["decision"]) == (
        "GET", "evil.org", 8080, "denied")
    assert "one request per connection" in fields["reason"] and "99 bytes" in fields["reason"]
    assert egress._pipelined("c", b"\x00junk", 5).fields["name"] is None


# --- TLS ClientHello --------------------------------------------------------------


def _client_hello(sni: str | None) -> bytes:
    """The first flight of a real TLS client (Python's ssl), with or without SNI."""
    context = ssl.create_default_context()
    if sni is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_sni_is_read_from_a_real_client_hello(step):
    hello = _client_hello("Files.PythonHosted.org")
    data, sni = egress.read_client_hello(_Feed(hello + b"more", step))
    assert sni == "Files.PythonHosted.org" and data.startswith(hello)
    assert egress.read_client_hello(_Feed(_client_hello(None)))[1] is None


def test_a_client_hello_sent_with_the_connect_request_is_read_too():
    hello = _client_hello("pypi.org")
    reader = egress._Prefixed(_Feed(hello[10:]), hello[:10])
    assert egress.read_client_hello(reader) == (hello, "pypi.org")


def test_sni_must_match_the_connect_name():
    egress._check_sni("files.pythonhosted.org", "FILES.pythonhosted.org.")
    egress._check_sni("10.0.0.1", None)  # an address: clients send no SNI
    for host, sni, reason in (("pypi.org", "evil.org", "does not match"),
                              ("pypi.org", None, "without SNI")):
        with pytest.raises(Refused, match=reason):
            egress._check_sni(host, sni)


def test_a_client_hello_split_over_two_records_is_reassembled():
    hello = _client_hello("pypi.org")
    body = hello[5:]
    split = (b"\x16\x03\x01" + (100).to_bytes(2, "big") + body[:100]
             + b"\x16\x03\x01" + (len(body) - 100).to_bytes(2, "big") + body[100:])
    assert egress.read_client_hello(_Feed(split, step=9))[1] == "pypi.org"


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\n\r\n", "not TLS"), (b"", "closed"),
    (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not a ClientHello"),
    (b"\x16\x03\x01\x40\x00" + b"\x01\xff\xff\xff", "too large"),
])
def test_what_is_not_a_client_hello_is_refused(data, reason):
    with pytest.raises(Refused, match=reason):
        egress.read_client_hello(_Feed(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_random_bytes_never_break_the_parsers(data, step):
    """Whatever the sandbox sends, the parsers answer or refuse; nothing else."""
    for parse in (lambda: egress.parse_request(*egress.read_head(_Feed(data, step))),
                  lambda: egress.read_client_hello(_Feed(b"\x16\x03" + data, step)),
                  lambda: _body(b"POST http://a.org/ HTTP/1.1\r\nTransfer-Encoding: chunked",
                                data, step),
                  lambda: egress._server_name(data)):
        try:
            parse()
        except Refused:
            pass


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_random_host_text_is_a_name_an_address_or_an_error(text):
    try:
        host, is_ip = canonical_host(text)
    except ValueError:
        return
    assert host == host.lower() and not host.endswith(".")
    assert is_ip or all(c.isalnum() or c in "-_." for c in host)


def test_connections_left_in_the_backlog_are_logged_not_forwarded():
    """The sandbox ended before the proxy accepted: each attempt still gets a line."""
    import json
    import os
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    log_r, log_w = os.pipe()
    proxy = egress.Proxy(listener, AllowList([parse_host_rule("pypi.org")]),
                         egress.Resolver(""), log_w)
    with socket.create_connection(listener.getsockname()) as client:
        client.sendall(b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n")
    socket.create_connection(listener.getsockname()).close()
    proxy.drain()
    os.close(log_w)
    with os.fdopen(log_r) as f:
        lines = [json.loads(line) for line in f]
    listener.close()
    assert [(e["name"], e["port"], e["decision"]) for e in lines] == [
        ("pypi.org", 443, "denied"), (None, None, "denied")]
    assert lines[0]["reason"] == "the sandbox ended before the proxy served it"
    assert proxy.summary()["denied"] == 2 and proxy.summary()["sent"] == 0


def test_a_head_sent_a_byte_at_a_time_must_still_arrive_in_time(monkeypatch):
    """Slowloris: a byte now and then never lets a per-read timeout fire; the whole
    head has HEAD_TIMEOUT (here shortened), then a 408, not a connection held for
    as long as the client likes. The dripping client stops by itself (bounded)."""
    import socket
    import threading

    monkeypatch.setattr(egress, "HEAD_TIMEOUT", 0.3)
    proxy = egress.Proxy(None, AllowList([parse_host_rule("pypi.org")]),
                         egress.Resolver(""), None)
    client, server = socket.socketpair()
    stop = threading.Event()

    def drip() -> None:
        for byte in b"GET http://pypi.org/ HTTP/1.1\r\nX-Slow: " + b"y" * 60:
            if stop.wait(0.05):
                return
            try:
                client.send(bytes([byte]))
            except OSError:
                return
        client.shutdown(socket.SHUT_WR)

    dripper = threading.Thread(target=drip)
    dripper.start()
    proxy.active = 1
    proxy.handle(server, ("127.0.0.1", 1))
    stop.set()
    dripper.join()
    reply = client.recv(4096)
    client.close()
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert proxy.summary()["denied"] == 1


def test_what_the_client_sent_is_bounded_in_the_log():
    """A 16 KiB host name is refused, and its log line stays short."""
    import json
    import os
    import socket

    log_r, log_w = os.pipe()
    proxy = egress.Proxy(None, AllowList([parse_host_rule("pypi.org")]),
                         egress.Resolver(""), log_w)
    client, server = socket.socketpair()
    client.sendall(b"GET http://" + b"a" * 15000 + b".org/ HTTP/1.1\r\n\r\n")
    proxy.active = 1
    proxy.handle(server, ("127.0.0.1", 1))
    client.close()
    os.close(log_w)
    with os.fdopen(log_r) as f:
        line = f.readline()
    entry = json.loads(line)
    assert entry["decision"] == "denied" and len(line) < 1024, len(line)
    assert entry["name"].endswith("characters)") and entry["reason"].endswith("characters)")


def test_the_log_stops_at_its_cap_and_says_so():
    """The sandbox decides how many attempts it makes; the host's log file stops
    growing at the cap, with one line saying so, and the rest are only counted."""
    import json
    import os

    log_r, log_w = os.pipe()
    proxy = egress.Proxy(None, AllowList([parse_host_rule("pypi.org")]),
                         egress.Resolver(""), log_w, log_cap=2000)
    for number in range(100):
        attempt = egress.Attempt(f"127.0.0.1:{number}")
        attempt.fields.update(name="denied.test", port=80, reason="host not in allow_hosts")
        proxy.record(attempt)
    os.close(log_w)
    with os.fdopen(log_r) as f:
        lines = [json.loads(line) for line in f]
    attempts = [line for line in lines if "decision" in line]
    assert sum(len(json.dumps(line)) + 1 for line in attempts) <= 2000
    assert len(attempts) >= 5 and "cap of 2000 bytes" in lines[-1]["note"]
    summary = proxy.summary()
    assert summary["denied"] == 100 and summary["not_logged"] == 100 - len(attempts)
