"""The egress proxy: network.mode = "proxy", run on the host for one sandbox.

    python -I -m jailpy.runtime.egress CONFIG_JSON

started by runtime/network.py (EgressProxy), never by hand. It inherits:

    control    a Unix socket on which jailpy sends, once the sandbox's
               namespaces exist, a TCP socket listening on 127.0.0.1:PROXY_PORT
               INSIDE the sandbox's network namespace (made there by a
               short-lived child that joined it): the sandbox's only way out.
               The proxy itself stays in the host's namespaces, so its
               upstream connections and its name lookups are the host's. EOF
               on it (jailpy closed it, or died) means "stop now".
    summary    a memfd the supervisor reads after we exit (--json-status)
    log        optional: JSON lines, one per connection attempt

What passes (docs/network.md, "Egress by name"):

- HTTP CONNECT to NAME:PORT admitted by an allow_hosts rule, and then only a
  TLS connection whose ClientHello names the same host in its SNI (no domain
  fronting, no other protocol through the tunnel);
- plain HTTP requests in absolute form (GET http://NAME[:PORT]/path) to an
  admitted name, ONE per client connection: the head goes upstream rebuilt
  (origin form, Host from the URL, "Connection: close", framing headers of our
  own), then exactly the body its framing announces (Content-Length, or chunked
  re-encoded), and not one byte more. Whatever the client sends after that body
  (a pipelined request, smuggled bytes) is read and dropped, and logged as a
  denied attempt; the client reconnects for its next request. Framing that two
  parsers could read differently (Content-Length with Transfer-Encoding, two
  Content-Lengths, a coding other than chunked, obs-fold, a bare CR or LF, a
  Host header naming another host than the URL) is refused with a 400;
- IP literals only when an entry names that address.

Names are resolved here, on the host; the sandbox has no resolver. Every input
byte comes from the sandbox and is treated as hostile: the request head is
bounded (MAX_HEAD), every read has a timeout, and a malformed request costs a
400 and one log line, never the proxy.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

from ..plan.network import (DEFAULT_PORTS, HostRule, canonical_host, parse_host_rule,
                            split_host_port)

#: Largest request head (request line and headers) and TLS ClientHello we read.
MAX_HEAD = 16 * 1024
MAX_CLIENT_HELLO = 64 * 1024
#: Seconds a client has to send its request head / ClientHello.
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
#: A relayed connection with no traffic either way for this long is closed.
IDLE_TIMEOUT = 600.0
MAX_CONNECTIONS = 256
#: Distinct NAME:PORT entries kept in the summary; the rest are only counted.
SUMMARY_HOSTS = 64
RELAY_CHUNK = 256 * 1024
#: Longest name, SNI or reason a log line keeps: they echo what the client sent, and
#: a 16 KiB host name per attempt would make the log grow 60 times as fast.
MAX_LOGGED_TEXT = 256
#: Bytes of log one sandbox may write. The sandbox decides how many attempts it makes,
#: and the log is the host's file: past this, attempts are only counted (the summary's
#: `not_logged`), after one line saying so.
MAX_LOG_BYTES = 64 << 20
#: TEST ONLY: "name=address,name=address". Names listed are resolved to the given
#: address and every other name fails to resolve, so a test never reaches a real
#: resolver or a real host. Read by this proxy only (docs/network.md).
TEST_RESOLVE_VARIABLE = "JAILPY_EGRESS_TEST_RESOLVE"


class Refused(Exception):
    """A request the proxy will not carry: (HTTP status, reason for the log)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- the policy ------------------------------------------------------------------


