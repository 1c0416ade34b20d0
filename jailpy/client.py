"""A client for `jailpy serve` (docs/serve.md), on the standard library only.

    from jailpy.client import Client
    client = Client("unix:/run/jailpy.sock")                 # or "http://10.0.0.5:8080", token=...
    result = client.run(["python3", "-c", "print(1)"], timeout=5)
    result.exit_code, result.stdout                          # 0, b"1\\n"

`run` answers the same Result a local Pool.run does (api.Result), so code can
move between a local pool and a server by changing one line. The server's
refusals raise ServerError with its stable code (`queue_full`,
`unauthorized`, ...); a server that cannot be reached raises ServerError with
code `unreachable`. The token comes from the argument, else $JAILPY_TOKEN,
else the file named by $JAILPY_TOKEN_FILE, so scripts never put it in argv.

This module is the API-level half of `jailpy serve`: it sits above api.py
(whose Result it builds) and below cli/ (`jailpy run --via` uses it), and it
imports nothing beyond the standard library, so a machine that only sends
requests needs no aiohttp.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
from typing import Any

from .errors import JailpyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .api import Result

__all__ = ["Client", "ServerError"]


class ServerError(JailpyError):
    """The server refused or failed a request (`code` is its stable error code)."""

    def __init__(self, message: str, code: str, status: int | None = None,
                 origin: str | None = None):
        where = f"HTTP {status} {code}" if status is not None else code
        super().__init__(f"{message} ({where})", origin=origin)
        self.code = code
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket: http.client with a different connect()."""

    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Client:
    """Talks to one `jailpy serve`: `unix:/PATH`, or `http://HOST:PORT` with a token.

    `timeout` bounds each HTTP exchange on the client's side (None: wait as
    long as the server takes; the server bounds a run by its --max-timeout)."""

    def __init__(self, url: str, token: str | None = None, timeout: float | None = None):
        self.url = url
        self.timeout = timeout
        self.token = token if token is not None else _token_from_environment()
        if url.startswith("unix:"):
            self.path: str | None = url[len("unix:"):]
            self.host, self.port = "", 0
        elif url.startswith("http://"):
            self.path = None
            address = url[len("http://"):].rstrip("/")
            host, sep, port = address.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise JailpyError(f"expected http://HOST:PORT, got {url!r}", origin="--via")
            self.host, self.port = host.strip("[]"), int(port)
        else:
            raise JailpyError(f"expected unix:/PATH or http://HOST:PORT, got {url!r}",
                              origin="--via")

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, stdin: bytes = b"",
            files: dict[str, bytes] | None = None, cwd: str | None = None,
            timeout: float | None = None, memory: int | str | None = None,
            pids: int | None = None, output_limit: int | None = None) -> "Result":
        """Run argv in a fresh sandbox on the server; the arguments are Pool.run's."""
        request: dict[str, Any] = {"argv": list(argv), "encoding": "base64",
                                   "stdin": base64.b64encode(stdin).decode("ascii")}
        optional = {"env": env, "cwd": cwd, "timeout": timeout, "memory": memory,
                    "pids": pids, "output_limit": output_limit}
        request.update({name: value for name, value in optional.items() if value is not None})
        if files is not None:
            request["files"] = {name: base64.b64encode(data).decode("ascii")
                                for name, data in files.items()}
        return _result(self._exchange("POST", "/v1/run", json.dumps(request).encode()))

    def health(self) -> dict[str, Any]:
        return self._exchange("GET", "/v1/health")

    def metrics(self) -> str:
        return self._exchange("GET", "/metrics", text=True)

    def _connection(self) -> http.client.HTTPConnection:
        if self.path is not None:
            return _UnixConnection(self.path, self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _exchange(self, method: str, path: str, body: bytes | None = None,
                  text: bool = False) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        connection = self._connection()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServerError(f"cannot reach the server: {exc}", "unreachable",
                              origin=self.url) from exc
        finally:
            connection.close()
        if text and response.status == 200:
            return data.decode("utf-8", "replace")
        try:
            doc = json.loads(data)
        except ValueError:
            raise ServerError(f"HTTP {response.status} with a body that is not JSON",
                              "bad_response", response.status, self.url) from None
        if response.status != 200 or not isinstance(doc, dict):
            error = doc.get("error") if isinstance(doc, dict) else None
            error = error if isinstance(error, dict) else {}
            raise ServerError(str(error.get("message", f"HTTP {response.status}")),
                              str(error.get("code", "bad_response")), response.status,
                              self.url)
        return doc


def _token_from_environment() -> str | None:
    token = os.environ.get("JAILPY_TOKEN")
    if token is None and os.environ.get("JAILPY_TOKEN_FILE"):
        path = os.environ["JAILPY_TOKEN_FILE"]
        try:
            with open(path, encoding="utf-8") as file:
                token = file.read()
        except OSError as exc:
            raise JailpyError(f"cannot read the token: {exc.strerror}",
                              origin=f"$JAILPY_TOKEN_FILE {path}") from exc
    return token.strip() if token is not None else None


def _result(doc: dict[str, Any]) -> "Result":
    """The server's JSON (base64 output) back into the Result a local pool returns."""
    from .api import Result

    def output(name: str) -> bytes:
        return base64.b64decode(doc.get(name) or "")

    return Result(exit_code=doc["exit_code"], signal=doc.get("signal"),
                  wall_time=doc.get("wall_time") or 0.0, user_time=doc.get("user_time") or 0.0,
                  system_time=doc.get("system_time") or 0.0,
                  command_exit_code=doc.get("command_exit_code"),
                  timed_out=bool(doc.get("timed_out")), ended_by=doc.get("ended_by"),
                  limits_hit=tuple(doc.get("limits_hit") or ()),
                  peak_memory=doc.get("peak_memory"), max_rss=doc.get("max_rss"),
                  limits_not_applied=tuple(doc.get("limits_not_applied") or ()),
                  stdout=output("stdout"), stderr=output("stderr"),
                  stdout_truncated=bool(doc.get("stdout_truncated")),
                  stderr_truncated=bool(doc.get("stderr_truncated")))
