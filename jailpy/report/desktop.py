"""The desktop section of `--explain` and the desktop rows of `jailpy check`."""

from __future__ import annotations

import os
import shutil

from .check import Check


def explain_sections(plan) -> list[tuple[str, list[str]]]:
    """What the desktop pieces grant, what is skipped, and what would fail."""
    desktop = plan.desktop
    if desktop is None:
        return []
    lines = list(desktop.notes)
    for problem in desktop.problems:
        line = f"PROBLEM       {problem.origin}: {problem.message} (run fails with exit 125)"
        lines.append(line)
    if desktop.proxies:
        lines.append(f"proxy         {desktop.proxy_binary}, started with the sandbox and "
                     "stopped with it")
    return [("desktop", lines)]


def checks() -> list[Check]:
    """Which desktop pieces this session could pass into a sandbox."""
    env = os.environ
    rows = []
    proxy = shutil.which("xdg-dbus-proxy")
    rows.append(Check("desktop", "xdg-dbus-proxy", proxy is not None, proxy or "not installed",
                      None if proxy else "install the 'xdg-dbus-proxy' package (needed for "
                      "desktop.dbus)", optional=True))
    xauth = shutil.which("xauth")
    rows.append(Check("desktop", "xauth", xauth is not None, xauth or "not installed",
                      None if xauth else "install the 'xauth' package (needed for "
                      "desktop.x11_untrusted)", optional=True))
    display = env.get("DISPLAY")
    rows.append(Check("desktop", "X11 display", bool(display),
                      f"DISPLAY={display}" if display else "DISPLAY is not set",
                      None if display else "only needed for desktop.x11", optional=True))
    wayland = env.get("WAYLAND_DISPLAY")
    rows.append(Check("desktop", "Wayland display", bool(wayland),
                      f"WAYLAND_DISPLAY={wayland}" if wayland else "WAYLAND_DISPLAY is not set",
                      None if wayland else "only needed for desktop.wayland", optional=True))
    bus = env.get("DBUS_SESSION_BUS_ADDRESS")
    rows.append(Check("desktop", "session bus", bool(bus), bus or "not set",
                      None if bus else "only needed for desktop.dbus", optional=True))
    gpu = [d for d in ("/dev/dri", "/dev/nvidiactl") if os.path.exists(d)]
    rows.append(Check("desktop", "GPU devices", bool(gpu), ", ".join(gpu) or "none found",
                      None if gpu else "only needed for desktop.gpu", optional=True))
    return rows
