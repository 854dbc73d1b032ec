"""Terminals for containers: receive a pty master over a console socket, then pump it.

When a process has ``terminal: true``, the runtime allocates a pseudo-terminal *inside* the
container (its own devpts) and sends the master side to us over a Unix socket with
``SCM_RIGHTS`` (runc/crun's ``--console-socket`` protocol, which the native helper speaks
too). :class:`ConsoleSocket` listens for it; :func:`pump` copies the caller's stdin to the
master and the master to the caller's stdout until the container side closes.

Invariants: the socket file lives in a private (0700) temporary directory, below the given
parent or the system temp dir when that path is too long for a socket, removed on close;
:class:`ConsoleSocket` is a context manager and closes everything it opened; ``pump`` never
closes the caller's fds; a window size is copied from the caller's stdin when it is a tty.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import shutil
import subprocess
import tempfile
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from lamina.errors import ContainerError

# socket is imported by the classes and functions that use it: a container without a
# terminal (run without -t, every build RUN) never loads it.

#: window size given to a pty when the caller's stdin is not a terminal
DEFAULT_ROWS, DEFAULT_COLUMNS = 24, 80
#: longest directory for the socket; beyond it a private directory in the temp dir is used
MAX_PARENT = 70
#: seconds to wait for the runtime to hand over the pty
ACCEPT_TIMEOUT = 30.0


class ConsoleSocket:
    """A listening Unix socket that receives one pty master fd."""

    def __init__(self, parent: Path) -> None:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if len(os.fsencode(parent)) > MAX_PARENT:  # sun_path holds 108 bytes
            parent = Path(tempfile.gettempdir())
        self._dir = Path(tempfile.mkdtemp(prefix="lamina-console-", dir=parent))
        self.path = self._dir / "sock"
        import socket

        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(1)

    def __enter__(self) -> ConsoleSocket:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket and remove its directory. Idempotent."""
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def receive(self, proc: subprocess.Popen[bytes], window_from: int | None = None) -> int:
        """The master fd sent by the runtime; ContainerError if ``proc`` exits first or hangs.

        The pty gets ``window_from``'s window size (see :func:`copy_window_size`). The caller
        owns the returned fd.
        """
        from socket import recv_fds

        waited = 0.0
        while True:
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if ready:
                break
            waited += 0.1
            if proc.poll() is not None or waited > ACCEPT_TIMEOUT:
                raise ContainerError("allocating a terminal: the runtime sent no console")
        conn, _ = self._sock.accept()
        with conn:
            conn.settimeout(ACCEPT_TIMEOUT)
            _, fds, _, _ = recv_fds(conn, 4096, 4)
            if not fds:
                raise ContainerError("allocating a terminal: no file descriptor received")
            for extra in fds[1:]:
                os.close(extra)
        copy_window_size(window_from, fds[0])
        return fds[0]


@contextlib.contextmanager
def stdio_fd(stdio: object, default: int, *, write: bool) -> Iterator[int | None]:
    """The fd behind a :data:`~lamina.runtime.model.Stdio` value, for the pty pump.

    None means the caller's own ``default`` fd; ``subprocess.DEVNULL`` means no input (None)
    or a /dev/null opened for the block; an int is used as is; a file object by ``fileno()``.
    """
    if stdio is None:
        yield default
    elif stdio == subprocess.DEVNULL:
        if not write:
            yield None
            return
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
    elif isinstance(stdio, int):
        yield stdio
    else:
        fileno = getattr(stdio, "fileno", None)
        if fileno is None:
            raise ContainerError("terminal: standard streams must be files or fds")
        yield int(fileno())


def send_console(path: str, master: int) -> None:
    """Send ``master`` over the console socket at ``path`` (the runtime's side)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        socket.send_fds(sock, [b"console"], [master])


def copy_window_size(source: int | None, master: int) -> None:
    """Give the pty the window size of ``source`` when it is a terminal, else 24x80."""
    size = array.array("H", [DEFAULT_ROWS, DEFAULT_COLUMNS, 0, 0])
    with contextlib.suppress(OSError):
        if source is not None and os.isatty(source):
            fcntl.ioctl(source, termios.TIOCGWINSZ, size, True)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


def _copy_in(src: int, master: int) -> None:
    with contextlib.suppress(OSError):
        while data := os.read(src, 65536):
            os.write(master, data)


def pump(master: int, stdin: int | None, stdout: int | None) -> threading.Thread:
    """Copy ``stdin`` -> ``master`` (daemon thread) and ``master`` -> ``stdout`` (returned thread).

    The returned thread ends when the container's side of the pty closes (EIO); join it after
    the runtime exits. Neither fd passed in is closed; ``master`` is closed by the caller.
    """
    if stdin is not None:
        threading.Thread(target=_copy_in, args=(stdin, master), daemon=True).start()

    def copy_out() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(master, 65536):
                if stdout is not None:
                    os.write(stdout, data)

    out = threading.Thread(target=copy_out, daemon=True)
    out.start()
    return out
