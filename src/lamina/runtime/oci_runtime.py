"""Delegation to an OCI runtime binary (runc or crun) through bundles.

Every call passes ``--root <state_root>``, a lamina-owned state directory (the caller puts it
in its store, e.g. ``<store>/runtime/runc``), so lamina's containers never mix with Docker's
or podman's under ``/run/runc``.

Mapping of :class:`~lamina.runtime.model.Runtime` to the runtime CLI (the same for both):

=================  =====================================================================
``run``            ``run --bundle B ID`` with the caller's stdio; the runtime deletes the
                   container when the process exits
``start_detached`` ``run --detach --bundle B ID`` (stdin /dev/null; stdout/stderr passed)
``run_watched``    ``run --pid-file F --bundle B ID``; the pid is reported when F appears
``exec``           ``exec --process P.json ID``
``kill``           ``kill ID SIGNUM``
``delete``         ``delete [--force] ID``
``state``          ``state ID`` (JSON on stdout)
=================  =====================================================================

With ``process.terminal`` set, ``run``/``exec`` become ``--detach --console-socket S
--pid-file F`` under :mod:`lamina.runtime.shim` (runc accepts a console socket only when
detaching): the pty master arrives on S and is pumped to the caller's stdio
(:mod:`lamina.runtime.console`), and the shim, a child subreaper, reports the exit status.

Errors: a failing control command raises ContainerError carrying the runtime's last stderr
line as context; whether a container exists is decided by its state directory, not by text.

:func:`probe` runs ``/usr/bin/true`` in a throw-away bundle (the host's ``/usr`` bound read-only)
to learn whether a runtime works on this host: crun 1.8.1 refuses hybrid cgroup v1/v2 hosts
("cgroups in hybrid mode not supported"). The answer is cached in memory and in
``<state_root>/probe.json``, keyed by the binary's path, size and mtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal as _signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._internal.fileio import write_atomic
from lamina.errors import ContainerError
from lamina.runtime.bundle import (
    Bundle,
    prepare_mountpoints,
    remove_mountpoints,
    resolve_command,
    write_bundle,
)
from lamina.runtime.model import BaseRuntime, ContainerState, Stdio, wait_status
from lamina.runtime.pidwatch import PidFileWatch
from lamina.runtime.spec import BindMount, ContainerSpec, ProcessSpec

if TYPE_CHECKING:
    from lamina.runtime.console import ConsoleSocket

#: seconds a control command (state, kill, delete) may take
CONTROL_TIMEOUT = 60

#: where runtimes are looked for when PATH lacks them (sbin is often missing from a user's PATH)
FALLBACK_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin"

_probe_cache: dict[tuple[str, int, int], bool] = {}


class OCIRuntime(BaseRuntime):
    """runc or crun, driven through its command line. Thread-safe: no mutable state."""

    def __init__(self, name: str, binary: str | Path, state_root: Path) -> None:
        self.name = name
        self.binary = str(binary)
        self.state_root = state_root

    def __repr__(self) -> str:
        return f"OCIRuntime({self.name!r}, {self.binary!r}, {str(self.state_root)!r})"

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.state_root), *args]

    def _control(self, what: str, container_id: str, *args: str) -> str:
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        proc = subprocess.run(
            self._argv(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CONTROL_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            detail = _last_line(proc.stderr) or f"exit status {proc.returncode}"
            raise ContainerError(f"{what} container {container_id} with {self.name}: {detail}")
        return proc.stdout.decode("utf-8", "replace")

    def exists(self, container_id: str) -> bool:
        """True when the state directory holds ``container_id``."""
        _check_id(container_id)
        return (self.state_root / container_id).is_dir()

    def state(self, container_id: str) -> ContainerState:
        """``state ID``, parsed. Raises ContainerError when missing or unparsable."""
        if not self.exists(container_id):
            raise ContainerError(f"container {container_id} does not exist")
        out = self._control("reading state of", container_id, "state", container_id)
        try:
            doc = json.loads(out)
            return ContainerState(
                id=str(doc["id"]),
                status=doc["status"],
                pid=int(doc.get("pid") or 0),
                bundle=Path(doc["bundle"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ContainerError(f"reading state of container {container_id}: {exc}") from exc

    def kill(self, container_id: str, sig: int = _signal.SIGTERM) -> None:
        """``kill ID SIGNUM``."""
        if not self.exists(container_id):
            raise ContainerError(f"killing container {container_id}: it does not exist")
        self._control("killing", container_id, "kill", container_id, str(int(sig)))

    def _delete(self, container_id: str, *, force: bool) -> None:
        if not self.exists(container_id):
            return
        args = ["delete", "--force", container_id] if force else ["delete", container_id]
        self._control("deleting", container_id, *args)

    def _foreground(
        self, verb: str, flags: list[str], container_id: str, *, terminal: bool, stdin: Stdio,
        stdout: Stdio, stderr: Stdio,
    ) -> int:  # fmt: skip
        """``verb [--console-socket S] FLAGS ID``; waits; on interruption kills the runtime.

        A non-zero status with no pid file written means the runtime failed before the process
        existed (a bad mount, say): that raises ContainerError instead of passing as the
        process's status. The runtime's own message went to ``stderr``.
        """
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not terminal:
            with tempfile.TemporaryDirectory(prefix="pid-", dir=self.state_root) as tmp:
                pidfile = Path(tmp, "pid")
                argv = self._argv(verb, "--pid-file", str(pidfile), *flags, container_id)
                proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)
                code = self._wait(proc)
                if code != 0 and not pidfile.exists():
                    raise ContainerError(
                        f"{verb} in container {container_id} with {self.name}: "
                        f"the runtime failed (exit status {code})",
                        hint="its message is on the container's stderr",
                    )
                return code
        # Only terminals need the console module (termios, a pump thread): loaded here.
        from lamina.runtime.console import ConsoleSocket

        with (
            ConsoleSocket(self.state_root) as console,
            tempfile.TemporaryDirectory(prefix="shim-", dir=self.state_root) as tmp,
        ):
            return self._with_console(
                console, Path(tmp), verb, flags, container_id, stdin=stdin, stdout=stdout,
                stderr=stderr,
            )  # fmt: skip

    def _with_console(
        self, console: ConsoleSocket, tmp: Path, verb: str, flags: list[str], container_id: str,
        *, stdin: Stdio, stdout: Stdio, stderr: Stdio,
    ) -> int:  # fmt: skip
        """Detached ``verb`` under the shim (which gets the exit status), the pty pumped here."""
        from lamina.runtime.console import pump, stdio_fd

        result, pidfile = tmp / "result.json", tmp / "pid"
        runtime_argv = self._argv(
            verb, "--detach", "--console-socket", str(console.path), "--pid-file", str(pidfile),
            *flags, container_id,
        )  # fmt: skip
        argv = [sys.executable, "-P", "-m", "lamina.runtime.shim", str(result), str(pidfile),
                "--", *runtime_argv]  # fmt: skip
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        with stdio_fd(stdin, 0, write=False) as in_fd, stdio_fd(stdout, 1, write=True) as out:
            try:
                master = console.receive(proc, in_fd)
            except BaseException:
                self._wait(proc)
                raise
            try:
                copier = pump(master, in_fd, out)
                self._wait(proc)
                copier.join(timeout=CONTROL_TIMEOUT)
            finally:
                os.close(master)
        doc = json.loads(result.read_text())
        if "runtime_failed" in doc:
            raise ContainerError(
                f"{verb} in container {container_id} with {self.name}: "
                f"exit status {doc['runtime_failed']}"
            )
        return int(doc["status"])

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes]) -> int:
        try:
            return wait_status(proc.wait())
        except BaseException:
            # Interrupted (KeyboardInterrupt, a caller's timeout): runc forwards nothing once
            # killed, but its container dies with it in run mode, and exec'd processes are
            # reaped by the container's init.
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=CONTROL_TIMEOUT)
            raise

    def _run(
        self, bundle: Bundle, container_id: str, *, stdin: Stdio, stdout: Stdio, stderr: Stdio
    ) -> int:
        _check_id(container_id)
        terminal = bool(bundle.read_config()["process"].get("terminal"))
        try:
            return self._foreground(
                "run", ["--bundle", str(bundle.path)], container_id, terminal=terminal,
                stdin=stdin, stdout=stdout, stderr=stderr,
            )  # fmt: skip
        finally:
            # run deletes its container itself, except when detached under the shim
            # (terminal) or interrupted; then the stopped container is removed here.
            with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
                self._delete(container_id, force=True)

    def run_watched(
        self, bundle: Bundle, container_id: str, *, on_started: Callable[[int], None],
        stdin: Stdio = None, stdout: Stdio = None, stderr: Stdio = None, checked: bool = False,
    ) -> int:  # fmt: skip
        """:meth:`run` without a terminal, calling ``on_started(pid)`` once the process runs.

        One runtime execution in all (``run --pid-file``, not ``run --detach`` + ``delete``):
        the runtime deletes its container when the process exits, and the pid is read from
        the pid file as soon as it appears (:mod:`lamina.runtime.pidwatch`). The runtime runs
        in its own process group, so a terminal's ^C reaches only the caller, which forwards
        signals itself (the runtime would forward a second copy). ``checked``: the caller
        already ran :func:`resolve_command` on this bundle. Raises like :meth:`run`; if
        ``on_started`` raises, the runtime and its container are killed.
        """
        _check_id(container_id)
        config = bundle.read_config()
        if config["process"].get("terminal"):
            raise ContainerError(f"running container {container_id}: a terminal needs run()")
        if not checked:
            resolve_command(bundle.rootfs, config["process"], config.get("mounts"))
        prepare_mountpoints(bundle)
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with (
                tempfile.TemporaryDirectory(prefix="pid-", dir=self.state_root) as tmp,
                PidFileWatch(Path(tmp, "pid")) as watch,
            ):
                argv = self._argv("run", "--pid-file", str(watch.pidfile), "--bundle",
                                  str(bundle.path), container_id)  # fmt: skip
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL if stdin is None else stdin, stdout=stdout,
                    stderr=stderr, process_group=0,
                )  # fmt: skip
                try:
                    code = wait_status(watch.wait(proc, on_started))
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                if code != 0 and watch.read_pid() == 0:
                    raise ContainerError(
                        f"running container {container_id} with {self.name}: "
                        f"the runtime failed (exit status {code})",
                        hint="its message is on the container's stderr",
                    )
                return code
        finally:
            # Normally gone already (the runtime deletes it); left when interrupted.
            with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
                self._delete(container_id, force=True)
            remove_mountpoints(bundle)

    def _start_detached(
        self, bundle: Bundle, container_id: str, *, stdout: Stdio, stderr: Stdio
    ) -> ContainerState:
        """``run --detach --pid-file``: the pid comes from the file, not from a ``state`` call
        (one runtime invocation fewer). The status is "running" as of the start: the process
        may have exited since (its pid is still the one to wait for)."""
        _check_id(container_id)
        if bundle.read_config()["process"].get("terminal"):
            raise ContainerError(
                f"starting container {container_id}: a detached terminal is not supported",
                hint="run it in the foreground, or without a terminal",
            )
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(prefix="pid-", dir=self.state_root) as tmp:
            pidfile = Path(tmp, "pid")
            argv = self._argv(
                "run", "--detach", "--pid-file", str(pidfile), "--bundle", str(bundle.path),
                container_id,
            )  # fmt: skip
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, check=False,
                timeout=CONTROL_TIMEOUT,
            )  # fmt: skip
            if proc.returncode != 0:
                raise ContainerError(
                    f"starting container {container_id} with {self.name}: "
                    f"exit status {proc.returncode}",
                    hint="the runtime's message went to the container's stderr",
                )
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError) as exc:
                raise ContainerError(
                    f"starting container {container_id} with {self.name}: no pid file"
                ) from exc
        return ContainerState(id=container_id, status="running", pid=pid, bundle=bundle.path)

    def _exec(
        self, container_id: str, process: dict[str, Any], *, stdin: Stdio, stdout: Stdio,
        stderr: Stdio,
    ) -> int:  # fmt: skip
        with tempfile.NamedTemporaryFile(
            "w", prefix="process-", suffix=".json", dir=self.state_root
        ) as f:
            json.dump(process, f)
            f.flush()
            return self._foreground(
                "exec", ["--process", f.name], container_id,
                terminal=bool(process.get("terminal")), stdin=stdin, stdout=stdout,
                stderr=stderr,
            )  # fmt: skip


def _check_id(container_id: str) -> None:
    ok = container_id and container_id[0].isalnum() and len(container_id) <= 128
    if not ok or not all(c.isalnum() or c in "_.-" for c in container_id):
        raise ContainerError(f"invalid container id {container_id!r}")


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _probe_rootfs(rootfs: Path) -> tuple[BindMount, ...]:
    """Lay out ``rootfs`` to reach the host's ``/usr`` (and ``/bin``, ``/lib*``) read-only."""
    binds = [BindMount(source=Path("/usr"), destination="/usr", readonly=True)]
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        host = Path("/", name)
        if host.is_symlink():
            (rootfs / name).symlink_to(os.readlink(host))
        elif host.is_dir():
            binds.append(BindMount(source=host, destination=f"/{name}", readonly=True))
    for b in binds:
        (rootfs / b.destination.lstrip("/")).mkdir(exist_ok=True)
    return tuple(binds)


