"""HelperProcess against real short-lived processes: readiness, output in errors, stop."""

import os

import pytest

from jailpy.errors import SetupError
from jailpy.plan.network import HELPER_MODES, PROXY_MODE
from jailpy.runtime import helper
from jailpy.runtime.network import HELPERS


class _Shell(helper.HelperProcess):
    name = "sh"
    origin = "test"

    def __init__(self) -> None:
        super().__init__("/bin/sh")


def test_every_helper_mode_has_a_helper_class():
    assert set(HELPERS) == {*HELPER_MODES, PROXY_MODE}
    assert all(issubclass(cls, helper.HelperProcess) for cls in HELPERS.values())


def test_ready_then_stopped_through_the_lifeline():
    proc = _Shell()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    life_r, life_w = os.pipe2(os.O_CLOEXEC)
    # Ready at once, then wait for EOF on the lifeline and exit.
    proc.spawn(["sh", "-c", f"echo 1 >/proc/self/fd/{ready_w}; read x </proc/self/fd/{life_r}"],
               (ready_w, life_r), lifeline=life_w)
    os.close(ready_w)
    os.close(life_r)
    assert proc.wait_ready(ready_r).strip() == b"1"
    os.close(ready_r)
    pid = proc.pid
    proc.stop()
    assert proc.pid is None and proc.lifeline == proc.pidfd == proc.output == -1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    proc.stop()  # twice is fine


def test_a_helper_that_exits_is_reported_with_its_output():
    proc = _Shell()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    proc.spawn(["sh", "-c", "echo 'cannot open tap0' >&2; exit 3"], (ready_w,))
    os.close(ready_w)
    with pytest.raises(SetupError) as err:
        proc.wait_ready(ready_r)
    os.close(ready_r)
    assert "sh exited during start-up (exit status 3): cannot open tap0" in str(err.value)
    proc.stop()


def test_a_stalled_helper_is_killed_after_the_deadline(monkeypatch):
    monkeypatch.setattr(helper, "READY_TIMEOUT", 0.2)
    monkeypatch.setattr(helper, "STOP_TIMEOUT", 0.2)
    proc = _Shell()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    proc.spawn(["sh", "-c", "echo starting; trap '' TERM; while :; do sleep 1; done"], (ready_w,))
    os.close(ready_w)
    pid = proc.pid
    with pytest.raises(SetupError) as err:
        proc.wait_ready(ready_r)
    os.close(ready_r)
    assert "did not become ready within 0.2 s (it printed: starting)" in str(err.value)
    assert proc.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
