"""Wayland, PulseAudio, PipeWire and GPU pass-through against real servers.

weston (headless backend), pulseaudio (null sink) and pipewire run as the test
user in a private XDG_RUNTIME_DIR made by the test; their own clients
(wayland-info, pactl, pw-cli) connect from inside the sandbox, where the
runtime dir is a private tmpfs that holds only the sockets asked for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from desktop_servers import RuntimeServers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(test_user):
    workdir = Path(tempfile.mkdtemp(prefix="jailpy-test-servers-", dir="/var/tmp"))
    workdir.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(workdir, test_user.uid, test_user.gid)
    running = RuntimeServers(test_user, workdir)
    yield running
    running.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")


def _env(servers: RuntimeServers, **extra: str) -> dict[str, str]:
    return {"XDG_RUNTIME_DIR": str(servers.runtime), "HOME": str(servers.home), **extra}


def test_wayland_socket_only(jailpy, servers):
    _need("weston")
    servers.wait(servers.wayland_display)
    env = _env(servers, WAYLAND_DISPLAY=servers.wayland_display)
    outside = jailpy.raw(["wayland-info"], env=env)
    assert "wl_compositor" in outside.stdout, outside.stderr  # counterpart
    result = jailpy.sandbox("ls -A $XDG_RUNTIME_DIR; echo $WAYLAND_DISPLAY; wayland-info",
                            "--wayland", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Only the compositor socket: no pulse, no pipewire, no lock files from the host.
    assert lines[0] == servers.wayland_display and lines[1] == servers.wayland_display
    assert "wl_compositor" in result.stdout
    denied = jailpy.sandbox("wayland-info", env=env)
    assert denied.returncode != 0 and "wl_compositor" not in denied.stdout


def test_missing_wayland_socket_is_a_clear_error(jailpy, servers):
    env = _env(servers, WAYLAND_DISPLAY="wayland-nonexistent")
    result = jailpy.run(["run", "--wayland", "--", "true"], env=env)
    assert result.returncode == 125
    assert f"no Wayland compositor socket at {servers.runtime}/wayland-nonexistent" \
        in result.stderr
    optional = jailpy.run(["run", "--wayland", "--desktop-optional", "wayland", "--", "true"],
                          env=env)
    assert optional.returncode == 0, optional.stderr


def test_pulseaudio(jailpy, servers):
    _need("pulseaudio")
    servers.wait("pulse/native")
    env = _env(servers)
    result = jailpy.sandbox("ls -A $XDG_RUNTIME_DIR; pactl info", "--pulseaudio", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "pulse"
    assert "Server String: unix:/run/user/" in result.stdout
    denied = jailpy.sandbox("pactl info", env=env)
    assert denied.returncode != 0


def test_pipewire(jailpy, servers):
    _need("pipewire")
    servers.wait("pipewire-0")
    env = _env(servers)
    result = jailpy.sandbox("ls -A $XDG_RUNTIME_DIR; timeout 10 pw-cli info 0", "--pipewire",
                            env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "pipewire-0"
    assert "PipeWire:Interface:Core" in result.stdout
    denied = jailpy.sandbox("timeout 10 pw-cli info 0", env=env)
    assert "PipeWire:Interface:Core" not in denied.stdout


def test_gpu_devices(jailpy):
    if not os.path.isdir("/dev/dri"):
        pytest.skip("no /dev/dri on this machine: the device binds cannot be exercised")
    outside = sorted(os.listdir("/dev/dri"))
    result = jailpy.sandbox("ls /dev/dri", "--gpu")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == outside


def test_gpu_missing_is_a_clear_error_unless_optional(jailpy):
    if os.path.isdir("/dev/dri") or any(n.startswith("nvidia") for n in os.listdir("/dev")):
        pytest.skip("this machine has a GPU device")
    result = jailpy.run(["run", "--gpu", "--", "true"])
    assert result.returncode == 125 and "no GPU device" in result.stderr
    optional = jailpy.run(["run", "--gpu", "--desktop-optional", "gpu", "--", "true"])
    assert optional.returncode == 0, optional.stderr