def probe(name: str, binary: str | Path, state_root: Path) -> bool:
    """True when ``binary`` can run ``/bin/true`` here. Cached (memory + probe.json)."""
    st = os.stat(binary)
    key = (str(binary), st.st_size, st.st_mtime_ns)
    if key in _probe_cache:
        return _probe_cache[key]
    record = state_root / "probe.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        doc = json.loads(record.read_bytes())
        if tuple(doc["key"]) == key:
            _probe_cache[key] = bool(doc["ok"])
            return _probe_cache[key]
    state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    ok = _run_probe(name, binary, state_root)
    _probe_cache[key] = ok
    write_atomic(record, json.dumps({"key": list(key), "ok": ok}).encode(), durable=False)
    return ok


def _run_probe(name: str, binary: str | Path, state_root: Path) -> bool:
    with tempfile.TemporaryDirectory(prefix="probe-", dir=state_root) as tmp:
        rootfs = Path(tmp, "rootfs")
        rootfs.mkdir()
        spec = ContainerSpec(
            rootfs=rootfs,
            process=ProcessSpec(args=("/usr/bin/true",), env=("PATH=/usr/bin:/bin",)),
            binds=_probe_rootfs(rootfs),
            hostname="probe",
        )
        container_id = f"lamina-probe-{os.getpid()}"
        bundle = write_bundle(Path(tmp, "bundle"), spec, container_id=container_id)
        runtime = OCIRuntime(name, binary, state_root)
        try:
            status = runtime.run(
                bundle, container_id, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        except (ContainerError, OSError, subprocess.SubprocessError):
            status = -1
        finally:
            with contextlib.suppress(ContainerError, OSError, subprocess.SubprocessError):
                runtime.delete(container_id, force=True)
        return status == 0


def find_binary(name: str) -> str | None:
    """The path of ``name`` on PATH, else in :data:`FALLBACK_PATH`, or None."""
    return shutil.which(name) or shutil.which(name, path=FALLBACK_PATH)
