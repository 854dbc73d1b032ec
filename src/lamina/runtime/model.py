"""The one runtime API the builder and the container commands use, and what runtimes share.

:class:`Runtime` is the protocol (what callers need); :class:`BaseRuntime` is the ABC that the
implementations (:class:`~lamina.runtime.oci_runtime.OCIRuntime` for runc/crun,
:class:`~lamina.runtime.native.NativeRuntime`) inherit, so every runtime behaves the same
around the edges:

- the command is resolved in the rootfs *before* anything starts (:class:`CommandNotFound`
  127, :class:`CommandNotExecutable` 126, decided by looking at the file);
- missing mount points are created before start and removed after the container is gone
  (:func:`~lamina.runtime.bundle.prepare_mountpoints`), so the rootfs is left as it was;
- ``run`` returns the process's own exit status (128+N when killed by signal N, as a shell);
- ``delete`` is idempotent; ``kill``/``exec`` on a missing container raise ContainerError.

Standard streams (:data:`Stdio`) are what :mod:`subprocess` accepts: None (inherit), an fd, a
file object, or ``subprocess.DEVNULL``; the caller owns and closes them.
"""

from __future__ import annotations

import signal as _signal
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ContainerError
from lamina.runtime.bundle import (
    Bundle,
    open_bundle,
    prepare_mountpoints,
    remove_mountpoints,
    resolve_command,
)
from lamina.runtime.spec import ProcessSpec, process_config

Stdio = int | IO[Any] | None
Status = Literal["creating", "created", "running", "stopped"]


@lazy_dataclass(frozen=True, kw_only=True)
class ContainerState:
    """A runtime's view of one container (the runtime-spec ``state`` object)."""

    id: str
    status: Status
    pid: int
    bundle: Path


class Runtime(Protocol):
    """Runs containers from bundles. Implementations: runc/crun delegation and native."""

    name: str

    def run(
        self, bundle: Bundle, container_id: str, *, stdin: Stdio = None, stdout: Stdio = None,
        stderr: Stdio = None,
    ) -> int:  # fmt: skip
        """Run in the foreground until the process exits; return its status; clean up."""

    def start_detached(
        self, bundle: Bundle, container_id: str, *, stdout: Stdio = None, stderr: Stdio = None
    ) -> ContainerState:
        """Start in the background (stdin is /dev/null); return the running state."""

    def exec(
        self, container_id: str, process: ProcessSpec, *, stdin: Stdio = None,
        stdout: Stdio = None, stderr: Stdio = None,
    ) -> int:  # fmt: skip
        """Run another process in a running container; return its status."""

    def kill(self, container_id: str, sig: int = _signal.SIGTERM) -> None:
        """Send ``sig`` to the container's init process."""

    def delete(
        self, container_id: str, *, force: bool = False, bundle: Bundle | None = None
    ) -> None:
        """Forget a stopped container (``force`` kills a running one first). Idempotent.

        ``bundle``: the container's bundle when the caller knows it (saves asking the
        runtime for its state first).
        """

    def state(self, container_id: str) -> ContainerState:
        """The container's state; raises ContainerError when it does not exist."""

    def exists(self, container_id: str) -> bool:
        """True when the runtime knows ``container_id``."""


class BaseRuntime(ABC):
    """The shared template: checks and mount points around the implementation's primitives."""

    name: str = "base"

    def run(
        self, bundle: Bundle, container_id: str, *, stdin: Stdio = None, stdout: Stdio = None,
        stderr: Stdio = None,
    ) -> int:  # fmt: skip
        """See :meth:`Runtime.run`. Mount points are removed even when this raises."""
        config = bundle.read_config()
        resolve_command(bundle.rootfs, config["process"], config.get("mounts"))
        prepare_mountpoints(bundle)
        try:
            return self._run(bundle, container_id, stdin=stdin, stdout=stdout, stderr=stderr)
        finally:
            remove_mountpoints(bundle)

    def start_detached(
        self, bundle: Bundle, container_id: str, *, stdout: Stdio = None, stderr: Stdio = None
    ) -> ContainerState:
        """See :meth:`Runtime.start_detached`; mount points stay until :meth:`delete`."""
        if self.exists(container_id):
            raise ContainerError(f"starting container {container_id}: it already exists")
        config = bundle.read_config()
        resolve_command(bundle.rootfs, config["process"], config.get("mounts"))
        prepare_mountpoints(bundle)
        try:
            # On failure the implementation leaves no container behind (and never touches an
            # existing one with the same id).
            state = self._start_detached(bundle, container_id, stdout=stdout, stderr=stderr)
        except BaseException:
            remove_mountpoints(bundle)
            raise
        return state if state is not None else self.state(container_id)

    def exec(
        self, container_id: str, process: ProcessSpec, *, stdin: Stdio = None,
        stdout: Stdio = None, stderr: Stdio = None,
    ) -> int:  # fmt: skip
        """See :meth:`Runtime.exec`; the container must be running."""
        st = self.state(container_id)
        if st.status != "running":
            raise ContainerError(f"exec in container {container_id}: it is {st.status}")
        config = process_config(process)
        bundle = open_bundle(st.bundle)
        resolve_command(bundle.rootfs, config, bundle.read_config().get("mounts"))
        return self._exec(container_id, config, stdin=stdin, stdout=stdout, stderr=stderr)

    def delete(
        self, container_id: str, *, force: bool = False, bundle: Bundle | None = None
    ) -> None:
        """See :meth:`Runtime.delete`; also removes the mount points made at start."""
        if not self.exists(container_id):
            return
        if bundle is None:
            bundle = open_bundle(self.state(container_id).bundle)
        self._delete(container_id, force=force)
        remove_mountpoints(bundle)

    @abstractmethod
    def kill(self, container_id: str, sig: int = _signal.SIGTERM) -> None:
        """See :meth:`Runtime.kill`."""

    @abstractmethod
    def state(self, container_id: str) -> ContainerState:
        """See :meth:`Runtime.state`."""

    @abstractmethod
    def exists(self, container_id: str) -> bool:
        """See :meth:`Runtime.exists`."""

    @abstractmethod
    def _run(
        self, bundle: Bundle, container_id: str, *, stdin: Stdio, stdout: Stdio, stderr: Stdio
    ) -> int: ...

    @abstractmethod
    def _start_detached(
        self, bundle: Bundle, container_id: str, *, stdout: Stdio, stderr: Stdio
    ) -> ContainerState | None:
        """Start; return the state when known without asking (None: :meth:`state` is used)."""

    @abstractmethod
    def _exec(
        self, container_id: str, process: dict[str, Any], *, stdin: Stdio, stdout: Stdio,
        stderr: Stdio,
    ) -> int: ...  # fmt: skip

    @abstractmethod
    def _delete(self, container_id: str, *, force: bool) -> None: ...


def wait_status(returncode: int) -> int:
    """A subprocess return code as a shell reports it: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode
