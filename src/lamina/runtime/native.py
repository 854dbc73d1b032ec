"""The native runtime: namespaces + pivot_root from Python, for hosts without runc or crun.

The work happens in a helper process (:mod:`lamina.runtime.nsinit`, started with
``sys.executable -P -m``), so the caller never forks itself nor changes its own namespaces.
This class keeps the state: ``<state_root>/<id>/state.json`` (``pid``, ``starttime``,
``bundle``) and ``exit.json`` (written by the helper when the container's process exits).

Status: ``stopped`` once ``exit.json`` exists or the recorded pid is gone or reused (the
start time in ``/proc/<pid>/stat`` is compared), ``running`` while it lives, ``creating``
before the pid is known.

Requires root (mount and pid namespaces without a user namespace). Compared with runc it has
no cgroups (no resource limits), no seccomp/AppArmor and no user namespaces;
``/sys/fs/cgroup`` shows cgroup2 read-only. Terminals work in the foreground (run and exec)
through the same console-socket handover as runc (:mod:`lamina.runtime.console`).
Everything else in the config (mounts, devices, masked and read-only paths, hostname, network
none/host, rlimits, capabilities, uid/gid/groups, no_new_privs) is applied.

Invariants: the host's mount table is never changed (see :mod:`lamina.runtime.mounts`); the
container's processes die with its pid 1 (pid namespace) and with the helper (parent-death
signal); ``delete`` is idempotent and leaves no state directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal as _signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lamina._internal.fileio import write_atomic
from lamina.errors import CommandNotExecutable, CommandNotFound, ContainerError
from lamina.runtime.bundle import Bundle
from lamina.runtime.console import ConsoleSocket, pump, stdio_fd
from lamina.runtime.model import BaseRuntime, ContainerState, Stdio, wait_status
from lamina.runtime.procstat import process_starttime

#: seconds to wait for a killed container to disappear
KILL_TIMEOUT = 10.0


def _helper(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "lamina.runtime.nsinit", *args]


def _read_channel(fd: int) -> dict[str, Any]:
    """Merge the JSON lines of the channel until EOF; closes ``fd``."""
    info: dict[str, Any] = {}
    with os.fdopen(fd, "rb") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                info.update(json.loads(line))
    return info


def _raise_for(info: dict[str, Any], what: str) -> None:
    if "error" not in info:
        return
    message = f"{what}: {info['error']}"
    if info.get("errno") == errno.ENOENT and str(info["error"]).startswith("exec:"):
        raise CommandNotFound(message)
    if info.get("errno") in (errno.EACCES, errno.ENOEXEC, errno.EISDIR, errno.EPERM) and str(
        info["error"]
    ).startswith("exec:"):
        raise CommandNotExecutable(message)
    raise ContainerError(message)


def _alive(pid: int, starttime: object) -> bool:
    """True when ``pid`` exists and started at ``starttime`` (not a reused pid)."""
    if not pid or not isinstance(starttime, int):
        return False
    try:
        return process_starttime(pid) == starttime
    except (OSError, ValueError):
        return False


class NativeRuntime(BaseRuntime):
    """Runs bundles with Linux namespaces directly (see the module docstring)."""

    name = "native"

    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root

    def __repr__(self) -> str:
        return f"NativeRuntime({str(self.state_root)!r})"

    def _dir(self, container_id: str) -> Path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise ContainerError(f"invalid container id {container_id!r}")
        return self.state_root / container_id

    def exists(self, container_id: str) -> bool:
        """True while the state directory exists."""
        return (self._dir(container_id) / "state.json").exists()

    def state(self, container_id: str) -> ContainerState:
        """The recorded state, with the status checked against the live process."""
        d = self._dir(container_id)
        try:
            doc = json.loads((d / "state.json").read_bytes())
        except FileNotFoundError:
            raise ContainerError(f"container {container_id} does not exist") from None
        pid = int(doc.get("pid", 0))
        status: Any = "creating"
        if (d / "exit.json").exists():
            status = "stopped"
        elif pid:
            # The helper writes exit.json right after reaping pid 1: while it lives, a vanished
            # pid 1 is still "running" (for microseconds), so stopped always has an exit status.
            alive = _alive(pid, doc.get("starttime")) or _alive(
                int(doc.get("helper", 0)), doc.get("helper_starttime")
            )
            status = "running" if alive else "stopped"
        return ContainerState(id=container_id, status=status, pid=pid, bundle=Path(doc["bundle"]))

    def exit_status(self, container_id: str) -> int | None:
        """The process's exit status once it has exited (detached containers), else None."""
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            doc = json.loads((self._dir(container_id) / "exit.json").read_bytes())
            return int(doc["status"])
        return None

    def kill(self, container_id: str, sig: int = _signal.SIGTERM) -> None:
        """Signal the container's pid 1; ContainerError unless it is running."""
        st = self.state(container_id)
        if st.status != "running":
            raise ContainerError(f"killing container {container_id}: it is {st.status}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(st.pid, sig)

    def _spawn(
        self, build: Callable[[int], list[str]], *, stdin: Stdio, stdout: Stdio, stderr: Stdio,
        console: ConsoleSocket | None,
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:  # fmt: skip
        """Start the helper with ``build(channel_fd)`` as its arguments; read its channel."""
        r, w = os.pipe()
        try:
            argv = _helper(*build(w), *([str(console.path)] if console else []))
            if console is not None:  # the pty carries stdin/stdout
                stdin = stdout = subprocess.DEVNULL
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=(w,))
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        return proc, _read_channel(r)

    def _finish(
        self, proc: subprocess.Popen[bytes], info: dict[str, Any], *, what: str,
        console: ConsoleSocket | None, stdin: Stdio, stdout: Stdio,
        interrupt: Callable[[], None],
    ) -> int:  # fmt: skip
        """Pump the terminal (if any), wait for the helper, raise a reported error."""
        if console is None or "error" in info:
            return self._wait(proc, info, what=what, interrupt=interrupt)
        with stdio_fd(stdin, 0, write=False) as in_fd, stdio_fd(stdout, 1, write=True) as out:
            master = console.receive(proc, in_fd)
            try:
                copier = pump(master, in_fd, out)
                code = self._wait(proc, info, what=what, interrupt=interrupt)
                copier.join(timeout=KILL_TIMEOUT)
                return code
            finally:
                os.close(master)

    @staticmethod
    def _wait(
        proc: subprocess.Popen[bytes], info: dict[str, Any], *, what: str,
        interrupt: Callable[[], None],
    ) -> int:  # fmt: skip
        try:
            code = wait_status(proc.wait())
        except BaseException:
            interrupt()
            proc.wait()
            raise
        _raise_for(info, what)
        return code

    def _claim(self, container_id: str) -> Path:
        """Create the state directory; ContainerError if the id is taken (atomic: mkdir)."""
        d = self._dir(container_id)
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            raise ContainerError(f"container {container_id} already exists") from None
        return d

    def _launch(
        self, bundle: Bundle, container_id: str, *, stdin: Stdio, stdout: Stdio, stderr: Stdio,
        detach: bool, console: ConsoleSocket | None = None,
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:  # fmt: skip
        """Start the helper for a claimed container; record its pids in ``state.json``."""
        d = self._dir(container_id)
        doc: dict[str, Any] = {"id": container_id, "pid": 0, "bundle": str(bundle.path)}
        write_atomic(d / "state.json", json.dumps(doc).encode(), durable=False)
        proc, info = self._spawn(
            lambda w: ["run", str(bundle.path), str(d), str(w), "1" if detach else "0"],
            stdin=stdin, stdout=stdout, stderr=stderr, console=console,
        )  # fmt: skip
        if "pid" in info:
            for key in ("pid", "starttime", "helper", "helper_starttime"):
                doc[key] = info[key]
            write_atomic(d / "state.json", json.dumps(doc).encode(), durable=False)
        return proc, info

    def _run(
        self, bundle: Bundle, container_id: str, *, stdin: Stdio, stdout: Stdio, stderr: Stdio
    ) -> int:
        terminal = bool(bundle.read_config()["process"].get("terminal"))
        self._claim(container_id)  # outside the try: a taken id is never cleaned up by us
        try:
            with contextlib.ExitStack() as stack:
                console = stack.enter_context(ConsoleSocket(self.state_root)) if terminal else None
                proc, info = self._launch(
                    bundle, container_id, stdin=stdin, stdout=stdout, stderr=stderr,
                    detach=False, console=console,
                )  # fmt: skip
                return self._finish(
                    proc, info, what=f"running container {container_id}", console=console,
                    stdin=stdin, stdout=stdout,
                    interrupt=lambda: self._kill_and_wait(container_id),
                )  # fmt: skip
        finally:
            shutil.rmtree(self._dir(container_id), ignore_errors=True)

    def _start_detached(
        self, bundle: Bundle, container_id: str, *, stdout: Stdio, stderr: Stdio
    ) -> ContainerState | None:
        if bundle.read_config()["process"].get("terminal"):
            raise ContainerError(
                f"starting container {container_id}: a detached terminal is not supported",
                hint="run it in the foreground, or without a terminal",
            )
        self._claim(container_id)
        try:
            proc, info = self._launch(
                bundle, container_id, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                detach=True,
            )  # fmt: skip
            proc.wait()
            _raise_for(info, f"starting container {container_id}")
        except BaseException:
            self._delete(container_id, force=True)
            raise
        return None

    def _exec(
        self, container_id: str, process: dict[str, Any], *, stdin: Stdio, stdout: Stdio,
        stderr: Stdio,
    ) -> int:  # fmt: skip
        d = self._dir(container_id)
        doc = json.loads((d / "state.json").read_bytes())
        with (
            tempfile.NamedTemporaryFile("w", prefix="process-", suffix=".json", dir=d) as f,
            contextlib.ExitStack() as stack,
        ):
            json.dump(process, f)
            f.flush()
            terminal = bool(process.get("terminal"))
            console = stack.enter_context(ConsoleSocket(d)) if terminal else None
            proc, info = self._spawn(
                lambda w: ["exec", str(doc["pid"]), str(doc["starttime"]), f.name, str(w)],
                stdin=stdin, stdout=stdout, stderr=stderr, console=console,
            )  # fmt: skip

            def interrupt() -> None:
                if "pid" in info:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(info["pid"]), _signal.SIGKILL)

            return self._finish(
                proc, info, what=f"exec in container {container_id}", console=console,
                stdin=stdin, stdout=stdout, interrupt=interrupt,
            )  # fmt: skip

    def _kill_and_wait(self, container_id: str) -> None:
        deadline = time.monotonic() + KILL_TIMEOUT
        while time.monotonic() < deadline:
            try:
                st = self.state(container_id)
            except ContainerError:
                return
            if st.status != "running":
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, _signal.SIGKILL)
            time.sleep(0.02)
        raise ContainerError(f"killing container {container_id}: still running after SIGKILL")

    def _delete(self, container_id: str, *, force: bool) -> None:
        d = self._dir(container_id)
        if not d.exists():
            return
        if (d / "state.json").exists():
            st = self.state(container_id)
            if st.status == "running":
                if not force:
                    raise ContainerError(
                        f"deleting container {container_id}: it is running",
                        hint="stop it first, or force the removal",
                    )
                self._kill_and_wait(container_id)
        shutil.rmtree(d, ignore_errors=True)