class AllowList:
    """network.allow_hosts, asked about each request's host and port."""

    def __init__(self, rules: list[HostRule]) -> None:
        self.rules = rules

    def check(self, host_text: str, port: int) -> str:
        """The canonical host if a rule admits host_text:port; else Refused."""
        try:
            host, is_ip = canonical_host(host_text)
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        if any(rule.admits(host, port) for rule in self.rules):
            return host
        if is_ip:
            raise Refused(403, "IP literal not in allow_hosts")
        if any(rule.admits(host, r_port) for rule in self.rules
               for r_port in ((rule.port,) if rule.port else DEFAULT_PORTS)):
            raise Refused(403, f"port {port} not allowed for this host")
        raise Refused(403, "host not in allow_hosts")


class Resolver:
    """getaddrinfo on the host, or the test-only table (see TEST_RESOLVE_VARIABLE)."""

    def __init__(self, table: str | None) -> None:
        self.table: dict[str, str] | None = None
        if table is not None:
            pairs = (item.split("=", 1) for item in table.split(",") if "=" in item)
            self.table = {name.strip().lower(): addr.strip() for name, addr in pairs}

    def addresses(self, host: str, port: int) -> list[tuple]:
        if self.table is not None:
            address = self.table.get(host, host if _is_ip(host) else None)
            if address is None:
                raise Refused(502, "name does not resolve (test resolver)")
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, (address, port))]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(502, f"name does not resolve: {exc.strerror or exc}") from None
        return [(family, sockaddr) for family, _, _, _, sockaddr in infos]

    def connect(self, host: str, port: int) -> socket.socket:
        error = "no address"
        for family, sockaddr in self.addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = f"{sockaddr[0]}: {exc.strerror or exc}"
        raise Refused(502, f"cannot connect: {error}")


def _is_ip(host: str) -> bool:
    try:
        return canonical_host(host)[1]
    except ValueError:
        return False


# --- parsing what the sandbox sends ----------------------------------------------


class Request:
    """One parsed request head. body_length is the Content-Length (0 without
    one), or None for a chunked body; rest is what arrived after the head."""

    __slots__ = ("method", "host", "port", "path", "version", "headers", "body_length",
                 "rest")

    def __init__(self, method: str, host: str, port: int, path: str, version: str,
                 headers: list[tuple[str, str]], rest: bytes,
                 body_length: int | None = 0) -> None:
        self.method, self.host, self.port, self.path = method, host, port, path
        self.version, self.headers, self.rest = version, headers, rest
        self.body_length = body_length


def read_head(conn: "socket.socket | _Deadline") -> tuple[bytes, bytes]:
    """(head, bytes after it): at most MAX_HEAD bytes until the blank line."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) >= MAX_HEAD:
            raise Refused(431, "request head too large")
        chunk = conn.recv(MAX_HEAD)
        if not chunk:
            raise Refused(400, "connection closed before a complete request")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise Refused(431, "request head too large")
    return head, rest


#: RFC 9110's tchar: what a header name may be made of.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Control characters a header value may not hold (HTAB is allowed).
_CONTROL = frozenset(chr(c) for c in (*range(0x09), *range(0x0a, 0x20), 0x7f))
MAX_CHUNK_LINE = 4096
MAX_CHUNK_SIZE = 1 << 40


def parse_request(head: bytes, rest: bytes) -> Request:
    """A request head, strictly: anything two HTTP parsers could read two ways is a
    400, since the upstream server must see exactly the request we checked."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise Refused(400, "request head is not ASCII") from None
    lines = text.split("\r\n")
    if any("\r" in line or "\n" in line for line in lines):
        raise Refused(400, "bare CR or LF in the request head")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") \
            or any(c in _CONTROL for c in parts[1]):
        raise Refused(400, "malformed request line")
    method, target, version = parts
    if not method.isalpha() or not method.isupper():
        raise Refused(400, "malformed method")
    headers = [_header_field(line) for line in lines[1:]]
    if method == "CONNECT":
        host, port = _authority(target, None)
        return Request(method, host, port, "", version, headers, rest)
    scheme, sep, remainder = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise Refused(400, "only http:// URLs (or CONNECT for https) go through this proxy")
    cut = min((i for i in (remainder.find("/"), remainder.find("?")) if i >= 0),
              default=len(remainder))
    path = remainder[cut:] or "/"
    if path.startswith("?"):
        path = "/" + path
    host, port = _authority(remainder[:cut], 80)
    _check_host_header(headers, host, port)
    return Request(method, host, port, path, version, headers, rest,
                   _body_length(headers, version))


