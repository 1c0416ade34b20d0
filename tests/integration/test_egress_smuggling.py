"""Egress proxy, plain HTTP: only the request that was checked reaches the upstream.

An attack test for docs/network.md, "One request per connection". A raw-socket
client in the sandbox sends, through the real proxy of the real CLI, requests
for an allowed name with something more behind them: a pipelined request for
a name that is not allowed, a request hidden in a body, and the framing tricks
request smuggling is made of (Content-Length with Transfer-Encoding, two
Content-Lengths, obs-fold, bare LF, a Host header naming another host, a
malformed chunk). Both names resolve to the same server on the host's
127.0.0.1 (virtual hosting, as on a real shared server), which records every
byte it receives: nothing naming the denied host may ever arrive there.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from test_egress import _resolver_env

#: Runs inside: each case on its own connection to the proxy; what came back.
CLIENT = r"""
import json, socket, sys
results = {}
for name, data in json.loads(sys.argv[1]).items():
    sock = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    sock.sendall(data.encode("latin-1"))
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except OSError as exc:
        reply += b"<" + type(exc).__name__.encode() + b">"
    sock.close()
    results[name] = reply.decode("latin-1")
print(json.dumps(results))
"""


class RecordingServer:
    """A plain HTTP server on 127.0.0.1 that keeps every byte each connection
    brings. It answers the first request (saying which Host and body it saw)
    with Connection: close, then reads on until the peer closes, as servers do
    before closing (a lingering close): bytes sent after the request still
    arrive here and are recorded."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            end = b"\r\n0\r\n\r\n" if fields.get(b"transfer-encoding") == b"chunked" else None
            length = int(fields.get(b"content-length", b"0"))
            while (end is not None and not (b"\r\n" + body).endswith(end)
                   or end is None and len(body) < length) and (chunk := conn.recv(65536)):
                body += chunk
                data += chunk
            text = b"host=%s body=%s" % (fields.get(b"host", b"-"), body)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(text), text))
            conn.shutdown(socket.SHUT_WR)
            while chunk := conn.recv(65536):
                data += chunk
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.received.append(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server():
    server = RecordingServer()
    yield server
    server.close()


def _cases(port: int) -> dict[str, str]:
    allowed = f"allowed.test:{port}"
    smuggled = f"GET /smuggled HTTP/1.1\r\nHost: denied.test:{port}\r\n\r\n"
    post = f"POST http://{allowed}/ HTTP/1.1\r\nHost: {allowed}\r\n"
    return {
        # Pipelining: a second request, for another host, behind an allowed one.
        "pipelined": (f"GET http://{allowed}/one HTTP/1.1\r\nHost: {allowed}\r\n\r\n"
                      f"GET http://denied.test:{port}/smuggled HTTP/1.1\r\n"
                      f"Host: denied.test:{port}\r\n\r\n"),
        "pipelined-origin-form": f"GET http://{allowed}/one HTTP/1.1\r\n\r\n{smuggled}",
        # Hidden after a body whose framing is clear: the body goes, the rest not.
        "after-content-length": f"{post}Content-Length: 5\r\n\r\nhello{smuggled}",
        "after-chunked": f"{post}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{smuggled}",
        # Framing two parsers could read two ways: refused before anything goes up.
        "cl-te": (f"{post}Content-Length: {len(smuggled) + 5}\r\nTransfer-Encoding: chunked"
                  f"\r\n\r\n0\r\n\r\n{smuggled}"),
        "te-cl": (f"{post}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                  f"{len(smuggled) + 2:x}\r\n{smuggled}\r\n0\r\n\r\n"),
        "two-lengths": f"{post}Content-Length: 0\r\nContent-Length: 40\r\n\r\n{smuggled}",
        "te-obfuscated": f"{post}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}",
        "obs-fold": f"{post}X-Pad: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        "bare-lf": (f"{post}X-Pad: a\nTransfer-Encoding: chunked\r\nContent-Length: 0"
                    f"\r\n\r\n0\r\n\r\n{smuggled}"),
        "host-header": f"GET http://{allowed}/ HTTP/1.1\r\nHost: denied.test:{port}\r\n\r\n",
        # A chunk-size line ended by a bare LF: cut off mid-body, nothing more goes.
        "chunk-bare-lf": (f"{post}Transfer-Encoding: chunked\r\n\r\n"
                          f"3\nabc\r\n0\r\n\r\n{smuggled}"),
    }


def test_only_the_checked_request_reaches_the_upstream(jailpy, server):
    log = jailpy.workdir / "egress.jsonl"
    cases = _cases(server.port)
    result = jailpy.run(["run", "--allow-host", f"allowed.test:{server.port}",
                         "--egress-log", str(log), "--", "/usr/bin/python3", "-c", CLIENT,
                         json.dumps(cases)], env=_resolver_env())
    assert result.returncode == 0, result.stderr
    replies = json.loads(result.stdout)

    # What the server for both names received: each connection one request, for
    # the allowed name, and not a byte of the rest.
    with server.lock:
        received = list(server.received)
    everything = b"".join(received)
    assert b"denied.test" not in everything and b"smuggled" not in everything, received
    assert all(data.count(b" HTTP/1.1\r\n") == 1 for data in received), received
    assert all(f"Host: allowed.test:{server.port}\r\n".encode() in data for data in received)

    # What the client saw: one response for the first request, then the end.
    seen = f"host=allowed.test:{server.port}"
    for name in ("pipelined", "pipelined-origin-form"):
        assert replies[name].count("HTTP/1.1 ") == 1, replies[name]
        assert replies[name].endswith(f"{seen} body="), replies[name]
    assert replies["after-content-length"].endswith(f"{seen} body=hello")
    assert replies["after-chunked"].endswith(f"{seen} body=3\r\nabc\r\n0\r\n\r\n")
    refused = ("cl-te", "te-cl", "two-lengths", "te-obfuscated", "obs-fold", "bare-lf",
               "host-header")
    for name in refused:
        assert replies[name].startswith("HTTP/1.1 400 "), (name, replies[name])
    assert "HTTP/1.1 200" not in replies["chunk-bare-lf"]

    # The log: the pipelined request for the other host is a denied attempt of its
    # own; each refusal says why.
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    denied = [e for e in entries if e["name"] == "denied.test"]
    assert len(denied) == 1 and denied[0]["decision"] == "denied", entries
    assert "one request per connection" in denied[0]["reason"]
    assert sum("one request per connection" in (e["reason"] or "") for e in entries) == 4
    reasons = [e["reason"] or "" for e in entries]
    for words in ("ambiguous framing", "more than one Content-Length", "Transfer-Encoding",
                  "obs-fold", "bare CR or LF in the request head", "another host than the URL",
                  "bare CR or LF in a chunked body"):
        assert any(words in reason for reason in reasons), (words, reasons)
