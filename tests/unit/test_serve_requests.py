"""`jailpy serve`'s checks that need no server: request fields, options, token, metrics,
and deploy/ agreeing with them. The server itself: tests/integration/test_serve.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from jailpy.cli.commands import main
from jailpy.cli.serve import (ERROR_CODES, ApiError, Listener, Metrics, Settings, read_token,
                              run_arguments)
from jailpy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"listen": "unix:/run/s.sock", "pool_size": 2, "concurrency": None, "queue": 4,
           "max_request": "1M", "max_output": "64K", "max_timeout": "30s",
           "socket_mode": "0600", "token_file": None}


def settings(**changes) -> Settings:
    return Settings({**OPTIONS, **changes}, {})


@pytest.mark.parametrize("doc, code", [
    ([], "malformed_json"),
    ({"argv": ["true"], "timeot": 3}, "unknown_field"),
    ({"argv": []}, "invalid_field"),
    ({"argv": ["true", 3]}, "invalid_field"),
    ({"argv": ["true"], "env": {"A": 1}}, "invalid_field"),
    ({"argv": ["true"], "stdin": "!!", "encoding": "base64"}, "invalid_field"),
    ({"argv": ["true"], "encoding": "latin-1"}, "invalid_field"),
    ({"argv": ["true"], "timeout": True}, "invalid_field"),
    ({"argv": ["true"], "timeout": "soon"}, "invalid_field"),
    ({"argv": ["true"], "pids": 1.5}, "invalid_field"),
    ({"argv": ["true"], "timeout": 31}, "limit_too_high"),
    ({"argv": ["true"], "output_limit": "65K"}, "limit_too_high"),
])
def test_bad_requests_get_their_code(doc, code):
    with pytest.raises(ApiError) as caught:
        run_arguments(doc, settings())
    assert caught.value.code == code and caught.value.status == ERROR_CODES[code][0]


def test_a_request_becomes_pool_arguments():
    argv, kwargs, encoding = run_arguments(
        {"argv": ["cat"], "stdin": "aGk=", "files": {"a/b.txt": "eA=="}, "encoding": "base64",
         "env": {"X": "1"}, "cwd": "/work", "timeout": "10s", "memory": "64M", "pids": 8,
         "output_limit": 100}, settings())
    assert (argv, encoding) == (["cat"], "base64")
    assert kwargs == {"stdin": b"hi", "files": {"a/b.txt": b"x"}, "env": {"X": "1"},
                      "cwd": "/work", "timeout": 10.0, "memory": 64 << 20, "pids": 8,
                      "output_limit": 100}
    # without them: the server's maximum timeout and output limit, nothing else
    assert run_arguments({"argv": ["true"]}, settings())[1] == \
        {"stdin": b"", "timeout": 30.0, "output_limit": 64 << 10}


@pytest.mark.parametrize("text, error", [
    ("unix:run/s.sock", "must be absolute"), ("localhost", "expected unix:/PATH or HOST:PORT"),
    ("127.0.0.1:0", "expected"), ("127.0.0.1:99999", "expected"),
])
def test_bad_listen_addresses(text, error):
    with pytest.raises(ConfigError, match=error):
        Listener(text)


def test_tcp_needs_a_token_and_a_private_token_file(tmp_path):
    with pytest.raises(ConfigError, match="needs a bearer token"):
        settings(listen="127.0.0.1:8080")
    assert Settings({**OPTIONS, "listen": "[::1]:8080"}, {"JAILPY_TOKEN": "t0k"}).token == "t0k"
    token = tmp_path / "token"
    token.write_text("abc\n")
    token.chmod(0o640)
    with pytest.raises(ConfigError, match="can be read by others"):
        read_token(str(token), {})
    token.chmod(0o600)
    assert read_token(str(token), {"JAILPY_TOKEN": "other"}) == "abc"
    token.write_text("a b")
    with pytest.raises(ConfigError, match="printable"):
        read_token(str(token), {})


def test_metrics_text_format():
    metrics = Metrics()
    metrics.observe("/v1/run", 200, None, 0.02)
    metrics.observe("/v1/run", 200, None, 3.0)
    metrics.observe("/v1/run", 503, "queue_full", None)
    text = metrics.render({"size": 4, "ready": 3, "served": 2, "failed": 0}, 1, 0)
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines()
                   if not line.startswith("#"))
    assert samples['jailpy_requests_total{endpoint="/v1/run",status="200"}'] == "2"
    assert samples['jailpy_request_failures_total{code="queue_full"}'] == "1"
    assert samples['jailpy_run_duration_seconds_bucket{le="0.025"}'] == "1"
    assert samples['jailpy_run_duration_seconds_bucket{le="5"}'] == "2"
    assert samples['jailpy_run_duration_seconds_bucket{le="+Inf"}'] == "2"
    assert (samples["jailpy_pool_ready"], samples["jailpy_requests_running"]) == ("3", "1")
    # every sample has its HELP and TYPE
    for name in {re.sub(r"(_bucket|_sum|_count)?(\{.*)?$", "", key) for key in samples}:
        assert f"# TYPE {name} " in text, name


def test_deploy_runs_options_the_server_takes():
    """The Containerfile's and the Deployment's arguments parse as `jailpy serve` options,
    and the metrics the autoscaler reads are ones the server exports."""
    containerfile = (REPO / "deploy" / "Containerfile").read_text()
    deployment = (REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    hpa = (REPO / "deploy" / "kubernetes" / "hpa.yaml").read_text()

    cmd = json.loads(re.search(r"^CMD (\[.*\])$", containerfile, re.M).group(1))
    args = json.loads(re.search(r"args: (\[.*?\])", deployment, re.S).group(1))
    serve = main.commands["serve"]
    for argv in (cmd, args):
        context = serve.make_context("serve", list(argv))
        assert context.params["listen"] == "0.0.0.0:8080"
    assert "hostUsers: false" in deployment and "JAILPY_TOKEN" in deployment
    exported = Metrics().render({}, 0, 0)
    for series in re.findall(r"seriesQuery: '(\w+)", hpa):
        assert f"# TYPE {series} " in exported, series


def test_serve_help_lists_every_option():
    text = main.commands["serve"].get_help(click.Context(main.commands["serve"]))
    for option in ("--listen", "--pool", "--concurrency", "--queue", "--max-request",
                   "--max-output", "--max-timeout", "--token-file", "--socket-mode"):
        assert option in text