def _header_field(line: str) -> tuple[str, str]:
    """(name, value) of one header line; obs-fold and anything not a token refused."""
    if line[:1] in (" ", "\t"):
        raise Refused(400, "obs-fold (a header continued on the next line) is refused")
    name, colon, value = line.partition(":")
    if not colon or not name or not set(name) <= _TOKEN:
        raise Refused(400, "malformed header line")
    if any(c in _CONTROL for c in value):
        raise Refused(400, "control character in a header value")
    return name, value.strip(" \t")


def _values(headers: list[tuple[str, str]], wanted: str) -> list[str]:
    return [value for name, value in headers if name.lower() == wanted]


def _check_host_header(headers: list[tuple[str, str]], host: str, port: int) -> None:
    """The URL names the host; a Host header may only say the same."""
    hosts = _values(headers, "host")
    if len(hosts) > 1:
        raise Refused(400, "more than one Host header")
    if hosts:
        try:
            named, named_port = _authority(hosts[0], 80)
            same = canonical_host(named)[0] == canonical_host(host)[0] and named_port == port
        except (Refused, ValueError):
            same = False
        if not same:
            raise Refused(400, "the Host header names another host than the URL")


def _body_length(headers: list[tuple[str, str]], version: str) -> int | None:
    """The body's length from its framing headers, None for chunked; the
    ambiguous cases request smuggling is made of are refused."""
    lengths = _values(headers, "content-length")
    codings = _values(headers, "transfer-encoding")
    if lengths and codings:
        raise Refused(400, "both Content-Length and Transfer-Encoding (ambiguous framing)")
    if codings:
        if len(codings) > 1 or codings[0].lower() != "chunked" or version == "HTTP/1.0":
            raise Refused(400, "Transfer-Encoding other than one 'chunked' in HTTP/1.1")
        return None
    if len(lengths) > 1:
        raise Refused(400, "more than one Content-Length (ambiguous framing)")
    if not lengths:
        return 0
    if not (lengths[0].isascii() and lengths[0].isdigit()) or len(lengths[0]) > 15:
        raise Refused(400, "Content-Length is not a number")
    return int(lengths[0])


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    if "@" in text:
        raise Refused(400, "credentials in the URL")
    try:
        host, port_text = split_host_port(text)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    if port_text is None:
        if default_port is None:
            raise Refused(400, "CONNECT needs HOST:PORT")
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise Refused(400, "bad port")
    return host, int(port_text)


def read_client_hello(conn: "socket.socket | _Prefixed | _Deadline") -> tuple[bytes, str | None]:
    """(the bytes read, the SNI host name or None): whole TLS records until the
    ClientHello handshake message is complete (it may span records)."""
    data = b""
    while True:
        handshake = _handshake_bytes(data)
        if len(handshake) >= 4:
            if handshake[0] != 1:
                raise Refused(400, "first TLS handshake message is not a ClientHello")
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if need > MAX_CLIENT_HELLO:
                raise Refused(400, "TLS ClientHello too large")
            if len(handshake) >= need:
                return data, _server_name(handshake[4:need])
        if len(data) > MAX_CLIENT_HELLO + 1024:
            raise Refused(400, "TLS ClientHello too large")
        chunk = conn.recv(16 * 1024)
        if not chunk:
            raise Refused(400, "connection closed before a complete TLS ClientHello")
        data += chunk
        if data[0] != 0x16 or (len(data) > 1 and data[1] != 0x03):
            raise Refused(400, "not TLS (a ClientHello was expected)")


