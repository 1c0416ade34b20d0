"""Desktop pieces for sandboxed GUI apps: X11, Wayland, audio, D-Bus, GPU.

    config.py    value checks for the [desktop] profile section, -> Policy
    planner.py   Policy.desktop + caller facts -> DesktopPlan (pure data:
                 mount ops, environment, proxy and cookie specs, problems)
    x11.py       DISPLAY parsing and Xauthority cookies (read, filter, write)
    session.py   host side: session directory, cookie file, xdg-dbus-proxy
                 started as a host step and stopped with the sandbox
    report.py    --explain section and `jailpy check` rows

Nothing here runs unless a profile turns a desktop piece on; the modules are
imported lazily so plain `jailpy run` pays nothing for them.
"""
