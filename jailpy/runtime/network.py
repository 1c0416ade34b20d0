"""User-mode networking: slirp4netns and pasta attached to the sandbox's namespaces.

    prepare(plan)    supervisor, before fork: the checks; a NetworkSession
    host_step(pid)   the plan's helper (HELPERS[mode], a HelperProcess) started
    close()          the helper stopped
    (inside, lo is brought up by whoever creates the network namespace: the
    namespace child or pid 1, with linux/syscalls.bring_up_loopback)

The contract, the same for both helpers (docs/network.md):

- checked before anything is forked: the helper is installed, /dev/net/tun
  can be opened;
- started by the supervisor as a host step, once the namespace child has
  unshared and mapped its ids and while it waits for "go"; attached by pid;
- ready within READY_TIMEOUT: slirp4netns writes "1" to --ready-fd; pasta runs
  in the foreground as our own child and writes its pid file, which is a FIFO
  we read. A pidfd on the helper notices a helper that dies instead, and its
  output is shown;
- ports are published before "go": slirp4netns through its API socket
  (add_hostfwd), pasta with -t/-u; a host port in use is a clear error;
- the private directory holding the API socket and the FIFO is removed
  before the sandbox starts, so nothing inside could ever reach the API;
- stopped when the sandbox ends: slirp4netns sees EOF on --exit-fd, pasta gets
  SIGTERM. Both get PDEATHSIG=SIGKILL and run in their own session, so a
  SIGKILLed jailpy leaves no helper behind (slirp4netns' exit fd also reads
  EOF then) and a terminal's ^C reaches only jailpy, which forwards it.
"""

from __future__ import annotations

import errno
import os
import sys
import _signal as signal  # the C module: `signal` would import enum

from ..errors import SetupError
from ..linux import syscalls as sc
from ..plan.network import (DNS_ADDRESS, HOST_ADDRESS, MTU, PREFIX_LENGTH, PROXY_PORT,
                            SANDBOX_ADDRESS)
from ..policy import HELPER_PACKAGES, PROXY_MODE
from ..plan.desktop import session_base
from . import rundir
from .helper import READY_TIMEOUT, HelperProcess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..plan import Plan
    from ..policy import Network, PortMapping

TUN_PATH = "/dev/net/tun"
TUN_HINT = ("as root: chmod 0666 /dev/net/tun (desktop distributions ship it so; make it "
             "last with a udev rule: KERNEL==\"tun\", MODE=\"0666\")")


# --- checks before the fork ------------------------------------------------------------


def find_helper(name: str, path: str | None = None) -> str | None:
    """The helper's path on $PATH (without importing shutil on the start-up path)."""
    for directory in (path if path is not None else os.environ.get("PATH", "")).split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def check_tun(path: str = TUN_PATH) -> str | None:
    """None when the tun device can be opened by this user, else why not."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        return None
    except FileNotFoundError:
        return f"{path} does not exist"
    except PermissionError:
        return f"{path} is not accessible to this user"
    except OSError as exc:
        return f"cannot open {path}: {exc.strerror}"


def require_helper(mode: str) -> str:
    binary = find_helper(mode)
    if binary is None:
        raise SetupError(f"{mode} is not installed (not found on PATH)",
                         origin=f"network.mode = {mode}",
                         hint=f"install the '{HELPER_PACKAGES[mode]}' package "
                         f"(apt install {HELPER_PACKAGES[mode]})")
    problem = check_tun()
    if problem is not None:
        hint = ("load the tun module as root: modprobe tun" if "does not exist" in problem
                else TUN_HINT)
        raise SetupError(f"{mode} needs the tun device, but {problem}",
                         origin=f"network.mode = {mode}", hint=hint)
    return binary


def ipv6_available() -> bool:
    try:
        with open("/proc/sys/net/ipv6/conf/default/disable_ipv6") as f:
            return f.read().strip() == "0"
    except OSError:
        return False


class NetworkSession:
    """The host side of one sandbox's network: the helper, started and stopped."""

    def __init__(self, plan: "Plan") -> None:
        mode = plan.network_helper
        assert mode is not None
        binary = sys.executable if mode == PROXY_MODE else require_helper(mode)
        self.helper = HELPERS[mode](binary, plan.network)

    @property
    def egress_summary(self) -> "dict | None":
        """The proxy's counts once it has stopped (--json-status), else None."""
        return getattr(self.helper, "summary", None)

    def host_step(self, pid: int) -> None:
        self.helper.start(pid)

    def close(self) -> None:
        """Runs when the sandbox has ended, whatever happened."""
        self.helper.stop()


