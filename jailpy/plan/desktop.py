"""Policy.desktop + caller facts -> DesktopPlan: mount ops, environment, specs.

Every desktop piece becomes ordinary mount ops and environment entries that
are appended to the Plan, so the root builder needs no desktop knowledge.
The few things that need host-side work (writing the X cookie file, starting
xdg-dbus-proxy) are described here as data and carried out by
runtime/desktop.py.

The planner reads the caller's environment and looks at the host (does the
socket exist, which GPU devices are there) but changes nothing. A piece that
cannot be provided becomes a Problem: `--explain` shows it, `run` fails with
it (exit 125) unless the profile lists the piece in `desktop.optional`, in
which case it is skipped and --explain says so.
"""

from __future__ import annotations

import os
import re
import stat

from ..errors import ConfigError, UnsupportedError
from ..policy import Caller, DBusRules, Desktop, MountOp
from ..record import Record

#: Read-only assets per key: (host path, ...). ~ is the caller's home.
FONT_PATHS = ("/usr/share/fonts", "/usr/local/share/fonts", "/etc/fonts", "/var/cache/fontconfig",
              "~/.fonts", "{data}/fonts", "{config}/fontconfig", "{cache}/fontconfig")
THEME_PATHS = ("/usr/share/icons", "/usr/share/themes", "/usr/share/pixmaps",
               "/usr/share/mime", "~/.icons", "~/.themes", "{data}/icons", "{data}/themes",
               "{config}/gtk-3.0", "{config}/gtk-4.0", "~/.gtkrc-2.0", "{config}/kdeglobals",
               "{config}/Trolltech.conf", "{config}/qt5ct", "{config}/qt6ct")
LOCALE_PATHS = ("/usr/share/locale", "/usr/lib/locale", "/usr/share/i18n",
                "/usr/share/zoneinfo", "/etc/localtime", "/etc/locale.conf",
                "/etc/default/locale")
LOCALE_ENV = ("LANG", "LANGUAGE", "TZ")
SYSTEM_BUS_SOCKET = "/run/dbus/system_bus_socket"
GPU_DEVICE_GLOBS = ("/dev/dri", "/dev/nvidia*", "/dev/nvidia-caps")
GPU_SYSFS = ("/sys/dev", "/sys/devices", "/sys/bus", "/sys/class")

X11_SOCKET_DIR = "/tmp/.X11-unix"
_DISPLAY = re.compile(r"^(?P<host>unix|localhost|[^:/]*)?:(?P<number>\d+)(\.(?P<screen>\d+))?$")


class Display(Record):
    """A parsed $DISPLAY."""

    number: str
    screen: str | None
    tcp: bool

    @property
    def socket(self) -> str:
        return f"{X11_SOCKET_DIR}/X{self.number}"

    @property
    def name(self) -> str:
        """The value of DISPLAY inside the sandbox (always the local socket)."""
        return f":{self.number}" + (f".{self.screen}" if self.screen is not None else "")


def parse_display(value: str) -> Display | None:
    """':0', ':0.1', 'unix:0' are local; 'host:10' is TCP; anything else is None."""
    match = _DISPLAY.match(value.strip())
    if match is None:
        return None
    host = match.group("host") or ""
    return Display(match.group("number"), match.group("screen"), tcp=host not in ("", "unix"))


class Problem(Record):
    """A desktop piece that cannot be provided on this machine."""

    piece: str
    message: str
    origin: str
    hint: str | None = None

    def error(self) -> UnsupportedError:
        return UnsupportedError(self.message, origin=self.origin, hint=self.hint)


class X11Cookie(Record):
    """Which cookie to put into the sandbox: written by the session as `file`."""

    display: str
    number: str
    xauthority: str | None
    untrusted: bool
    file: str
    origin: str


class BusProxy(Record):
    """One bus behind xdg-dbus-proxy: upstream address, listening socket, rules."""

    bus: str
    upstream: str
    socket: str
    args: tuple[str, ...]


