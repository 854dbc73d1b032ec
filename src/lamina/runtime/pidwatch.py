"""Wait for a foreground runtime process and learn its container's pid on the way.

``runc run --pid-file F`` (crun likewise) writes F once the container's process exists, then
waits for that process, deletes the container and exits with its status (128+N for signal N).
:class:`PidFileWatch` waits for both events in one ``poll(2)``: an inotify watch on F's
directory (F appears by rename, or is closed after writing) and a pidfd of the runtime
process. So a foreground run needs no second runtime execution (``state`` or ``delete``),
no polling loop and no thread to report the pid.

Invariants: the watch is made *before* the runtime starts (:meth:`PidFileWatch.__init__`), and
F is checked before every wait, so a pid file written at any moment is seen; ``on_pid`` is
called at most once, with a positive pid, before :meth:`PidFileWatch.wait` returns — also when
the runtime exited before the watcher woke up. Without inotify or pidfds (old kernels) it
falls back to a short sleep loop with the same results.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
from collections.abc import Callable
from pathlib import Path

from lamina.runtime import linux

#: seconds between checks when inotify or pidfd_open is unavailable
FALLBACK_INTERVAL = 0.005


class PidFileWatch:
    """Watches for ``pidfile`` (made before the runtime is started; close it, or use ``with``)."""

    def __init__(self, pidfile: Path) -> None:
        self.pidfile = pidfile
        self._fd = -1
        with contextlib.suppress(OSError, AttributeError):
            fd = linux.inotify_init1(linux.IN_NONBLOCK | linux.IN_CLOEXEC)
            try:
                linux.inotify_add_watch(
                    fd, str(pidfile.parent), linux.IN_MOVED_TO | linux.IN_CLOSE_WRITE
                )
            except OSError:
                os.close(fd)
                raise
            self._fd = fd

    def __enter__(self) -> PidFileWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the inotify fd (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read_pid(self) -> int:
        """The pid in the file, 0 while it is missing or incomplete."""
        try:
            pid = int(self.pidfile.read_bytes().strip() or b"0")
        except (OSError, ValueError):
            return 0
        return max(pid, 0)

    def wait(self, proc: subprocess.Popen[bytes], on_pid: Callable[[int], None]) -> int:
        """Wait for ``proc`` to exit, calling ``on_pid(pid)`` once the pid file is written.

        Returns ``proc``'s return code (negative for a signal, as :class:`subprocess.Popen`).
        """
        pidfd = -1
        with contextlib.suppress(OSError, AttributeError):
            pidfd = os.pidfd_open(proc.pid)
        try:
            poller = select.poll()
            for fd in (self._fd, pidfd):
                if fd >= 0:
                    poller.register(fd, select.POLLIN)
            reported = False
            while True:
                if not reported and (pid := self.read_pid()) > 0:
                    on_pid(pid)
                    reported = True
                if proc.poll() is not None:
                    break
                blocking = pidfd >= 0 and (reported or self._fd >= 0)
                poller.poll(None if blocking else int(FALLBACK_INTERVAL * 1000))
                self._drain()
            if not reported and (pid := self.read_pid()) > 0:
                on_pid(pid)
            return int(proc.returncode)
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def _drain(self) -> None:
        """Empty the inotify queue (the events themselves are not needed: F is re-read)."""
        if self._fd >= 0:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while os.read(self._fd, 4096):
                    pass
