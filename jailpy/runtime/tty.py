"""The sandbox's own terminal: a pseudo-terminal from its own devpts, relayed.

When stdin is a terminal (plan.tty), the command does not get the caller's
terminal but a pseudo-terminal allocated from the sandbox's own devpts
instance, as `docker run -t`, `systemd-run --pty` and `machinectl shell` do.
The shell inside has job control and a /dev/tty, `tty` names /dev/pts/0, and
no process inside holds a descriptor of the host terminal: TIOCSTI or
TIOCLINUX on the inner pty only ever reach the inner pty, with or without
seccomp. Standard descriptors that are not the terminal (a redirected stdout,
a pipe on stderr) are passed through untouched, so `jailpy run -- cmd > file`
writes the command's bytes, not a terminal's.

    prepare(plan)     supervisor, before fork: remember the host terminal's
                      modes and window size, open the control socket, put the
                      host terminal in raw mode (a jailpy started in the
                      background first stops on SIGTTOU until `fg`, before
                      any sandbox exists, like any job setting its terminal),
                      take SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT and SIGWINCH
    host_step(pid)    supervisor, after fork: start the relay thread
    detach()          pid 1, before the root is built: /dev/null replaces the
                      host terminal on its descriptors
    provide()         pid 1, in the new root: open /dev/ptmx, give the slave
                      the host terminal's modes and size, send the master to
                      the supervisor, keep the slave where the terminal was
                      and lead its session (the slave is its controlling terminal)
    apply()           target, in a process group of its own: the pty's
                      foreground group
    close()           supervisor, on every exit path: stop relaying, restore
                      the host terminal's modes and the signal handlers

Job control, as for any foreground job. In raw mode Ctrl-C, Ctrl-\\ and
Ctrl-Z are plain bytes; the inner pty's line discipline turns them into
signals for its own foreground process group, so an inner shell's jobs behave
as they would at the host terminal. When the command jailpy started stops
(Ctrl-Z of `make`, `sh -c ...`), pid 1 says so on the control socket and the
relay sends SIGTSTP to jailpy's process group, as the host terminal would
have; jailpy's handler restores the terminal, has pid 1 stop the command's
group, and stops itself, so the host shell gets its prompt back. `fg` sends
SIGCONT: raw mode again (if jailpy is in the foreground), the window size
re-read, and SIGCONT to pid 1, which continues the command's group.

A jailpy in the background cannot read the host terminal: the relay thread
blocks every signal, so the kernel answers its read with EIO instead of
stopping it, and the relay then sends SIGTTIN to jailpy's process group,
which stops (sandbox included) like any background job reading a terminal.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import _signal as signal  # the C module: `signal` would import enum
import _socket
import sys
import termios
import threading
import time

from ..errors import SetupError
from ..linux import syscalls as sc
from ..plan import Plan

#: pid 1 -> supervisor on the control socket: the command stopped.
STOPPED = b"T"
_MASTER = b"M"
_CHUNK = 65536
#: How long close() waits for the relay to drain what the sandbox wrote last.
_DRAIN_SECONDS = 2.0


def prepare(plan: Plan) -> "Terminal":
    """Take over the host terminal on stdin for this run (plan.tty is set)."""
    return Terminal(0)


class Terminal:
    """One run's pseudo-terminal: the host side and the two steps inside."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        _wait_for_foreground(fd)
        self.modes = termios.tcgetattr(fd)  # the shell's modes for jobs, not its line editor's
        self.size = _window_size(fd)
        terminal = os.fstat(fd).st_rdev
        #: The standard descriptors that are this terminal; the others pass through.
        self.fds = tuple(n for n in (0, 1, 2) if _is_terminal(n, terminal))
        #: Where the sandbox's output goes on the host: a writable terminal descriptor.
        self.out = next((n for n in (1, 2) if n in self.fds), fd)
        self.host_end, self.inner_end = _socket.socketpair(
            _socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        self.master = -1
        self.pid1: int | None = None
        self.raw = False
        self.relay: threading.Thread | None = None
        self.saved: dict[int, object] = {}
        self._enter_raw()
        self._take_signals()

    # --- supervisor ---------------------------------------------------------------

    def host_step(self, pid: int) -> None:
        """Start relaying; the relay thread blocks every signal, so the handlers
        run in the main thread (and promptly, interrupting its waits)."""
        self.inner_end.close()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self.relay = threading.Thread(target=self._relay, name="jailpy-tty", daemon=True)
            self.relay.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def started(self, pid1: int) -> None:
        """pid 1 is running: the target of SIGTSTP and SIGCONT from now on."""
        self.pid1 = pid1

    def close(self) -> None:
        """After the sandbox ended (or failed): the relay drains what it wrote
        last, then the host terminal gets its modes and handlers back."""
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        self.saved.clear()
        if self.relay is not None:
            self.relay.join(_DRAIN_SECONDS)
        self._leave_raw()
        self.host_end.close()
        self.inner_end.close()

    def _enter_raw(self) -> None:
        """Raw mode on the host terminal (set again after every stop: the host
        shell restores its own modes when it takes the terminal back)."""
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = self.modes
        raw = [iflag & ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP
                         | termios.IXON | termios.IGNBRK | termios.PARMRK | termios.INLCR
                         | termios.IGNCR),
               oflag & ~termios.OPOST,
               (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8,
               lflag & ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                         | termios.IEXTEN),
               ispeed, ospeed, list(cc)]
        raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
        _set_modes(self.fd, raw)
        self.raw = True

    def _leave_raw(self) -> None:
        """The modes the terminal had before jailpy, if they are still ours to restore
        (in the background, the shell in the foreground owns them)."""
        if self.raw and self._foreground():
            _set_modes(self.fd, self.modes)
        self.raw = False

    def _foreground(self) -> bool:
        return _foreground(self.fd)

    def _take_signals(self) -> None:
        handlers = {signal.SIGTSTP: self._suspend, signal.SIGTTIN: self._suspend,
                    signal.SIGTTOU: self._suspend, signal.SIGCONT: self._resume,
                    signal.SIGWINCH: self._resize}
        try:
            for sig, handler in handlers.items():
                self.saved[sig] = signal.signal(sig, handler)
        except ValueError:
            pass  # not the main thread: the relay still works, without job control

    def _suspend(self, sig: int, frame: object) -> None:
        """Stop as a job: terminal restored, the command stopped, then jailpy."""
        self._leave_raw()
        self._signal_pid1(signal.SIGTSTP)  # pid 1 stops the command's process group
        signal.signal(sig, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), sig)  # stopped here until SIGCONT
        finally:
            signal.signal(sig, self._suspend)
        # An orphaned process group ignores stop signals: then nothing stopped,
        # and the sandbox must go on. After a real stop this repeats SIGCONT's work.
        self._resume(signal.SIGCONT, None)

    def _resume(self, sig: int, frame: object) -> None:
        if self._foreground():
            self._enter_raw()
            self._resize(sig, frame)
        self._signal_pid1(signal.SIGCONT)  # pid 1 continues the command's process group

    def _resize(self, sig: int, frame: object) -> None:
        """The host window's size onto the pty: the kernel sends SIGWINCH inside."""
        self.size = _window_size(self.fd)
        if self.master >= 0:
            try:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, self.size)
            except OSError:
                pass

    def _signal_pid1(self, sig: int) -> None:
        if self.pid1 is not None:
            try:
                os.kill(self.pid1, sig)
            except ProcessLookupError:
                pass

    def _relay(self) -> None:
        """The relay thread: host terminal <-> pty master, and pid 1's notices."""
        try:
            master = self._receive_master()
            if master is not None:
                self.master = master
                self._resize(signal.SIGWINCH, None)
                self._pump(master)
        except OSError:
            pass  # the host terminal or the sandbox went away: nothing left to relay
        finally:
            master, self.master = self.master, -1
            if master >= 0:
                os.close(master)

    def _receive_master(self) -> int | None:
        _, ancillary, _, _ = self.host_end.recvmsg(1, _socket.CMSG_SPACE(4),
                                                   _socket.MSG_CMSG_CLOEXEC)
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                return int.from_bytes(data[:4], sys.byteorder)
        return None  # pid 1 ended before it made the pty (its error is on the report pipe)

    def _pump(self, master: int) -> None:
        """Copy until the pty has no slave left (EIO on the master). Typed input
        waits in `pending` while the pty's input queue is full, and the host
        terminal is not read meanwhile: nothing blocks both ways. The master is
        drained before the next poll (its reads come in pieces of a few KiB)."""
        os.set_blocking(master, False)
        control, notices = self.host_end.fileno(), True
        poller = select.poll()
        watched: dict[int, int] = {}
        pending = b""
        reading = True
        while True:
            _watch(poller, watched, master, select.POLLIN | (select.POLLOUT if pending else 0))
            _watch(poller, watched, control, select.POLLIN if notices else 0)
            _watch(poller, watched, self.fd, select.POLLIN if reading and not pending else 0)
            for fd, events in poller.poll():
                if fd == master:
                    if events & select.POLLOUT and pending:
                        pending = pending[_write_some(master, pending):]
                    if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        while (data := _read(master)):
                            _write_all(self.out, data)
                        if data == b"":
                            return
                elif fd == control:
                    notice = os.read(control, 16)
                    if not notice:
                        notices = False  # pid 1 is gone; the master's EIO follows
                    elif notice == STOPPED:
                        os.kill(0, signal.SIGTSTP)  # as the host terminal's Ctrl-Z would
                else:
                    try:
                        data = os.read(self.fd, _CHUNK)
                    except OSError as exc:
                        if exc.errno != errno.EIO:
                            raise
                        if not _background(self.fd):
                            reading = False  # hung up: SIGHUP reaches the sandbox as usual
                            continue
                        os.kill(0, signal.SIGTTIN)  # a background job reading its terminal
                        time.sleep(0.05)  # the main thread's handler stops the process
                        continue
                    if data:
                        pending += data
                    else:
                        reading = False

    # --- pid 1 --------------------------------------------------------------------

    def detach(self) -> None:
        """pid 1: let go of the host terminal; the sandbox never gets a descriptor of it."""
        self.host_end.close()
        null = os.open("/dev/null", os.O_RDWR)
        for n in self.fds:
            os.dup2(null, n)
        os.close(null)

    def provide(self) -> None:
        """pid 1, inside the new root: a pty from the sandbox's own devpts."""
        try:
            master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise SetupError(f"cannot open /dev/ptmx inside the sandbox: {exc.strerror}",
                             origin="process.tty / --tty",
                             hint="the sandbox needs a /dev of its own (a 'dev' mount), "
                                  "or use --no-tty") from None
        try:
            fcntl.ioctl(master, sc.TIOCSPTLCK, (0).to_bytes(4, sys.byteorder))
            slave = fcntl.ioctl(master, sc.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            try:
                termios.tcsetattr(slave, termios.TCSANOW, self.modes)
                fcntl.ioctl(slave, termios.TIOCSWINSZ, self.size)
                self.inner_end.sendmsg([_MASTER], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                    master.to_bytes(4, sys.byteorder))])
                for n in self.fds:
                    os.dup2(slave, n)
            finally:
                os.close(slave)
        finally:
            os.close(master)
        # pid 1 leads the pty's session, as a login shell's parent would, and the
        # command's group is its foreground group: a session leader's own group
        # is orphaned and would ignore Ctrl-Z.
        os.setsid()
        fcntl.ioctl(self.fds[0], termios.TIOCSCTTY, 0)

    def stopped(self) -> None:
        """pid 1: the command stopped; the supervisor stops as a job."""
        try:
            os.write(self.inner_end.fileno(), STOPPED)
        except OSError:
            pass

    # --- target -------------------------------------------------------------------

    def apply(self) -> None:
        """Target, in a process group of its own: the pty's foreground group (set
        before execve, so the command never reads as a background job)."""
        self.inner_end.close()
        previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(self.fds[0], os.getpgrp())
        finally:
            signal.signal(signal.SIGTTOU, previous)