class DesktopPlan(Record):
    """Everything the desktop pieces add to one sandbox, as data."""

    runtime_dir: str
    session_dir: str | None
    mount_ops: tuple[MountOp, ...]
    env: tuple[tuple[str, str], ...]
    x11: X11Cookie | None
    proxy_binary: str | None
    proxies: tuple[BusProxy, ...]
    create_dirs: tuple[str, ...]
    #: The app's state directories with where each came from: the host session
    #: locks them for the sandbox's lifetime (one instance per app profile).
    app_dirs: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    problems: tuple[Problem, ...]
    skipped: tuple[Problem, ...]


def session_base(env: dict[str, str], uid: int) -> str:
    """Where per-sandbox host files live: the user's runtime dir, else /tmp/jailpy-UID."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/") and os.path.isdir(runtime):
        return f"{runtime.rstrip('/')}/jailpy"
    return f"/tmp/jailpy-{uid}"


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class _Builder:
    """Accumulates ops, env, notes and problems for one DesktopPlan."""

    def __init__(self, desktop: Desktop, caller: Caller, uid_inside: int,
                 prior_ops: tuple[MountOp, ...]):
        self.d = desktop
        self.env = env = caller.env
        self.uid = caller.uid
        self.vars = caller.variables()
        self.home = self.vars["HOME"]
        self.host_runtime = env.get("XDG_RUNTIME_DIR") if env.get("XDG_RUNTIME_DIR", "") \
            .startswith("/") else None
        self.rt = f"/run/user/{uid_inside}"
        # A profile's hides are applied after the desktop pieces (plan/__init__.py):
        # they decide nothing about what these see or bind.
        self.prior = tuple(op for op in prior_ops if op.kind != "hide")
        self.ops: list[MountOp] = []
        self.out_env: dict[str, str] = {}
        self.notes: list[str] = []
        self.problems: list[Problem] = []
        self.skipped: list[Problem] = []
        self.create: list[str] = []
        self.app_dirs: list[tuple[str, str]] = []
        self.session_dir: str | None = None
        self.x11: X11Cookie | None = None
        self.proxies: list[BusProxy] = []
        self.proxy_binary: str | None = None

    # -- helpers ---------------------------------------------------------------

    def origin(self, key: str) -> str:
        """The profile key or option behind an op; "" means the [desktop] section itself."""
        return self.d.origin_of(key) if key else "desktop"

    def op(self, kind: str, dest: str, source: str | None = None, *, key: str,
           optional: bool = False, mode: int | None = None, content: str | None = None) -> None:
        self.ops.append(MountOp(kind=kind, dest=dest, source=source, optional=optional,
                                mode=mode, content=content, origin=self.origin(key)))

    def problem(self, piece: str, message: str, hint: str | None = None) -> None:
        key = "x11_untrusted" if piece == "x11" and not self.d.x11 else piece
        found = Problem(piece, message, self.origin(key), hint)
        # Listing a piece in `optional` turns its problem into a note, never an error.
        (self.skipped if piece in self.d.optional else self.problems).append(found)

    def session(self) -> str:
        if self.session_dir is None:
            name = f"{os.getpid()}-{os.urandom(4).hex()}"
            self.session_dir = f"{session_base(self.env, self.uid)}/{name}"
        return self.session_dir

    def expand_home(self, path: str) -> str:
        path = path.format(data=self.vars["XDG_DATA_HOME"], config=self.vars["XDG_CONFIG_HOME"],
                           cache=self.vars["XDG_CACHE_HOME"])
        return self.home + path[1:] if path.startswith("~/") else path

    def covered(self, path: str) -> bool:
        """Is `path` already visible read-only at the same place through an earlier bind?

        The last earlier op at or above `path` decides what is there; an
        identity ro-bind of an ancestor means the asset is already visible.
        """
        for op in reversed(self.prior):
            if op.dest == path or path.startswith(op.dest.rstrip("/") + "/"):
                return op.kind == "ro-bind" and op.source == op.dest and not op.optional
            if op.dest.startswith(path + "/"):
                return False  # something was mounted inside it: bind the whole again
        return False

    def exposed(self, path: str) -> bool:
        """Would `path` be visible through a bind made by an earlier op?"""
        for op in reversed(self.prior):
            if op.dest == path or path.startswith(op.dest.rstrip("/") + "/"):
                return op.kind in ("bind", "ro-bind", "dev-bind")
        return False

    # -- pieces ------------------------------------------------------------------

    def runtime_dir(self) -> None:
        self.op("tmpfs", self.rt, key="", mode=0o700)
        self.out_env["XDG_RUNTIME_DIR"] = self.rt
        self.notes.append(f"runtime dir   {self.rt} (private tmpfs: only the sockets below)")

    def host_runtime_socket(self, piece: str, name: str, what: str) -> str | None:
        if name.startswith("/"):
            path = name
        elif self.host_runtime is None:
            self.problem(piece, f"no {what}: XDG_RUNTIME_DIR is not set",
                         hint="run from a desktop session, or set XDG_RUNTIME_DIR")
            return None
        else:
            path = f"{self.host_runtime}/{name}"
        if not _is_socket(path):
            self.problem(piece, f"no {what} at {path}",
                         hint=f"is the {what.split(' socket')[0]} running in this session?")
            return None
        return path

    def x11_piece(self) -> None:
        piece_key = "x11" if self.d.x11 else "x11_untrusted"
        untrusted = self.d.x11_untrusted
        value = self.env.get("DISPLAY")
        if not value:
            self.problem("x11", "x11 is on but DISPLAY is not set",
                         hint="start the app from an X11 (or XWayland) session, or set DISPLAY")
            return
        display = parse_display(value)
        if display is None or display.tcp:
            self.problem("x11", f"DISPLAY={value} is not a local display; only local X11 "
                         "sockets can be passed into the sandbox",
                         hint="remote displays (ssh -X) are not supported")
            return
        if not _is_socket(display.socket):
            self.problem("x11", f"no X11 socket {display.socket} for DISPLAY={value}",
                         hint="is the X server running and listening on a unix socket?")
            return
        xauthority = self.env.get("XAUTHORITY") or f"{self.home}/.Xauthority"
        cookie_file = f"{self.session()}/Xauthority"
        self.x11 = X11Cookie(display.name, display.number, xauthority, untrusted, cookie_file,
                             self.origin(piece_key))
        self.op("ro-bind", display.socket, display.socket, key=piece_key)
        self.op("ro-bind", f"{self.rt}/Xauthority", cookie_file, key=piece_key)
        self.out_env["DISPLAY"] = display.name
        self.out_env["XAUTHORITY"] = f"{self.rt}/Xauthority"
        kind = "untrusted cookie (X SECURITY extension)" if untrusted else "trusted cookie"
        self.notes.append(f"x11           {display.name} via {display.socket}; {kind} for "
                          f":{display.number} only, from {xauthority}")

    def wayland_piece(self) -> None:
        name = self.env.get("WAYLAND_DISPLAY") or "wayland-0"
        path = self.host_runtime_socket("wayland", name, "Wayland compositor socket")
        if path is None:
            return
        inside = os.path.basename(path)
        self.op("ro-bind", f"{self.rt}/{inside}", path, key="wayland")
        self.out_env["WAYLAND_DISPLAY"] = inside
        self.notes.append(f"wayland       {path} -> {self.rt}/{inside}")

    def pulseaudio_piece(self) -> None:
        server = self.env.get("PULSE_SERVER", "")
        if server and not server.startswith("unix:"):
            self.problem("pulseaudio", f"PULSE_SERVER={server} is not a unix socket",
                         hint="only local PulseAudio sockets can be passed into the sandbox")
            return
        name = server[len("unix:"):] if server else "pulse/native"
        path = self.host_runtime_socket("pulseaudio", name, "PulseAudio socket")
        if path is None:
            return
        inside = f"{self.rt}/pulse/native"
        self.op("ro-bind", inside, path, key="pulseaudio")
        conf = ["autospawn = no", f"default-server = unix:{inside}", "enable-shm = yes"]
        cookie = self.env.get("PULSE_COOKIE") or f"{self.vars['XDG_CONFIG_HOME']}/pulse/cookie"
        if os.path.isfile(cookie):
            self.op("ro-bind", f"{self.rt}/pulse/cookie", cookie, key="pulseaudio")
            conf.append(f"cookie-file = {self.rt}/pulse/cookie")
        self.op("file", f"{self.rt}/pulse/client.conf", key="pulseaudio", mode=0o644,
                content="\n".join(conf) + "\n")
        self.out_env.update(PULSE_SERVER=f"unix:{inside}",
                            PULSE_CLIENTCONFIG=f"{self.rt}/pulse/client.conf")
        self.notes.append(f"pulseaudio    {path} -> {inside}; client.conf with autospawn = no")

    def pipewire_piece(self) -> None:
        name = self.env.get("PIPEWIRE_REMOTE") or "pipewire-0"
        path = self.host_runtime_socket("pipewire", name, "PipeWire socket")
        if path is None:
            return
        inside = os.path.basename(path)
        self.op("ro-bind", f"{self.rt}/{inside}", path, key="pipewire")
        if inside != "pipewire-0":
            self.out_env["PIPEWIRE_REMOTE"] = inside
        conf = f"{self.vars['XDG_CONFIG_HOME']}/pipewire"
        self.op("ro-bind", conf, conf, key="pipewire", optional=True)
        self.notes.append(f"pipewire      {path} -> {self.rt}/{inside}")

    def dbus_pieces(self) -> None:
        wanted = []
        if self.d.dbus:
            wanted.append("dbus")
        if self.d.dbus_system == "filtered":
            wanted.append("dbus_system")
        elif self.exposed(SYSTEM_BUS_SOCKET):
            # "none" means none, even under a profile that binds the host's /run.
            self.op("tmpfs", os.path.dirname(SYSTEM_BUS_SOCKET), key="dbus_system", mode=0o755)
            self.notes.append(f"dbus system   none: {os.path.dirname(SYSTEM_BUS_SOCKET)} "
                              "hidden under an empty tmpfs")
        if not wanted:
            return
        import shutil

        binary = shutil.which("xdg-dbus-proxy", path=self.env.get("PATH") or os.defpath)
        if binary is None:
            for piece in wanted:
                self.problem(piece, "D-Bus filtering needs xdg-dbus-proxy, which is not installed",
                             hint="install the 'xdg-dbus-proxy' package")
            return
        self.proxy_binary = binary
        if self.d.dbus:
            self.session_bus()
        if self.d.dbus_system == "filtered":
            self.system_bus()

    def session_bus(self) -> None:
        upstream = self.env.get("DBUS_SESSION_BUS_ADDRESS")
        if not upstream:
            default = f"{self.host_runtime}/bus" if self.host_runtime else None
            if default is None or not _is_socket(default):
                self.problem("dbus", "dbus is on but there is no session bus: "
                             "DBUS_SESSION_BUS_ADDRESS is not set"
                             + (f" and {default} does not exist" if default else ""),
                             hint="run from a desktop session, or start one with dbus-run-session")
                return
            upstream = f"unix:path={default}"
        self._proxy_bus("session", "dbus", upstream, "bus", f"{self.rt}/bus", self.d.dbus_rules,
                        hint="is the session's dbus-daemon running?")

    def system_bus(self) -> None:
        upstream = self.env.get("DBUS_SYSTEM_BUS_ADDRESS")
        if not upstream:
            if not _is_socket(SYSTEM_BUS_SOCKET):
                self.problem("dbus_system", f"dbus_system = \"filtered\" but there is no system "
                             f"bus at {SYSTEM_BUS_SOCKET}",
                             hint="start the system dbus-daemon, or set dbus_system = \"none\"")
                return
            upstream = f"unix:path={SYSTEM_BUS_SOCKET}"
        self._proxy_bus("system", "dbus_system", upstream, "system_bus", SYSTEM_BUS_SOCKET,
                        self.d.dbus_system_rules,
                        hint="start the system dbus-daemon, or set dbus_system = \"none\"")

    def _proxy_bus(self, bus: str, key: str, upstream: str, name: str, inside: str,
                   rules: DBusRules, hint: str) -> None:
        """Put `upstream` behind an xdg-dbus-proxy socket `name` in the session
        directory, mounted at `inside`, where DBUS_<BUS>_BUS_ADDRESS points.

        Only the filtered proxy socket enters the sandbox, never the real bus.
        """
        variable = f"DBUS_{bus.upper()}_BUS_ADDRESS"
        missing = _missing_unix_path(upstream)
        if missing:
            self.problem(key, f"no {bus} bus at {missing} ({variable})", hint=hint)
            return
        socket = f"{self.session()}/{name}"
        self.proxies.append(BusProxy(bus, upstream, socket, _rule_args(rules)))
        self.op("ro-bind", inside, socket, key=key)
        self.out_env[variable] = f"unix:path={inside}"
        self.notes.append(f"dbus {bus:<9}{upstream} -> {inside}, filtered: "
                          f"{_describe_rules(rules)}")

    def gpu_piece(self) -> None:
        devices = gpu_devices()
        if not devices:
            self.problem("gpu", "gpu is on but there is no GPU device (/dev/dri, /dev/nvidia*)",
                         hint="install the GPU driver, or list \"gpu\" in desktop.optional")
            return
        for dev in devices:
            self.op("dev-bind", dev, dev, key="gpu", optional=True)
        # Mesa/libdrm/libudev find a GPU's driver through sysfs; these are the
        # directories Flatpak exposes for the same reason, read-only.
        for sys_dir in GPU_SYSFS:
            if not self.covered(sys_dir):
                self.op("ro-bind", sys_dir, sys_dir, key="gpu", optional=True)
        self.notes.append(f"gpu           {', '.join(devices)}; {', '.join(GPU_SYSFS)} "
                          "read-only")

    def assets(self, key: str, paths: tuple[str, ...]) -> None:
        for raw in paths:
            path = self.expand_home(raw)
            if not self.covered(path):
                self.op("ro-bind", path, path, key=key, optional=True)
        present = [p for p in map(self.expand_home, paths) if os.path.exists(p)]
        self.notes.append(f"{key:<13} read-only: {', '.join(present) or 'none present'}")

    def locale_env(self) -> None:
        for name, value in self.env.items():
            if name in LOCALE_ENV or name.startswith("LC_"):
                self.out_env[name] = value

    def user_dirs_piece(self) -> None:
        for name, mode in self.d.user_dirs:
            path = self.vars[name.upper()]
            if path.rstrip("/") in (self.home, ""):
                self.notes.append(f"user dir      {name}: is the home directory itself; skipped")
                continue
            if mode == "rw":
                self.create.append(path)
                self.op("bind", path, path, key="user_dirs")
            else:
                self.op("ro-bind", path, path, key="user_dirs", optional=True)
            self.notes.append(f"user dir      {name} {path} ({mode})")
        config = self.vars["XDG_CONFIG_HOME"]
        for name in ("user-dirs.dirs", "user-dirs.locale"):
            self.op("ro-bind", f"{config}/{name}", f"{config}/{name}", key="user_dirs",
                    optional=True)

    def app_dirs_piece(self) -> None:
        for i, path in enumerate(self.d.app_dirs):
            key = f"app_dirs[{i}]"
            if self.home.startswith(path.rstrip("/") + "/") or path == self.home:
                raise ConfigError(f"app_dirs entry {path} would expose the whole home",
                                  origin=self.origin(key),
                                  hint="name the app's own directories, e.g. ${HOME}/.mozilla")
            self.create.append(path)
            self.app_dirs.append((path, self.origin(key)))
            self.op("bind", path, path, key=key)
        self.notes.append(f"app dirs      {', '.join(self.d.app_dirs)} (read-write, created "
                          "when missing, locked: one sandbox at a time)")

    def build(self) -> DesktopPlan:
        d = self.d
        self.runtime_dir()
        if d.x11 or d.x11_untrusted:
            self.x11_piece()
        if d.wayland:
            self.wayland_piece()
        if d.pulseaudio:
            self.pulseaudio_piece()
        if d.pipewire:
            self.pipewire_piece()
        self.dbus_pieces()
        if d.fonts:
            self.assets("fonts", FONT_PATHS)
        if d.themes:
            self.assets("themes", THEME_PATHS)
        if d.locale:
            self.assets("locale", LOCALE_PATHS)
            self.locale_env()
        if d.user_dirs:
            self.user_dirs_piece()
        if d.app_dirs:
            self.app_dirs_piece()
        if d.gpu:
            self.gpu_piece()
        for skipped in self.skipped:
            self.notes.append(f"SKIPPED       {skipped.piece}: {skipped.message} (optional)")
        return DesktopPlan(
            runtime_dir=self.rt, session_dir=self.session_dir, mount_ops=tuple(self.ops),
            env=tuple(self.out_env.items()), x11=self.x11, proxy_binary=self.proxy_binary,
            proxies=tuple(self.proxies), create_dirs=tuple(dict.fromkeys(self.create)),
            app_dirs=tuple(self.app_dirs),
            notes=tuple(self.notes), problems=tuple(self.problems), skipped=tuple(self.skipped))


def _missing_unix_path(address: str) -> str | None:
    """The socket path of a 'unix:path=...' bus address when that socket does not exist.

    Other transports (unix:abstract=, tcp:) are left to the proxy, which
    connects upstream when a client inside connects.
    """
    first = address.split(";")[0]
    if not first.startswith("unix:"):
        return None
    for part in first[len("unix:"):].split(","):
        key, _, value = part.partition("=")
        if key == "path":
            return None if _is_socket(value) else value
    return None


def _rule_args(rules: DBusRules) -> tuple[str, ...]:
    args = ["--filter"]
    for option, names in (("see", rules.see), ("talk", rules.talk), ("own", rules.own),
                          ("call", rules.call), ("broadcast", rules.broadcast)):
        args += [f"--{option}={name}" for name in names]
    return tuple(args)


def _describe_rules(rules: DBusRules) -> str:
    parts = [f"{label} {', '.join(names)}" for label, names in
             (("see", rules.see), ("talk", rules.talk), ("own", rules.own),
              ("call", rules.call), ("broadcast", rules.broadcast)) if names]
    return "; ".join(parts) or "nothing but the bus itself"


def gpu_devices(dev: str = "/dev") -> list[str]:
    """GPU device nodes present on this host (render/card nodes, NVIDIA nodes)."""
    import glob

    found: list[str] = []
    for pattern in GPU_DEVICE_GLOBS:
        found += sorted(glob.glob(pattern.replace("/dev", dev, 1)))
    return list(dict.fromkeys(found))


def plan_desktop(desktop: Desktop, caller: Caller, uid_inside: int,
                 prior_ops: tuple[MountOp, ...]) -> DesktopPlan:
    """Decide what the desktop pieces add to one sandbox; makes no changes anywhere."""
    return _Builder(desktop, caller, uid_inside, prior_ops).build()
