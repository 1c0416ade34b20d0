"""`jailpy serve`: an HTTP JSON API over a warm Pool (docs/serve.md).

    jailpy serve --profile P --listen unix:/run/jailpy.sock --pool 4
    POST /v1/run   {"argv": [...], "env": {...}, "stdin": "...", ...}  -> a Result as JSON
    GET  /v1/health                                                   -> {"status": "ok", ...}
    GET  /metrics                                                     -> Prometheus text

The server is a front end like the rest of cli/: it turns HTTP into the
Pool's arguments and a Result back into JSON; every sandbox is the Pool's
(api.py). It runs on aiohttp, the optional extra `jailpy[serve]`, imported only
here, so `jailpy run` and a plain install never load it.

What a request may ask for is checked here, field by field, before it reaches
the pool: an unknown field, a wrong type or a limit above the server's is a 400
with a stable code (ERROR_CODES), never a partly applied request. Admission is
a concurrency limit with a bounded queue: a request beyond both is answered
503 at once rather than held. SIGTERM stops accepting, lets the requests in
flight finish, closes the pool and removes the socket.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import signal
import stat
import sys
import time
from typing import Any

from ..errors import ConfigError, JailpyError

#: What a user without the extra is told (one line, status 125).
EXTRA = "pip install 'jailpy[serve]'"

#: The environment variable a token may come from (the same name the client reads).
TOKEN_VARIABLE = "JAILPY_TOKEN"

#: Every error the API answers with: code -> (HTTP status, what it means). The codes are
#: the contract (docs/serve.md); messages may change.
ERROR_CODES = {
    "malformed_json": (400, "the body is not a JSON object"),
    "unknown_field": (400, "the request has a field the API does not know"),
    "invalid_field": (400, "a field has the wrong type or value"),
    "limit_too_high": (400, "a per-request limit is above the server's"),
    "rejected": (400, "the profile or the sandbox refused the request"),
    "unauthorized": (401, "a missing or wrong bearer token"),
    "not_found": (404, "no such endpoint"),
    "method_not_allowed": (405, "the endpoint does not take this method"),
    "request_too_large": (413, "the body is larger than --max-request"),
    "queue_full": (503, "every slot is busy and the queue is full"),
    "shutting_down": (503, "the server is stopping"),
    "sandbox_failed": (500, "jailpy could not build or run the sandbox"),
    "internal_error": (500, "a bug in the server"),
}

#: The fields of POST /v1/run. Anything else is `unknown_field`.
RUN_FIELDS = ("argv", "env", "stdin", "files", "cwd", "timeout", "memory", "pids",
              "output_limit", "encoding")

#: Upper bounds of the request latency histogram, seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ApiError(Exception):
    """A request the API refuses: rendered as {"error": {"code", "message"}}."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.status = ERROR_CODES[code][0]
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


# -- settings: the command line, checked before anything listens ---------------------


class Listener:
    """Where the server listens: a Unix socket path, or a TCP host and port."""

    def __init__(self, text: str):
        self.text = text
        self.path: str | None = None
        self.host = ""
        self.port = 0
        if text.startswith("unix:"):
            path = text[len("unix:"):]
            if not path.startswith("/"):
                raise ConfigError(f"the socket path must be absolute, got {path!r}",
                                  origin="--listen", hint="e.g. --listen unix:/run/jailpy.sock")
            self.path = path
            return
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"expected unix:/PATH or HOST:PORT, got {text!r}",
                              origin="--listen",
                              hint="e.g. --listen unix:/run/jailpy.sock or --listen 127.0.0.1:8080")
        self.host, self.port = host.strip("[]"), int(port)

    @property
    def is_tcp(self) -> bool:
        return self.path is None