def _handshake_bytes(data: bytes) -> bytes:
    """The handshake-layer bytes of the TLS records at the start of data (of the
    last one, what has arrived so far)."""
    out, offset = b"", 0
    while offset + 5 <= len(data):
        if data[offset] != 0x16:
            raise Refused(400, "TLS record other than handshake before the ClientHello")
        length = int.from_bytes(data[offset + 3:offset + 5], "big")
        out += data[offset + 5:offset + 5 + length]
        offset += 5 + length
    return out


def _server_name(hello: bytes) -> str | None:
    """The host_name of the server_name extension of a ClientHello body."""
    try:
        pos = 2 + 32  # client_version, random
        pos += 1 + hello[pos]  # session_id
        pos += 2 + int.from_bytes(hello[pos:pos + 2], "big")  # cipher_suites
        pos += 1 + hello[pos]  # compression_methods
        if pos >= len(hello):
            return None
        end = pos + 2 + int.from_bytes(hello[pos:pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(hello[pos:pos + 2], "big")
            size = int.from_bytes(hello[pos + 2:pos + 4], "big")
            body = hello[pos + 4:pos + 4 + size]
            pos += 4 + size
            if kind != 0:
                continue
            # server_name_list: length, then (type, length, name) entries.
            inner = 2
            while inner + 3 <= len(body):
                name_type = body[inner]
                name_len = int.from_bytes(body[inner + 1:inner + 3], "big")
                name = body[inner + 3:inner + 3 + name_len]
                inner += 3 + name_len
                if name_type == 0:
                    return name.decode("ascii")
            return None
    except (IndexError, UnicodeDecodeError):
        raise Refused(400, "malformed TLS ClientHello") from None
    return None


# --- the proxy -------------------------------------------------------------------


class Attempt:
    """One connection attempt, logged once when it ends. committed: the client's
    connection carries the upstream's bytes (or our 200 for a tunnel) from now on,
    so a refusal can no longer be answered with a reply of ours."""

    def __init__(self, client: str) -> None:
        self.start = time.time()
        self.committed = False
        self.fields: dict = {"time": _timestamp(self.start), "client": client,
                             "method": None, "name": None, "port": None,
                             "decision": "denied", "reason": None, "address": None,
                             "sent": 0, "received": 0}


def _timestamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z"


class Proxy:
    def __init__(self, listener: socket.socket, allow: AllowList, resolver: Resolver,
                 log_fd: int | None, log_cap: int = MAX_LOG_BYTES) -> None:
        self.listener = listener
        self.allow = allow
        self.resolver = resolver
        self.log_fd = log_fd
        self.lock = threading.Lock()
        self.active = 0
        self.totals = {"allowed": 0, "denied": 0, "failed": 0, "sent": 0, "received": 0}
        self.hosts: dict[str, dict] = {}
        self.hosts_left_out = 0
        #: Log bytes this sandbox may still write, and attempts past that.
        self.log_cap = self.log_room = log_cap
        self.not_logged = 0

    def serve(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return  # the listener was shut down: we are stopping
            with self.lock:
                busy = self.active >= MAX_CONNECTIONS
                if not busy:
                    self.active += 1
            if busy:
                attempt = Attempt(f"{peer[0]}:{peer[1]}")
                attempt.fields["reason"] = f"more than {MAX_CONNECTIONS} connections at once"
                conn.close()
                self.record(attempt)
                continue
            threading.Thread(target=self.handle, args=(conn, peer), daemon=True).start()

    def drain(self) -> None:
        """Log what is still in the listen backlog once the sandbox has ended (a
        client that connected before we accepted), with the name and port of the
        request it sent, if any; nothing of it is forwarded any more."""
        self.listener.setblocking(False)  # serve() stops at the next empty accept too
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            attempt = Attempt(f"{peer[0]}:{peer[1]}")
            attempt.fields["reason"] = "the sandbox ended before the proxy served it"
            with conn:
                conn.setblocking(False)
                try:
                    head = conn.recv(MAX_HEAD).partition(b"\r\n\r\n")[0]
                    request = parse_request(head, b"")
                    attempt.fields.update(method=request.method, name=request.host.lower(),
                                          port=request.port)
                except (OSError, Refused):
                    pass
            self.record(attempt)

    def handle(self, conn: socket.socket, peer: tuple) -> None:
        attempt = Attempt(f"{peer[0]}:{peer[1]}")
        upstream = None
        try:
            request = parse_request(*read_head(_Deadline(conn, HEAD_TIMEOUT)))
            upstream = self.open(conn, request, attempt)
            attempt.fields["decision"] = "allowed"
            if request.method == "CONNECT":
                self.relay(conn, upstream, attempt)
            else:
                self.forward_one(conn, upstream, request, attempt)
        except Refused as exc:
            attempt.fields["reason"] = exc.reason
            if exc.status == 502:
                attempt.fields["decision"] = "failed"
            elif attempt.committed:  # the upstream has part of a request: cut it off
                attempt.fields["decision"] = "denied"
            if not attempt.committed:  # else the client is past our replies: just close
                _reply(conn, exc.status, exc.reason)
        except (OSError, ValueError) as exc:  # the client went away, or timed out
            attempt.fields["reason"] = attempt.fields["reason"] or f"client: {exc}"
        except Exception as exc:  # noqa: BLE001 - one bad connection never stops the proxy
            attempt.fields["reason"] = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()
            with self.lock:
                self.active -= 1
            self.record(attempt)

    def open(self, conn: socket.socket, request: Request, attempt: Attempt) -> socket.socket:
        """Check the request, connect upstream and send it the request head (or,
        through a tunnel, the checked ClientHello); the upstream socket, or Refused."""
        fields = attempt.fields
        fields.update(method=request.method, name=request.host.lower(), port=request.port)
        host = self.allow.check(request.host, request.port)
        fields["name"] = host
        upstream = self.resolver.connect(host, request.port)
        try:
            fields["address"] = upstream.getpeername()[0]
            if request.method == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                attempt.committed = True
                hello, sni = read_client_hello(
                    _Prefixed(_Deadline(conn, HEAD_TIMEOUT), request.rest))
                fields["sni"] = sni
                _check_sni(host, sni)
                first = hello
            else:
                first = _origin_request(request, host)
            upstream.sendall(first)
            attempt.committed = True
            fields["sent"] += len(first)
        except BaseException:
            upstream.close()
            raise
        return upstream

    def relay(self, conn: socket.socket, upstream: socket.socket, attempt: Attempt) -> None:
        """A CONNECT tunnel: both directions until each side has finished; bytes
        counted for the log."""
        for sock in (conn, upstream):
            sock.settimeout(IDLE_TIMEOUT)
        back = threading.Thread(target=_pump, args=(upstream, conn, attempt, "received"),
                                daemon=True)
        back.start()
        _pump(conn, upstream, attempt, "sent")
        back.join()

    def forward_one(self, conn: socket.socket, upstream: socket.socket, request: Request,
                    attempt: Attempt) -> None:
        """The one request of a plain-HTTP connection, after its head: its body as
        framed, the response back, and nothing more to the upstream. What the
        client sends after the body is read (closing on unread bytes would reset
        the connection and cut the response short) but dropped, and logged as a
        denied attempt of its own."""
        for sock in (conn, upstream):
            sock.settimeout(IDLE_TIMEOUT)
        back = threading.Thread(target=_respond, args=(upstream, conn, attempt), daemon=True)
        back.start()
        stream = _Prefixed(conn, request.rest)
        try:
            _send_body(stream, upstream, request.body_length, attempt)
            dropped, count = stream.read_to_end(MAX_HEAD)
        except BaseException:
            for sock in (conn, upstream):  # stop the response too
                _shutdown(sock, socket.SHUT_RDWR)
            back.join()
            raise
        _shutdown(upstream, socket.SHUT_WR)  # the client finished sending, or we did
        back.join()
        if count:
            self.record(_pipelined(attempt.fields["client"], dropped, count))

    def record(self, attempt: Attempt) -> None:
        fields = attempt.fields
        for key in ("name", "reason", "sni"):  # the client's text, bounded in the log
            value = fields.get(key)
            if isinstance(value, str) and len(value) > MAX_LOGGED_TEXT:
                fields[key] = value[:MAX_LOGGED_TEXT] + f"... ({len(value)} characters)"
        fields["duration"] = round(time.time() - attempt.start, 3)
        line = (json.dumps(fields, sort_keys=False) + "\n").encode()
        with self.lock:
            decision = fields["decision"]
            self.totals[decision] += 1
            self.totals["sent"] += fields["sent"]
            self.totals["received"] += fields["received"]
            key = f"{fields['name']}:{fields['port']}" if fields["name"] else "(unparsed)"
            entry = self.hosts.get(key)
            if entry is None and len(self.hosts) < SUMMARY_HOSTS:
                entry = self.hosts[key] = {"allowed": 0, "denied": 0, "failed": 0,
                                           "sent": 0, "received": 0, "reason": None}
            if entry is None:
                self.hosts_left_out += 1
            else:
                entry[decision] += 1
                entry["sent"] += fields["sent"]
                entry["received"] += fields["received"]
                if decision != "allowed":
                    entry["reason"] = fields["reason"]
            if self.log_fd is not None:
                self._write_log(line)

    def _write_log(self, line: bytes) -> None:
        """One line, while the log has room; at the cap, one closing line instead."""
        if len(line) > self.log_room:
            if self.not_logged == 0:
                self._write(json.dumps({"time": _timestamp(time.time()), "note": (
                    f"the log reached its cap of {self.log_cap} bytes: further attempts "
                    "are only counted (not_logged in --json-status)")}).encode() + b"\n")
            self.not_logged += 1
            return
        self.log_room -= len(line)
        self._write(line)

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.log_fd, data)
        except OSError:
            pass

    def summary(self) -> dict:
        with self.lock:
            return {**self.totals, "hosts": self.hosts, "hosts_left_out": self.hosts_left_out,
                    "not_logged": self.not_logged}


class _Deadline:
    """The client's socket for reading a request head or a ClientHello: the whole
    of it must arrive within `seconds`. (A timeout per read alone lets a client
    that sends a byte now and then hold a connection, one of MAX_CONNECTIONS,
    for hours.)"""

    def __init__(self, conn: socket.socket, seconds: float) -> None:
        self.conn, self.seconds = conn, seconds
        self.end = time.monotonic() + seconds

    def recv(self, size: int) -> bytes:
        left = self.end - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            self.conn.settimeout(left)
            return self.conn.recv(size)
        except TimeoutError:
            raise Refused(408, f"request not complete within {self.seconds:g} s") from None


class _Prefixed:
    """The client's socket, read through a buffer: the first bytes arrived with the
    request head (a body, or a ClientHello an optimistic client sent before our
    200), and a chunked body is read line by line."""

    def __init__(self, conn: socket.socket, early: bytes) -> None:
        self.conn, self.pending = conn, early

    def recv(self, size: int) -> bytes:
        if not self.pending:
            return self.conn.recv(size)
        data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def read_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.recv(size - len(data))
            if not chunk:
                raise Refused(400, "connection closed in the middle of the request body")
            data += chunk
        return data

    def read_line(self, limit: int) -> bytes:
        """One CRLF-terminated line of at most limit bytes, without its CRLF."""
        data = b""
        while b"\n" not in data:
            if len(data) > limit + 1:
                raise Refused(400, "line too long in a chunked body")
            chunk = self.recv(limit + 2)
            if not chunk:
                raise Refused(400, "connection closed in the middle of the request body")
            data += chunk
        line, _, after = data.partition(b"\n")
        self.pending = after + self.pending
        if not line.endswith(b"\r") or b"\r" in line[:-1]:
            raise Refused(400, "bare CR or LF in a chunked body")
        if len(line) > limit + 1:
            raise Refused(400, "line too long in a chunked body")
        return line[:-1]

    def read_to_end(self, keep: int) -> tuple[bytes, int]:
        """Read until EOF: (the first `keep` bytes, how many there were)."""
        kept, count = self.pending[:keep], len(self.pending)
        self.pending = b""
        while True:
            try:
                chunk = self.conn.recv(RELAY_CHUNK)
            except OSError:
                break
            if not chunk:
                break
            count += len(chunk)
            if len(kept) < keep:
                kept += chunk[:keep - len(kept)]
        return kept, count


def _send_body(stream: _Prefixed, upstream: socket.socket, length: int | None,
               attempt: Attempt) -> None:
    """Exactly the body the head announced: `length` bytes, or (None) a chunked
    body re-encoded in one spelling (no chunk extensions, no trailers), so the
    upstream cannot read its end anywhere else than we did."""
    if length is not None:
        _copy(stream, upstream, length, attempt)
        return
    while True:
        size = _chunk_size(stream.read_line(MAX_CHUNK_LINE))
        if size == 0:
            break
        _send(upstream, b"%x\r\n" % size, attempt)
        _copy(stream, upstream, size, attempt)
        if stream.read_exact(2) != b"\r\n":
            raise Refused(400, "chunk data not followed by CRLF")
        _send(upstream, b"\r\n", attempt)
    trailers = 0
    while line := stream.read_line(MAX_CHUNK_LINE):
        trailers += len(line)
        if trailers > MAX_HEAD:
            raise Refused(431, "trailer section too large")
        try:
            _header_field(line.decode("ascii"))
        except UnicodeDecodeError:
            raise Refused(400, "trailer is not ASCII") from None
    _send(upstream, b"0\r\n\r\n", attempt)


def _chunk_size(line: bytes) -> int:
    """The size of a chunk-size line (an extension after ';' is allowed, dropped)."""
    size_text, _, extension = line.partition(b";")
    if not size_text or len(size_text) > 16 or not set(size_text) <= _HEX \
            or any(c < 0x20 and c != 0x09 or c == 0x7f for c in extension):
        raise Refused(400, "malformed chunk size line")
    size = int(size_text, 16)
    if size > MAX_CHUNK_SIZE:
        raise Refused(400, "chunk too large")
    return size


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _copy(stream: _Prefixed, upstream: socket.socket, size: int, attempt: Attempt) -> None:
    while size:
        data = stream.recv(min(size, RELAY_CHUNK))
        if not data:
            raise Refused(400, "connection closed in the middle of the request body")
        _send(upstream, data, attempt)
        size -= len(data)


def _send(upstream: socket.socket, data: bytes, attempt: Attempt) -> None:
    upstream.sendall(data)
    attempt.fields["sent"] += len(data)


def _respond(upstream: socket.socket, conn: socket.socket, attempt: Attempt) -> None:
    """The upstream's response to the client; once it has ended, the client's
    reading side too, which ends forward_one's read of dropped bytes."""
    _pump(upstream, conn, attempt, "received")
    _shutdown(conn, socket.SHUT_RD)


def _pipelined(client: str, data: bytes, count: int) -> Attempt:
    """The log entry for bytes a client sent after its request's body: what they
    asked for, if they hold a request head we can read."""
    attempt = Attempt(client)
    head, complete, _ = data.partition(b"\r\n\r\n")
    try:
        if not complete:
            raise Refused(400, "no request head")
        request = parse_request(head, b"")
        attempt.fields.update(method=request.method, name=request.host.lower(),
                              port=request.port)
        what = "a request after the first on one connection"
    except Refused:
        what = "bytes after the request's body"
    attempt.fields["reason"] = (f"{what}: one request per connection, not forwarded "
                                f"({count} bytes dropped)")
    return attempt


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


def _check_sni(host: str, sni: str | None) -> None:
    if sni is None:
        if _is_ip(host):
            return  # clients send no SNI for an address; the address itself was allowed
        raise Refused(403, "TLS ClientHello without SNI")
    try:
        name = canonical_host(sni)[0]
    except ValueError:
        raise Refused(403, f"TLS SNI {sni!r} is not a host name") from None
    if name != host:
        raise Refused(403, f"TLS SNI {name!r} does not match the CONNECT host")


#: Headers of the client's that never go upstream: hop-by-hop ones, and those we
#: write ourselves (Host, the body's framing).
_OWN_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                "proxy-authenticate", "te", "trailer", "upgrade", "host", "content-length",
                "transfer-encoding"}


def _origin_request(request: Request, host: str) -> bytes:
    """The request head as the origin server expects it: origin-form target, our
    Host, framing in one spelling, one request per connection."""
    authority = f"[{host}]" if ":" in host else host
    if request.port != 80:
        authority += f":{request.port}"
    lines = [f"{request.method} {request.path} {request.version}", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in request.headers
              if name.lower() not in _OWN_HEADERS]
    if request.body_length is None:
        lines.append("Transfer-Encoding: chunked")
    elif request.body_length or _values(request.headers, "content-length"):
        lines.append(f"Content-Length: {request.body_length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _pump(source: socket.socket, dest: socket.socket, attempt: Attempt, counter: str) -> None:
    buffer = bytearray(RELAY_CHUNK)
    view = memoryview(buffer)
    try:
        while True:
            n = source.recv_into(buffer)
            if not n:
                break
            dest.sendall(view[:n])
            attempt.fields[counter] += n
    except OSError:
        for sock in (source, dest):  # one side failed: end both directions
            _shutdown(sock, socket.SHUT_RDWR)
        return
    _shutdown(dest, socket.SHUT_WR)


def _reply(conn: socket.socket, status: int, reason: str) -> None:
    phrase = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 431: "Request Header Fields Too Large",
              502: "Bad Gateway"}.get(status, "Error")
    body = f"jailpy egress proxy: {reason}\n".encode("utf-8", "replace")
    try:
        conn.settimeout(1.0)
        conn.sendall(f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body)
    except OSError:
        pass


# --- the process -------------------------------------------------------------------


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    control = socket.socket(fileno=config["control_fd"])
    # The listening socket arrives once the sandbox's namespace exists; EOF instead
    # means the run ended before that (a set-up failure): nothing to serve.
    _, fds, _, _ = socket.recv_fds(control, 16, 1)
    if not fds:
        return 0
    listener = socket.socket(fileno=fds[0])
    rules = [parse_host_rule(spec) for spec in config["allow_hosts"]]
    proxy = Proxy(listener, AllowList(rules), Resolver(os.environ.get(TEST_RESOLVE_VARIABLE)),
                  config.get("log_fd"))
    threading.Thread(target=proxy.serve, daemon=True).start()
    # The control socket is the lifeline: EOF when jailpy closes it at the end of the
    # run, or dies.
    while control.recv(16):
        pass
    proxy.drain()
    listener.shutdown(socket.SHUT_RDWR)
    deadline = time.monotonic() + 1.0  # let connections the sandbox's end closed log
    while proxy.active and time.monotonic() < deadline:
        time.sleep(0.02)
    os.pwrite(config["summary_fd"], json.dumps(proxy.summary()).encode(), 0)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except BaseException as exc:  # noqa: BLE001 - reported through jailpy's helper output
        print(f"jailpy egress proxy: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    os._exit(code)
