"""`jailpy serve` (docs/serve.md): the real server, run as the test user, over the real Pool.

A few tests that each prove several properties, since every server start
prepares real sandboxes: the Unix-socket API end to end (results, errors
with their codes, limits, the queue, metrics, graceful SIGTERM), TCP with its
token and `jailpy run --via`, the server inside a nested sandbox, and the
one line a plain install prints.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import poll, process_tree, processes

pytestmark = pytest.mark.integration

PYTHON_PRINT = ["python3", "-c", "print(1)"]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def exchange(connect, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, object]:
    """(HTTP status, parsed JSON or text) of one request on a fresh connection."""
    connection = connect()
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(data)
    return response.status, data.decode()


def run_request(connect, doc: dict, headers: dict[str, str] | None = None):
    return exchange(connect, "POST", "/v1/run", json.dumps(doc).encode(), headers)


def metric(text: str, name: str) -> float:
    """One sample of the Prometheus text (0 when the series does not exist yet)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def held(seconds: str) -> list[int]:
    """Processes running `sleep SECONDS` (a request the test holds until it ends it)."""
    return [pid for pid, cmdline in processes() if cmdline == f"sleep\0{seconds}\0".encode()]


def listening(path: str) -> bool:
    """Whether something accepts connections on the Unix socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class Server:
    """`jailpy serve ARGS` as the test user, up once it says it is listening."""

    def __init__(self, jailpy, args: list[str], env: dict[str, str] | None = None,
                 prefix: list[str] | None = None):
        self.proc = jailpy.popen([*(prefix or []), "serve", *args], env=env,
                                 stderr=open(jailpy.workdir / "serve.log", "wb"))
        self.log = jailpy.workdir / "serve.log"
        deadline = time.monotonic() + 60
        while "listening on" not in self.log.read_text():
            assert self.proc.poll() is None, f"serve ended: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"serve did not start: {self.log.read_text()}"
            time.sleep(0.05)

    def serve_pid(self) -> int:
        """The jailpy process itself (the test user's, below runuser when we are root)."""
        tree = process_tree(self.proc.pid)
        for pid in tree:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmdline and not cmdline[0].endswith(b"runuser"):
                return pid
        raise AssertionError(f"no serve process in {tree}")

    def stop(self, timeout: float = 60) -> int:
        os.kill(self.serve_pid(), signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def test_unix_socket_api_limits_queue_metrics_and_graceful_stop(jailpy, user_tmp):
    socket_path = str(user_tmp / "serve.sock")
    server = Server(jailpy, ["--listen", f"unix:{socket_path}", "--pool", "2",
                             "--concurrency", "1", "--queue", "1", "--max-request", "64K",
                             "--max-output", "1K", "--max-timeout", "30s"])
    assert (os.stat(socket_path).st_mode & 0o777) == 0o600

    def connect():
        return UnixConnection(socket_path)

    status, health = exchange(connect, "GET", "/v1/health")
    assert status == 200 and health["status"] == "ok" and health["pool"]["size"] == 2
    _, before = exchange(connect, "GET", "/metrics")

    status, body = run_request(connect, {"argv": PYTHON_PRINT})
    assert status == 200, body
    assert (body["exit_code"], body["stdout"], body["stdout_truncated"]) == (0, "1\n", False)
    status, body = run_request(connect, {"argv": ["sh", "-c", "cat; echo $GREETING >&2; exit 3"],
                                         "stdin": "in\n", "env": {"GREETING": "hi"}})
    assert (status, body["exit_code"], body["stdout"], body["stderr"]) == (200, 3, "in\n", "hi\n")
    # base64 carries bytes that are not UTF-8, both ways
    status, body = run_request(connect, {"argv": ["cat"], "stdin": "/w==",
                                         "encoding": "base64"})
    assert (status, body["stdout"]) == (200, "/w==")

    # a command the sandbox cannot find is the command's failure, answered like a run
    status, body = run_request(connect, {"argv": ["no-such-command"]})
    assert (status, body["exit_code"]) == (200, 127) and "not found" in body["stderr"], body

    # output beyond the server's --max-output is cut and flagged, and the run still answers
    status, body = run_request(connect, {"argv": ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x"]})
    assert status == 200 and body["stdout_truncated"] is True and body["stdout"] == "x" * 1024

    refusals = {
        "unknown_field": {"argv": ["true"], "argvs": ["true"]},
        "invalid_field": {"argv": "true"},
        "limit_too_high": {"argv": ["true"], "output_limit": 4096},
    }
    for code, doc in refusals.items():
        status, body = run_request(connect, doc)
        assert (status, body["error"]["code"]) == (400, code), body
    status, body = exchange(connect, "POST", "/v1/run", b'{"argv": ["true"')
    assert (status, body["error"]["code"]) == (400, "malformed_json")
    status, body = exchange(connect, "POST", "/v1/run",
                            json.dumps({"argv": ["true"], "stdin": "x" * 70000}).encode())
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    status, body = exchange(connect, "GET", "/v1/nothing")
    assert (status, body["error"]["code"]) == (404, "not_found")

    # One request runs, one waits: the third is refused at once. The two hold their
    # slots until the test ends their `sleep` (a fixed sleep would be a race: on a
    # loaded machine the first could end before the third request is sent).
    hold = f"{3000 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
    answers: list[tuple[int, object]] = []
    slow = [threading.Thread(target=lambda: answers.append(
        run_request(connect, {"argv": ["sh", "-c", f"sleep {hold}; echo done"]})))
        for _ in range(2)]
    for thread in slow:
        thread.start()
    deadline = time.monotonic() + 20
    while True:
        _, text = exchange(connect, "GET", "/metrics")
        if metric(text, "jailpy_requests_running") == 1 and \
                metric(text, "jailpy_requests_queued") == 1:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    status, body = run_request(connect, {"argv": ["true"]})
    assert (status, body["error"]["code"]) == (503, "queue_full")
    assert len(poll(lambda: held(hold), 20)) == 1  # the queued one has not started

    _, after = exchange(connect, "GET", "/metrics")
    ok = 'jailpy_requests_total{endpoint="/v1/run",status="200"}'
    assert metric(after, ok) - metric(before, ok) == 5
    assert metric(after, "jailpy_run_duration_seconds_count") - \
        metric(before, "jailpy_run_duration_seconds_count") == 5
    for code in ("unknown_field", "invalid_field", "limit_too_high", "malformed_json",
                 "request_too_large", "queue_full"):
        assert metric(after, f'jailpy_request_failures_total{{code="{code}"}}') == 1, code
    assert metric(after, "jailpy_pool_served_total") >= 4
    assert metric(after, "jailpy_pool_size") == 2

    # SIGTERM with one request running and one queued: both finish, then exit 0,
    # the socket is gone and so is every process the server had.
    tree = process_tree(server.serve_pid())
    assert len(tree) > 1  # the pool's fork server and its prepared sandboxes
    os.kill(server.serve_pid(), signal.SIGTERM)
    # Stopped listening (so the signal was handled while both were in): then each held
    # request is let go in turn, the queued one once it has started.
    assert poll(lambda: not listening(socket_path), 20), "serve kept listening after SIGTERM"
    for _ in slow:
        sleeper = poll(lambda: held(hold), 20)
        assert len(sleeper) == 1, sleeper
        os.kill(sleeper[0], signal.SIGTERM)
        assert poll(lambda: sleeper[0] not in held(hold), 20)
    assert server.proc.wait(timeout=60) == 0, server.log.read_text()
    for thread in slow:
        thread.join(timeout=30)
    assert [(status, body["stdout"]) for status, body in answers] == [(200, "done\n")] * 2
    assert not os.path.exists(socket_path)
    # (pid 1s killed with their namespaces are reaped by the kernel a moment later)
    assert poll(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in tree), 5), \
        [pid for pid in tree if os.path.exists(f"/proc/{pid}")]


def test_tcp_needs_the_token_and_run_via(jailpy, user_tmp):
    token_file = user_tmp / "token"
    token_file.write_text("s3cret-token\n")
    os.chown(token_file, jailpy.user.uid, jailpy.user.gid)
    token_file.chmod(0o644)
    refused = jailpy.run(["serve", "--listen", "127.0.0.1:1", "--token-file", str(token_file)])
    assert refused.returncode == 125 and "can be read by others" in refused.stderr
    assert len(refused.stderr.splitlines()) == 2  # the line and its hint, no traceback
    refused = jailpy.run(["serve", "--listen", "127.0.0.1:1"])
    assert refused.returncode == 125 and "needs a bearer token" in refused.stderr
    token_file.chmod(0o600)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(jailpy, ["--listen", f"127.0.0.1:{port}", "--pool", "1"],
                    env={"JAILPY_TOKEN": "s3cret-token"})

    def connect():
        return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        status, body = run_request(connect, {"argv": ["true"]}, headers)
        assert (status, body["error"]["code"]) == (401, "unauthorized"), headers
    status, body = run_request(connect, {"argv": PYTHON_PRINT},
                               {"Authorization": "Bearer s3cret-token"})
    assert (status, body["stdout"]) == (200, "1\n")
    # the token is the server's alone: not in a request's environment, nor its pid 1's
    status, body = run_request(connect, {"argv": ["sh", "-c", "env; cat /proc/1/environ"]},
                               {"Authorization": "Bearer s3cret-token"})
    assert status == 200 and "PATH=" in body["stdout"] and "s3cret" not in body["stdout"]

    url = f"http://127.0.0.1:{port}"
    via = jailpy.run(["run", "--via", url, "-e", "WORD=hello", "--", "sh", "-c",
                      "cat; echo $WORD; echo oops >&2; exit 7"], input="piped\n",
                     env={"JAILPY_TOKEN_FILE": str(token_file)})
    assert (via.returncode, via.stdout, via.stderr) == (7, "piped\nhello\n", "oops\n")
    via = jailpy.run(["run", "--via", url, "--", "true"])
    assert via.returncode == 125 and "(HTTP 401 unauthorized)" in via.stderr, via.stderr
    via = jailpy.run(["run", "--via", url, "--bind", "/", "/", "--", "true"],
                     env={"JAILPY_TOKEN_FILE": str(token_file)})
    assert via.returncode == 125 and "--bind does not apply" in via.stderr
    assert server.stop() == 0, server.log.read_text()


def test_serve_inside_a_nested_sandbox(jailpy, user_tmp):
    """`jailpy serve` in a sandbox that allows nesting (the closest thing here to an
    unprivileged pod) serves requests through a socket in its workspace."""
    socket_path = str(user_tmp / "nested.sock")
    server = Server(jailpy, ["--listen", f"unix:{socket_path}", "--pool", "1"],
                    prefix=["run", "-p", "nested", "--"] + [jailpy.binary])
    status, body = run_request(lambda: UnixConnection(socket_path),
                               {"argv": ["sh", "-c", "echo $$; cat /proc/self/uid_map"]})
    assert status == 200, body
    pid, uid_map = body["stdout"].split("\n", 1)
    assert int(pid) < 10  # a pid namespace of the request's own, inside the outer sandbox
    assert body["exit_code"] == 0
    assert server.stop() == 0, server.log.read_text()
    assert not os.path.exists(socket_path)


def test_serve_without_the_extra_names_it(jailpy):
    python = str(Path(jailpy.binary).parent / "python")
    script = ("import sys; sys.modules['aiohttp'] = None; sys.argv = ['jailpy', 'serve', "
              "'--listen', 'unix:/tmp/x.sock']; from jailpy.cli import main; main()")
    result = jailpy.raw([python, "-c", script])
    assert result.returncode == 125
    assert result.stderr == "jailpy: jailpy serve needs the optional extra: " \
                            "pip install 'jailpy[serve]'\n"