class Settings:
    """`jailpy serve`'s options, each checked and converted once."""

    def __init__(self, opts: dict[str, Any], environ: "dict[str, str] | os._Environ[str]"):
        from ..profile.values import parse_duration, parse_mode, parse_size

        self.profile: str | None = opts.get("profile")
        self.listener = Listener(opts["listen"])
        self.pool_size: int = opts["pool_size"]
        self.concurrency: int = opts.get("concurrency") or self.pool_size
        self.queue: int = opts["queue"]
        self.max_request = parse_size(opts["max_request"], "--max-request")
        self.max_output = parse_size(opts["max_output"], "--max-output")
        self.max_timeout = parse_duration(opts["max_timeout"], "--max-timeout")
        self.socket_mode = parse_mode(opts["socket_mode"], "--socket-mode")
        self.token = read_token(opts.get("token_file"), environ)
        if self.listener.is_tcp and self.token is None:
            raise ConfigError("a TCP listener needs a bearer token", origin="--listen",
                              hint=f"give it with --token-file FILE (mode 0600) or in "
                                   f"${TOKEN_VARIABLE}; or listen on unix:/PATH")


def read_token(path: str | None, environ: "dict[str, str] | os._Environ[str]") -> str | None:
    """The bearer token from --token-file (owner-only file) or $JAILPY_TOKEN, never argv.

    A token file others can read is refused, as ssh refuses such a key: the token is
    the one thing between a TCP client and running code."""
    if path is None:
        token = environ.get(TOKEN_VARIABLE)
        origin = f"${TOKEN_VARIABLE}"
    else:
        origin = f"--token-file {path}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"cannot read the token: {exc.strerror}", origin=origin) from exc
        with os.fdopen(fd, "rb") as file:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                raise ConfigError("the token file can be read by others",
                                  origin=origin, hint=f"chmod 600 {path}")
            token = file.read(4097).decode("utf-8", "replace")
    if token is None:
        return None
    token = token.strip()
    if not token or len(token) > 4096 or not token.isprintable() or " " in token:
        raise ConfigError("the token must be 1-4096 printable characters without spaces",
                          origin=origin)
    return token


# -- requests: JSON in, Pool arguments out --------------------------------------------


def run_arguments(doc: object, settings: Settings) -> tuple[list[str], dict[str, Any], str]:
    """(argv, keyword arguments for Pool.run, output encoding) from a /v1/run body."""
    from ..profile.values import parse_duration, parse_size

    if not isinstance(doc, dict):
        raise ApiError("malformed_json", "the body must be a JSON object")
    unknown = sorted(set(doc) - set(RUN_FIELDS))
    if unknown:
        raise ApiError("unknown_field", f"unknown field {unknown[0]!r}; "
                                        f"known: {', '.join(RUN_FIELDS)}")
    argv = doc.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ApiError("invalid_field", "argv must be a non-empty array of strings")
    encoding = doc.get("encoding", "utf-8")
    if encoding not in ("utf-8", "base64"):
        raise ApiError("invalid_field", "encoding must be 'utf-8' or 'base64'")
    kwargs: dict[str, Any] = {"stdin": _data(doc.get("stdin", ""), encoding, "stdin")}
    env = doc.get("env")
    if env is not None:
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ApiError("invalid_field", "env must be an object of strings")
        kwargs["env"] = env
    files = doc.get("files")
    if files is not None:
        if not isinstance(files, dict):
            raise ApiError("invalid_field", "files must be an object: relative path -> content")
        kwargs["files"] = {name: _data(content, encoding, f"files[{name!r}]")
                           for name, content in files.items()}
    cwd = doc.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd:
            raise ApiError("invalid_field", "cwd must be a path")
        kwargs["cwd"] = cwd
    try:
        timeout = parse_duration(_scalar(doc, "timeout"), "timeout") \
            if doc.get("timeout") is not None else settings.max_timeout
        memory = parse_size(_scalar(doc, "memory"), "memory") \
            if doc.get("memory") is not None else None
        output_limit = parse_size(_scalar(doc, "output_limit"), "output_limit") \
            if doc.get("output_limit") is not None else settings.max_output
    except ConfigError as err:
        raise ApiError("invalid_field", str(err)) from err
    if timeout > settings.max_timeout:
        raise ApiError("limit_too_high", f"timeout {timeout:g}s is above the server's "
                                         f"{settings.max_timeout:g}s (--max-timeout)")
    if output_limit > settings.max_output:
        raise ApiError("limit_too_high", f"output_limit {output_limit} is above the "
                                         f"server's {settings.max_output} (--max-output)")
    kwargs.update(timeout=timeout, output_limit=output_limit)
    if memory is not None:
        kwargs["memory"] = memory
    pids = doc.get("pids")
    if pids is not None:
        if type(pids) is not int or pids < 1:
            raise ApiError("invalid_field", "pids must be a positive integer")
        kwargs["pids"] = pids
    return argv, kwargs, encoding


