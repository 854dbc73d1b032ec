"""Inter-process locks with ``flock(2)``: several lamina processes share one store, no daemon.

Invariant: a lock is released when its file descriptor closes, so a ``kill -9`` never leaves
a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from lamina.errors import LockTimeout


@contextlib.contextmanager
def flocked(path: Path, *, shared: bool = False, timeout: float = 300.0) -> Iterator[None]:
    """Hold an exclusive (or shared) flock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"timed out after {timeout:.0f}s waiting for lock {path}",
                        hint="another lamina process holds the store; retry when it finishes",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)
