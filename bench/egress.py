#!/usr/bin/env python3
"""The egress proxy (network.mode = "proxy") against slirp4netns.

- Throughput of one large HTTP download (curl inside the sandbox, writing to
  /dev/null) from a server on the host's 127.0.0.1: through jailpy's egress
  proxy (`--allow-host bench.test:PORT`, the name mapped to 127.0.0.1 by the
  proxy's test resolver), through slirp4netns (`--net slirp4netns
  --host-loopback`, fetching http://10.0.2.2:PORT/), and curl on the host
  itself for reference; round-robin, median of --runs.
- Per-connection set-up: inside one sandbox, a Python loop of sequential
  requests for a 2-byte file, each on a new connection (through the proxy:
  CONNECT-free plain HTTP, one upstream connection per request), mean time
  per request; the same through slirp4netns.
- `jailpy run -- true` with the proxy mode against --net none and slirp4netns.

Runs as the unprivileged test user when started as root. All traffic stays on
this machine's loopback. bwrap and firejail have nothing like an egress proxy,
so the peer is slirp4netns (jailpy's user-mode NAT) and plain host curl.

    python3 bench/egress.py [--size-mb 1024] [--runs 5] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.server
import os
import socketserver
import statistics
import subprocess
import sys
import threading

from _common import JAILPY, as_user, median_times, user_env

NAME = "bench.test"
ZEROS_SIZE = 64 << 20
#: A sparse file of zeros the server sends from (page cache, no copies).
ZEROS = os.memfd_create("bench-egress-zeros")
os.ftruncate(ZEROS, ZEROS_SIZE)


class Handler(http.server.BaseHTTPRequestHandler):
    """/big?MB streams zeros with sendfile (the server must not be the bottleneck);
    anything else is a 2-byte body."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        size = int(self.path.split("?")[1]) << 20 if self.path.startswith("/big?") else 2
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if size == 2:
            self.wfile.write(b"ok")
            return
        self.wfile.flush()
        left = size
        while left > 0:
            sent = os.sendfile(self.connection.fileno(), ZEROS, 0, min(left, ZEROS_SIZE))
            if sent <= 0:
                break
            left -= sent

    def log_message(self, *args) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256


#: Inside: N sequential requests, each on a new connection; prints ms per request.
SETUP_LOOP = r"""
import os, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
proxy = os.environ.get("http_proxy")
start = time.perf_counter()
for _ in range(n):
    if proxy:
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(b"GET http://%s:%d/small HTTP/1.1\r\nHost: x\r\n\r\n" % (host.encode(), port))
    else:
        s = socket.create_connection((host, port))
        s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
print((time.perf_counter() - start) / n * 1000)
"""


def modes(port: int) -> dict[str, tuple[list[str], str]]:
    """name -> (jailpy run options, the host:port the client uses)."""
    return {
        "jailpy --allow-host (egress proxy)":
            (["--allow-host", f"{NAME}:{port}"], NAME),
        "jailpy --net slirp4netns --host-loopback":
            (["--net", "slirp4netns", "--host-loopback"], "10.0.2.2"),
    }


def env() -> dict[str, str]:
    return {**user_env("/usr/bin:/bin:/usr/sbin:/sbin"),
            "JAILPY_EGRESS_TEST_RESOLVE": f"{NAME}=127.0.0.1"}


def download(prefix: list[str], host: str, port: int, size_mb: int) -> float:
    """Gbit/s of one download, as curl measures it."""
    out = subprocess.run(as_user([*prefix, "curl", "-sS", "-o", "/dev/null", "-w",
                                  "%{speed_download}", f"http://{host}:{port}/big?{size_mb}"]),
                         env=env(), cwd="/", check=True, capture_output=True, text=True)
    return float(out.stdout) * 8 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    runs = {name: [JAILPY, "run", *options, "--"] for name, (options, _) in modes(port).items()}
    hosts = {name: host for name, (_, host) in modes(port).items()}
    samples: dict[str, list[float]] = {"curl on the host": [], **{name: [] for name in runs}}
    for _ in range(args.runs):
        samples["curl on the host"].append(download([], "127.0.0.1", port, args.size_mb))
        for name, prefix in runs.items():
            samples[name].append(download(prefix, hosts[name], port, args.size_mb))
    base = statistics.median(samples["curl on the host"])
    slirp = statistics.median(samples["jailpy --net slirp4netns --host-loopback"])
    print(f"download of {args.size_mb} MiB, median of {args.runs}")
    print("| | Gbit/s | / host curl | / slirp4netns |\n|---|---|---|---|")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {med / base:.2f}x | {med / slirp:.2f}x |")

    print(f"\nper-connection set-up, {args.requests} sequential requests, median of {args.runs}")
    for name, prefix in runs.items():
        values = []
        for _ in range(args.runs):
            out = subprocess.run(as_user([*prefix, "python3", "-c", SETUP_LOOP, hosts[name],
                                          str(port), str(args.requests)]),
                                 env=env(), cwd="/", check=True, capture_output=True, text=True)
            values.append(float(out.stdout))
        print(f"| {name} | {statistics.median(values):.3f} ms per connection |")

    times = median_times({
        "--net none": [JAILPY, "run", "--", "true"],
        "--allow-host": [JAILPY, "run", "--allow-host", f"{NAME}:{port}", "--", "true"],
        "--net slirp4netns": [JAILPY, "run", "--net", "slirp4netns", "--", "true"],
    }, max(args.runs * 4, 10), env())
    print("\njailpy run -- true, median")
    for name, value in times.items():
        print(f"| {name} | {value * 1000:.1f} ms |")
    server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