def _scalar(doc: dict[str, Any], name: str) -> object:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ApiError("invalid_field", f"{name} must be a number or a string like '10s'/'256M'")
    return value


def _data(value: object, encoding: str, name: str) -> bytes:
    """Bytes from a JSON string: UTF-8 text, or base64 with `"encoding": "base64"`."""
    if not isinstance(value, str):
        raise ApiError("invalid_field", f"{name} must be a string")
    if encoding == "utf-8":
        return value.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError("invalid_field", f"{name} is not valid base64") from exc


def result_body(result: Any, encoding: str) -> dict[str, Any]:
    """A Result as the JSON the API answers: --json-status's object plus the output."""
    from ..report.status import result_document

    body = result_document(result)
    for name in ("stdout", "stderr"):
        data: bytes = getattr(result, name) or b""
        body[name] = (data.decode("utf-8", "replace") if encoding == "utf-8"
                      else base64.b64encode(data).decode("ascii"))
        body[f"{name}_truncated"] = bool(getattr(result, f"{name}_truncated"))
    body["encoding"] = encoding
    return body


# -- metrics ------------------------------------------------------------------------


class Metrics:
    """Counters and the latency histogram, rendered in Prometheus' text format."""

    def __init__(self) -> None:
        self.responses: dict[tuple[str, int], int] = {}
        self.failures: dict[str, int] = {}
        self.bucket_counts = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, endpoint: str, status: int, code: str | None,
                seconds: float | None) -> None:
        key = (endpoint, status)
        self.responses[key] = self.responses.get(key, 0) + 1
        if code is not None:
            self.failures[code] = self.failures.get(code, 0) + 1
        if seconds is not None:
            self.latency_sum += seconds
            self.latency_count += 1
            for index, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[index] += 1

    def render(self, pool: dict[str, int], running: int, queued: int) -> str:
        lines = ["# HELP jailpy_requests_total HTTP requests answered, by endpoint and status.",
                 "# TYPE jailpy_requests_total counter"]
        lines += [f'jailpy_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                  for (endpoint, status), count in sorted(self.responses.items())]
        lines += ["# HELP jailpy_request_failures_total Requests refused or failed, "
                  "by error code.",
                  "# TYPE jailpy_request_failures_total counter"]
        lines += [f'jailpy_request_failures_total{{code="{code}"}} {count}'
                  for code, count in sorted(self.failures.items())]
        lines += ["# HELP jailpy_run_duration_seconds Latency of POST /v1/run requests that "
                  "ran a sandbox, queueing included.",
                  "# TYPE jailpy_run_duration_seconds histogram"]
        lines += [f'jailpy_run_duration_seconds_bucket{{le="{bound:g}"}} {count}'
                  for bound, count in zip(LATENCY_BUCKETS, self.bucket_counts)]
        lines += [f'jailpy_run_duration_seconds_bucket{{le="+Inf"}} {self.latency_count}',
                  f"jailpy_run_duration_seconds_sum {self.latency_sum:.6f}",
                  f"jailpy_run_duration_seconds_count {self.latency_count}"]
        gauges = (("requests_running", "Requests running a sandbox now.", running),
                  ("requests_queued", "Requests waiting for a slot.", queued),
                  ("pool_size", "Prepared sandboxes the pool keeps.", pool.get("size", 0)),
                  ("pool_ready", "Prepared sandboxes ready now (the pool depth).",
                   pool.get("ready", 0)))
        for name, text, value in gauges:
            lines += [f"# HELP jailpy_{name} {text}", f"# TYPE jailpy_{name} gauge",
                      f"jailpy_{name} {value}"]
        for name, text in (("served", "Sandboxes the pool has handed to requests."),
                           ("failed", "Sandboxes the pool failed to prepare or run.")):
            lines += [f"# HELP jailpy_pool_{name}_total {text}",
                      f"# TYPE jailpy_pool_{name}_total counter",
                      f"jailpy_pool_{name}_total {pool.get(name, 0)}"]
        return "\n".join(lines) + "\n"


# -- the server -----------------------------------------------------------------------


class Admission:
    """At most `concurrency` requests run; at most `queue` more wait; the rest get 503."""

    def __init__(self, concurrency: int, queue: int):
        self.slots = asyncio.Semaphore(concurrency)
        self.limit = concurrency + queue
        self.admitted = 0
        self.running = 0

    @property
    def queued(self) -> int:
        return self.admitted - self.running

    async def __aenter__(self) -> None:
        if self.admitted >= self.limit:
            raise ApiError("queue_full", f"{self.running} requests running and "
                                         f"{self.queued} queued; try again later")
        self.admitted += 1
        try:
            await self.slots.acquire()
        except BaseException:
            self.admitted -= 1
            raise
        self.running += 1

    async def __aexit__(self, *exc: object) -> None:
        self.running -= 1
        self.admitted -= 1
        self.slots.release()


class Server:
    """The aiohttp application around one Pool."""

    def __init__(self, settings: Settings, pool: Any):
        self.settings = settings
        self.pool = pool
        self.metrics = Metrics()
        self.admission = Admission(settings.concurrency, settings.queue)
        self.stopping = False

    def application(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def errors(request: Any, handler: Any) -> Any:
            return await self._errors(request, handler)

        app = web.Application(client_max_size=self.settings.max_request, middlewares=[errors])
        app.router.add_post("/v1/run", self.run)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/metrics", self.metrics_text)
        return app

    async def _errors(self, request: Any, handler: Any) -> Any:
        """Every refusal as a JSON error with a stable code, counted in the metrics."""
        from aiohttp import web

        started = time.monotonic()
        endpoint = request.path if request.path in ("/v1/run", "/v1/health", "/metrics") \
            else "other"
        try:
            response = await handler(request)
        except ApiError as err:
            response = web.json_response(err.body(), status=err.status)
            self.metrics.observe(endpoint, err.status, err.code, None)
            return response
        except web.HTTPException as exc:
            code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                    413: "request_too_large"}.get(exc.status, "invalid_field")
            err = ApiError(code, exc.reason if code != "request_too_large" else
                           f"the body is larger than {self.settings.max_request} bytes "
                           f"(--max-request)")
            self.metrics.observe(endpoint, err.status, code, None)
            return web.json_response(err.body(), status=err.status)
        except Exception as exc:  # a bug: say so, keep serving
            print(f"jailpy serve: internal error: {exc!r}", file=sys.stderr, flush=True)
            err = ApiError("internal_error", f"internal error: {type(exc).__name__}")
            self.metrics.observe(endpoint, err.status, err.code, None)
            return web.json_response(err.body(), status=err.status)
        ran = endpoint == "/v1/run" and response.status == 200
        self.metrics.observe(endpoint, response.status, None,
                             time.monotonic() - started if ran else None)
        return response

    def _authorize(self, request: Any) -> None:
        token = self.settings.token
        if token is None:
            return
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                  token.encode()):
            raise ApiError("unauthorized", "a valid 'Authorization: Bearer TOKEN' is needed")

    async def run(self, request: Any) -> Any:
        from aiohttp import web

        self._authorize(request)
        if self.stopping:
            raise ApiError("shutting_down", "the server is stopping")
        length = request.content_length
        if length is not None and length > self.settings.max_request:
            raise ApiError("request_too_large", f"the body is larger than "
                                                f"{self.settings.max_request} bytes "
                                                f"(--max-request)")
        raw = await request.read()  # aiohttp stops at client_max_size: 413
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError("malformed_json", f"the body is not JSON: {exc}") from exc
        argv, kwargs, encoding = run_arguments(doc, self.settings)
        async with self.admission:
            try:
                result = await self.pool.run_async(argv, **kwargs)
            except ConfigError as err:
                raise ApiError("rejected", str(err)) from err
            except JailpyError as err:
                if err.exit_code in (126, 127):  # the command's failure, not the server's
                    return web.json_response(_command_failure(err, encoding))
                raise ApiError("sandbox_failed", str(err)) from err
        return web.json_response(result_body(result, encoding))

    async def _pool_stats(self) -> dict[str, Any]:
        """Pool.stats() asks the fork server and waits: off the event loop."""
        return await asyncio.to_thread(self.pool.stats)

    async def health(self, request: Any) -> Any:
        from aiohttp import web

        status = "stopping" if self.stopping else "ok"
        # Counts only (no token is needed here): not the pool's last preparation error.
        pool = {k: v for k, v in (await self._pool_stats()).items() if isinstance(v, int)}
        return web.json_response({"status": status, "pool": pool,
                                  "running": self.admission.running,
                                  "queued": self.admission.queued},
                                 status=503 if self.stopping else 200)

    async def metrics_text(self, request: Any) -> Any:
        from aiohttp import web

        text = self.metrics.render(await self._pool_stats(), self.admission.running,
                                   self.admission.queued)
        return web.Response(text=text, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})