def prepare(plan: "Plan") -> NetworkSession:
    """Checks before the fork (the helper is installed, the tun device opens) and the
    session that starts the plan's network helper.

    (The TCP port rules are part of the sandbox's Landlock ruleset, derived by
    plan/landlock.py and applied by the target with the other privilege layers.)
    """
    return NetworkSession(plan)


# --- helpers ----------------------------------------------------------------------


class NetworkHelper(HelperProcess):
    """A user-mode network helper attached by pid to the sandbox's namespaces."""

    def __init__(self, binary: str, network: "Network") -> None:
        super().__init__(binary)
        self.network = network
        self.workdir: str | None = None

    @property
    def origin(self) -> str:
        return f"network.mode = {self.name}"

    def start(self, target_pid: int) -> None:
        """Spawn, wait for readiness, publish ports; the private dir goes in any case
        (and if jailpy is killed first, the next run sweeps it: runtime/rundir.py)."""
        base = session_base(dict(os.environ), os.getuid())
        rundir.private_base(base, self.origin)
        self.workdir = rundir.fresh_path(base, "net-")
        lock = rundir.claim(self.workdir, self.origin)
        try:
            self.launch(target_pid)
        finally:
            rundir.release(self.workdir, lock)
            self.workdir = None

    def launch(self, target_pid: int) -> None:
        raise NotImplementedError

    def port_error(self, mapping: "PortMapping", detail: str | None) -> SetupError:
        reason = probe_host_port(mapping)
        where = f"{mapping.host_addr}:{mapping.host_port}/{mapping.proto}"
        if reason == errno.EADDRINUSE:
            return SetupError(f"host port {where} is already in use", origin=mapping.origin,
                              hint="choose another host port, or stop the program listening "
                              f"there (ss -lntup 'sport = :{mapping.host_port}')")
        if reason == errno.EACCES:
            return SetupError(f"host port {where} is privileged", origin=mapping.origin,
                              hint="publish on a port >= 1024 (or lower "
                              "net.ipv4.ip_unprivileged_port_start)")
        if reason == errno.EADDRNOTAVAIL:
            return SetupError(f"host address {mapping.host_addr} is not an address of this "
                              "machine", origin=mapping.origin,
                              hint="publish on 127.0.0.1 or one of this machine's addresses")
        return SetupError(f"{self.name} could not publish {where} -> sandbox port "
                          f"{mapping.sandbox_port}: {detail or 'unknown error'}",
                          origin=mapping.origin)


class Slirp4netns(NetworkHelper):
    """Ready when it writes "1" to --ready-fd; stops on EOF of --exit-fd, its lifeline."""

    name = "slirp4netns"

    def command(self, target_pid: int, ready_fd: int, exit_fd: int, api: str) -> list[str]:
        # --enable-sandbox: slirp4netns joins the target's user namespace, becomes
        # id 0 there and pivots into a root holding only /etc and /run. Id 0 is
        # mapped there: the launcher attaches us to a user namespace around the
        # sandbox's that maps the caller to 0 (or, with --map-all, the range has 0).
        argv = [self.name, "--configure", f"--mtu={MTU}",
                f"--cidr={SANDBOX_ADDRESS.rsplit('.', 1)[0]}.0/{PREFIX_LENGTH}",
                "--enable-sandbox", "--enable-seccomp",
                f"--ready-fd={ready_fd}", f"--exit-fd={exit_fd}", f"--api-socket={api}"]
        if not self.network.host_loopback:
            argv.append("--disable-host-loopback")
        if ipv6_available():
            argv.append("--enable-ipv6")
        return [*argv, str(target_pid), "tap0"]

    def launch(self, target_pid: int) -> None:
        assert self.workdir is not None
        api = os.path.join(self.workdir, "api.sock")
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.spawn(self.command(target_pid, ready_w, exit_r, api), (ready_w, exit_r),
                       lifeline=exit_w)
        finally:
            os.close(ready_w)
            os.close(exit_r)
        try:
            if self.wait_ready(ready_r) != b"1":
                raise SetupError(f"{self.name} sent an unexpected readiness message",
                                 origin=self.origin)
        finally:
            os.close(ready_r)
        for mapping in self.network.publish:
            reply = _api_request(api, {"execute": "add_hostfwd", "arguments": {
                "proto": mapping.proto, "host_addr": mapping.host_addr,
                "host_port": mapping.host_port, "guest_port": mapping.sandbox_port}})
            if "return" not in reply:
                detail = reply.get("error", {}).get("desc") if isinstance(reply, dict) else None
                raise self.port_error(mapping, detail)


