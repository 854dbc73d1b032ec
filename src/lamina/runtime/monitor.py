"""The per-container monitor (lamina's conmon): start a container, log its output, wait for it.

:func:`supervise` runs in the process that watches one container — the CLI itself for an
attached ``run``, or a detached monitor made by :func:`daemonize` for ``run -d``/``start``:

- with an OCI runtime and no terminal, the runtime's foreground ``run --pid-file`` is the
  only runtime execution (:meth:`OCIRuntime.run_watched`): the pid is reported when the pid
  file appears (:mod:`lamina.runtime.pidwatch`), the runtime exits with the process's status
  and has deleted its container by then (``run --detach`` + ``waitpid`` + ``delete`` cost a second
  runtime execution, ~10 ms);
- otherwise (a terminal, the native runtime) the runtime's foreground ``run`` is used in a
  thread, and the pid is learned by polling the runtime's state;
- stdout and stderr go through pipes into a :class:`JsonLog` (Docker's json-file format:
  one ``{"log", "stream", "time"}`` object per line) and, when attached, to the caller's fds.

``on_started(pid)`` is called once the container's process runs (never if it failed to
start); :func:`supervise` returns the process's status (128+N for signal N) and always
deletes the runtime's container before returning. Nothing here knows about the store: the
caller records state and cleans up in its own callbacks.

Invariants: :func:`daemonize` forks twice with ``setsid`` so the monitor is re-parented to
init (or the nearest subreaper) and outlives the CLI; the CLI never forks while holding a
lock (an inherited flock would be held by the monitor too). Log lines are appended with one
``write`` each, so concurrent readers (``logs -f``) only ever see whole lines.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lamina.errors import ContainerError
from lamina.runtime.bundle import Bundle
from lamina.runtime.model import Runtime
from lamina.runtime.oci_runtime import OCIRuntime

CHUNK = 1 << 16
#: seconds to wait for output pipes to drain after the container's init exited
DRAIN_TIMEOUT = 5.0


def now_rfc3339() -> str:
    """The current UTC time with nanoseconds, as Docker writes it (``...T...123456789Z``)."""
    return rfc3339_ns(time.time_ns())


def rfc3339_ns(ns: int) -> str:
    """``ns`` (nanoseconds since the epoch) as UTC with nine fractional digits: the one format
    of lamina's record and log times, so they compare as strings."""
    base = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    return base.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


class JsonLog:
    """Appends Docker json-file entries to ``path`` (thread-safe; one write per line)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._lock = threading.Lock()
        self._partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        """Log ``data``; complete lines are written now, a trailing partial line is kept."""
        with self._lock:
            buf = self._partial.pop(stream, b"") + data
            *lines, rest = buf.split(b"\n")
            for line in lines:
                self._emit(stream, line + b"\n")
            if rest:
                self._partial[stream] = rest

    def _emit(self, stream: str, line: bytes) -> None:
        doc = {"log": line.decode("utf-8", "replace"), "stream": stream, "time": now_rfc3339()}
        os.write(self._fd, (json.dumps(doc) + "\n").encode())

    def close(self) -> None:
        """Flush partial lines and close (idempotent)."""
        with self._lock:
            for stream, rest in self._partial.items():
                self._emit(stream, rest)
            self._partial.clear()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _pump(fd: int, stream: str, log: JsonLog, forward: int | None) -> threading.Thread:
    def run() -> None:
        try:
            while data := os.read(fd, CHUNK):
                log.write(stream, data)
                if forward is not None:
                    with contextlib.suppress(OSError):
                        _write_all(forward, data)
        finally:
            os.close(fd)

    thread = threading.Thread(target=run, name=f"log-{stream}", daemon=True)
    thread.start()
    return thread


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def supervise(
    runtime: Runtime, bundle: Bundle, container_id: str, *, log: JsonLog,
    on_started: Callable[[int], None], stdin: int | None = None, terminal: bool = False,
    forward_out: int | None = None, forward_err: int | None = None, checked: bool = False,
) -> int:  # fmt: skip
    """Run the container to its end (see the module docstring); return its status.

    ``stdin`` is an fd the container reads (None: /dev/null). The caller owns ``log`` and the
    forward fds. ``checked``: the caller already resolved the command in the bundle's rootfs
    (:func:`lamina.runtime.resolve_command`). Raises ContainerError (or CommandNotFound/...)
    when it cannot start.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pumps = [_pump(out_r, "stdout", log, forward_out), _pump(err_r, "stderr", log, forward_err)]
    try:
        if isinstance(runtime, OCIRuntime) and not terminal:
            status = runtime.run_watched(
                bundle, container_id, on_started=on_started, stdin=stdin, stdout=out_w,
                stderr=err_w, checked=checked,
            )  # fmt: skip
        else:
            status = _run_foreground(runtime, bundle, container_id, stdin, out_w, err_w, on_started)
    finally:
        for fd in (out_w, err_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        for t in pumps:
            t.join(DRAIN_TIMEOUT)
        with contextlib.suppress(ContainerError, OSError, subprocess.SubprocessError):
            runtime.delete(container_id, force=True, bundle=bundle)
    return status


def _run_foreground(
    runtime: Runtime, bundle: Bundle, container_id: str, stdin: int | None, out_w: int,
    err_w: int, on_started: Callable[[int], None],
) -> int:  # fmt: skip
    result: list[int] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(
                runtime.run(
                    bundle,
                    container_id,
                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                    stdout=out_w,
                    stderr=err_w,
                )
            )
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="runtime-run", daemon=True)
    thread.start()
    started = False
    delay = 0.005
    while thread.is_alive():
        if not started:
            with contextlib.suppress(ContainerError, OSError, subprocess.SubprocessError):
                st = runtime.state(container_id)
                if st.status == "running" and st.pid > 0:
                    on_started(st.pid)
                    started = True
        thread.join(delay if not started else 0.5)
        delay = min(delay * 2, 0.1)
    if failure:
        raise failure[0]
    return result[0]


def daemonize(body: Callable[[int], None]) -> tuple[int, int]:
    """Fork a detached monitor running ``body(report_fd)``; return (monitor pid, read fd).

    The monitor is a grandchild in its own session with stdio on /dev/null; ``report_fd`` is
    the write end of a pipe whose read end is returned (the caller reads the monitor's start
    report from it and closes it). The monitor exits with status 0 when ``body`` returns.
    """
    r, w = os.pipe()
    pid_r, pid_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked children
        code = 0
        try:
            os.close(r)
            os.close(pid_r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.write(pid_w, str(os.getpid()).encode())
            os.close(pid_w)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
            body(w)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    os.close(pid_w)
    os.waitpid(child, 0)
    with os.fdopen(pid_r, "rb") as f:
        data = f.read()
    if not data:
        os.close(r)
        raise ContainerError("starting the container monitor: it did not start")
    return int(data), r