def _command_failure(err: JailpyError, encoding: str) -> dict[str, Any]:
    """A command that was not found (127) or not executable (126): a result, as for
    --json-status, with jailpy's message as its stderr."""
    from ..report.status import error_document

    body = error_document(err)
    message = f"jailpy: {err}\n".encode()
    body.update(stdout="", stderr=message.decode() if encoding == "utf-8"
                else base64.b64encode(message).decode("ascii"),
                stdout_truncated=False, stderr_truncated=False, encoding=encoding)
    return body


async def _serve(settings: Settings, pool: Any) -> None:
    from aiohttp import web

    server = Server(settings, pool)
    # Requests in flight may take up to --max-timeout; give them that and a little more.
    runner = web.AppRunner(server.application(), access_log=None, handle_signals=False,
                           shutdown_timeout=settings.max_timeout + 5)
    await runner.setup()
    listener = settings.listener
    try:
        if listener.is_tcp:
            await web.TCPSite(runner, listener.host, listener.port).start()
        else:
            assert listener.path is not None
            _remove_stale_socket(listener.path)
            old = os.umask(0o177)  # the socket is born owner-only, then gets --socket-mode
            try:
                await web.UnixSite(runner, listener.path).start()
            finally:
                os.umask(old)
            os.chmod(listener.path, settings.socket_mode)
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {listener.text}: {exc.strerror}",
                          origin="--listen") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"jailpy serve: listening on {listener.text} (pool {settings.pool_size}, "
          f"concurrency {settings.concurrency}, queue {settings.queue})",
          file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        server.stopping = True
        # Stops listening, then waits for the handlers in flight (up to shutdown_timeout).
        await runner.cleanup()
        if listener.path is not None:
            try:
                os.unlink(listener.path)
            except FileNotFoundError:
                pass


def _remove_stale_socket(path: str) -> None:
    """A socket left by a killed server is replaced; anything else at the path is not."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket", origin="--listen")
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    except OSError:
        return
    finally:
        probe.close()
    raise ConfigError(f"a server is already listening on {path}", origin="--listen")


def serve(opts: dict[str, Any]) -> None:
    """`jailpy serve`: check the options, build the pool, serve until SIGTERM; exit 0."""
    from .run import fail

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        sys.stderr.write(f"jailpy: jailpy serve needs the optional extra: {EXTRA}\n")
        sys.exit(125)
    try:
        settings = Settings(opts, os.environ)
        # Read once; the pool's processes (and so every sandbox's pid 1) never carry it.
        os.environ.pop(TOKEN_VARIABLE, None)
        from ..api import Pool, load_policy

        policy = load_policy(settings.profile)
        if policy.limits.timeout is not None:  # a request may only shorten the profile's
            settings.max_timeout = min(settings.max_timeout, policy.limits.timeout)
        with Pool(policy, size=settings.pool_size) as pool:
            asyncio.run(_serve(settings, pool))
    except JailpyError as err:
        fail(err, bool(opts.get("debug")))
    sys.exit(0)