class Pasta(NetworkHelper):
    """Runs in the foreground as our child; ready when it writes its pid file, a FIFO
    we read; stopped with SIGTERM (it has no lifeline)."""

    name = "pasta"

    def command(self, target_pid: int, pidfile: str) -> list[str]:
        argv = [self.name, "--foreground", "--quiet", "--config-net",
                "--address", SANDBOX_ADDRESS, "--netmask", str(PREFIX_LENGTH),
                "--gateway", HOST_ADDRESS, "--dns-forward", DNS_ADDRESS,
                "--mtu", str(MTU), "--pid", pidfile,
                # Never forward the sandbox's loopback ports to the host's (pasta's
                # default for -T/-U is "auto"), nor host ports we were not asked for.
                "--tcp-ns", "none", "--udp-ns", "none"]
        for proto, flag in (("tcp", "--tcp-ports"), ("udp", "--udp-ports")):
            specs = [f"{m.host_addr}/{m.host_port}:{m.sandbox_port}"
                     for m in self.network.publish if m.proto == proto]
            for spec in specs or ["none"]:
                argv += [flag, spec]
        if not self.network.host_loopback:
            argv.append("--no-map-gw")
        return [*argv, str(target_pid)]

    def launch(self, target_pid: int) -> None:
        assert self.workdir is not None
        fifo = os.path.join(self.workdir, "ready")
        os.mkfifo(fifo, 0o600)
        ready = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.spawn(self.command(target_pid, fifo))
            try:
                data = self.wait_ready(ready)
            except SetupError:
                if self.pid is None:  # it died: a busy host port is the usual reason
                    for mapping in self.network.publish:
                        if probe_host_port(mapping) is not None:
                            raise self.port_error(mapping, None) from None
                raise
        finally:
            os.close(ready)
        if data.strip() != str(self.pid).encode():
            self.stop()
            raise SetupError(f"{self.name} did not stay in the foreground (pid file: "
                             f"{data.strip().decode(errors='replace')!r})", origin=self.origin)


class EgressProxy(NetworkHelper):
    """network.mode = "proxy": jailpy's own proxy (runtime/egress.py) in a process of
    its own on the host, serving a socket that listens inside the sandbox.

    Nothing is attached to the sandbox's network namespace but that one listening
    socket, so the sandbox keeps loopback only and no route. A child of ours joins
    the namespace (the user namespace around the sandbox's that owns it, then the
    network namespace), binds 127.0.0.1:PROXY_PORT there, hands the socket over
    and exits; the proxy, which never joins anything, accepts on it.

    The proxy is started by prepare(), before the sandbox is forked, so that its
    interpreter starts while the sandbox is being built; start() sends it the
    listening socket over its control socket (SCM_RIGHTS). Connections wait in
    the listen backlog until it accepts, so nothing waits for it. The control
    socket is also its lifeline: closing it (stop(), or the kernel when jailpy
    dies) stops it; PDEATHSIG covers a jailpy killed outright.
    """

    name = "egress proxy"

    def __init__(self, binary: str, network: "Network") -> None:
        import json
        import socket

        super().__init__(binary, network)
        self.summary: dict | None = None
        self.log_fd = self._open_log(network.egress_log)
        self.summary_fd = os.memfd_create("jailpy-egress-summary", os.MFD_CLOEXEC)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {"control_fd": theirs.fileno(), "summary_fd": self.summary_fd,
                  "allow_hosts": list(network.allow_hosts),
                  "log_fd": self.log_fd if self.log_fd >= 0 else None}
        keep = tuple(fd for fd in (theirs.fileno(), self.summary_fd, self.log_fd) if fd >= 0)
        try:
            self.spawn([binary, "-I", "-m", "jailpy.runtime.egress", json.dumps(config)], keep)
        except BaseException:
            self.stop()
            raise
        finally:
            theirs.close()

    @property
    def origin(self) -> str:
        return f"network.mode = {PROXY_MODE}"

    def _open_log(self, path: str | None) -> int:
        """Opened before anything is forked, so a bad path fails early; never through
        a symbolic link (the sandbox may be able to plant one in a shared dir)."""
        if path is None:
            return -1
        if path == "-":
            return os.dup(2)
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                           | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise SetupError(f"cannot open the egress log {path}: {exc.strerror}",
                             origin="network.egress_log / --egress-log") from None

    def start(self, target_pid: int) -> None:
        import socket

        listener = self._listen_inside(target_pid)
        try:
            socket.send_fds(self.control, [b"listen"], [listener])
        except OSError as exc:  # the proxy is gone: say what it printed
            raise self.died() if self.pid is not None else SetupError(
                f"the egress proxy is not running: {exc.strerror}", origin=self.origin)
        finally:
            os.close(listener)

    def _terminate(self) -> None:
        """Closing the control socket is the proxy's signal to stop."""
        if self.control is not None:
            self.control.close()
            self.control = None
        elif self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)

    def _listen_inside(self, target_pid: int) -> int:
        """A TCP socket listening on 127.0.0.1:PROXY_PORT in target_pid's network
        namespace, made by a child of ours that joins it (setns needs a
        single-threaded process, and a process that joined cannot come back)."""
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours, theirs:
            pid = os.fork()
            if pid == 0:
                _make_listener(target_pid, theirs)
            theirs.close()
            ours.settimeout(READY_TIMEOUT)
            try:
                message, fds, _, _ = socket.recv_fds(ours, 512, 1)
            except OSError as exc:
                message, fds = f"no answer: {exc}".encode(), []
            os.waitpid(pid, 0)
        if not fds:
            raise SetupError("cannot open the egress proxy's port in the sandbox: "
                             + message.decode(errors="replace"), origin=self.origin)
        return fds[0]

    def stop(self) -> None:
        """Stop the proxy (it writes its summary first), then read the summary."""
        super().stop()
        if self.summary_fd >= 0:
            import json

            data = os.pread(self.summary_fd, 1 << 20, 0)
            os.close(self.summary_fd)
            self.summary_fd = -1
            try:
                self.summary = json.loads(data) if data else None
            except ValueError:
                self.summary = None
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1


def _make_listener(target_pid: int, channel: "object") -> None:
    """In a forked child: join the sandbox's network namespace, listen, hand the
    socket over on `channel`; never returns."""
    import socket

    try:
        for kind, flag in (("user", sc.CLONE_NEWUSER), ("net", sc.CLONE_NEWNET)):
            fd = os.open(f"/proc/{target_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
            sc.setns(fd, flag)
            os.close(fd)
        sc.bring_up_loopback()  # up already, unless pid 1 is still to do it (--map-all)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", PROXY_PORT))
        listener.listen(128)
        socket.send_fds(channel, [b"ok"], [listener.fileno()])  # type: ignore[arg-type]
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - the parent words the error
        try:
            channel.send(str(exc).encode()[:500])  # type: ignore[attr-defined]
        finally:
            os._exit(1)


#: The helper of each network mode that needs one (every HELPER_MODES entry, and
#: the proxy mode): a new helper is one NetworkHelper subclass and one line here.
HELPERS: dict[str, type[NetworkHelper]] = {"slirp4netns": Slirp4netns, "pasta": Pasta,
                                           PROXY_MODE: EgressProxy}


# --- small host-side utilities ------------------------------------------------------


def _api_request(path: str, request: dict) -> dict:
    """One slirp4netns API call: send, shut down writing, read the reply."""
    import json
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(READY_TIMEOUT)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {"error": {"desc": b"".join(chunks).decode(errors="replace")}}
    return reply if isinstance(reply, dict) else {"error": {"desc": repr(reply)}}


def probe_host_port(mapping: "PortMapping") -> int | None:
    """errno of binding the host side of a mapping ourselves (None: it is free)."""
    import socket

    kind = socket.SOCK_STREAM if mapping.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((mapping.host_addr, mapping.host_port))
        except OSError as exc:
            return exc.errno
    return None