def _is_terminal(fd: int, terminal: int) -> bool:
    try:
        return os.isatty(fd) and os.fstat(fd).st_rdev == terminal
    except OSError:
        return False


def _foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _background(fd: int) -> bool:
    """Another process group has the terminal (not: the terminal hung up)."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        return False


def _wait_for_foreground(fd: int) -> None:
    """Started in the background, stop as any job does that sets its terminal's
    modes (SIGTTOU) until the shell brings it to the foreground with `fg`."""
    while not _foreground(fd):
        try:
            termios.tcsetattr(fd, termios.TCSADRAIN, termios.tcgetattr(fd))
        except termios.error as exc:
            if exc.args[0] == errno.EINTR:
                continue  # continued (SIGCONT's handler ran): look again
            error = exc.args[-1]
        else:
            error = "SIGTTOU is ignored or blocked"
        if not _foreground(fd):  # an orphaned process group, or SIGTTOU ignored
            raise SetupError(f"jailpy is not in the foreground of its terminal ({error})",
                             origin="process.tty / --tty",
                             hint="run it in the foreground, or with --no-tty")


def _window_size(fd: int) -> bytes:
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return b"\0" * 8


def _set_modes(fd: int, modes: list) -> None:
    """tcsetattr, again after EINTR (a stop on SIGTTOU ends with our SIGCONT handler)."""
    for _ in range(100):
        try:
            termios.tcsetattr(fd, termios.TCSADRAIN, modes)
            return
        except termios.error as exc:
            if exc.args[0] != errno.EINTR:
                return  # the terminal is gone: there is nothing left to restore
    return


def _watch(poller: "select.poll", watched: dict[int, int], fd: int, events: int) -> None:
    """(Re-)register fd for `events` (0: not at all) when that changed."""
    if watched.get(fd, 0) == events:
        return
    if events:
        poller.register(fd, events)
        watched[fd] = events
    else:
        poller.unregister(fd)
        del watched[fd]


def _read(fd: int) -> bytes | None:
    """From the master: b"" once no slave is left (EIO), None when nothing is there yet."""
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def _write_some(fd: int, data: bytes) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
