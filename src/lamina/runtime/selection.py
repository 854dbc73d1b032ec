"""Choose a runtime: crun, then runc (each only if its probe passes here), then native.

``select_runtime(None, state_dir=...)`` picks the first that works; a preference narrows it:

- ``"crun"``: crun if it works, else runc (crun 1.8.1 fails on hybrid cgroup hosts, and a user
  who asked for crun wants an OCI runtime, not an error), else ContainerError;
- ``"runc"``: runc or ContainerError;
- ``"native"``: the built-in namespaces + pivot_root runtime (needs root).

Each runtime keeps its state in its own directory below ``state_dir``: ``runc/``, ``crun/``,
``native/``. Probes run at most once per binary version (see
:func:`lamina.runtime.oci_runtime.probe`). Nothing here reads the environment.
"""

from __future__ import annotations

from pathlib import Path

from lamina._internal.log import get_logger
from lamina.errors import ContainerError, UsageError
from lamina.runtime.model import Runtime
from lamina.runtime.oci_runtime import OCIRuntime, find_binary, probe

log = get_logger(__name__)

RUNTIMES = ("crun", "runc", "native")


def _oci(name: str, state_dir: Path) -> OCIRuntime | None:
    binary = find_binary(name)
    if binary is None:
        log.debug("runtime %s: not installed", name)
        return None
    root = state_dir / name
    if not probe(name, binary, root):
        log.info("runtime %s (%s) does not work on this host; skipping it", name, binary)
        return None
    return OCIRuntime(name, binary, root)


def _native(state_dir: Path) -> Runtime:
    # imported only when chosen: ctypes, namespaces and terminals cost a runc user start-up
    from lamina.runtime.native import NativeRuntime

    return NativeRuntime(state_dir / "native")


def select_runtime(preference: str | None, *, state_dir: Path) -> Runtime:
    """The runtime to use (see the module docstring). Raises UsageError for an unknown name,
    ContainerError when nothing suitable works."""
    if preference is not None and preference not in RUNTIMES:
        raise UsageError(
            f"unknown runtime {preference!r}", hint=f"choose one of {', '.join(RUNTIMES)}"
        )
    if preference == "native":
        return _native(state_dir)
    order = ["runc"] if preference == "runc" else ["crun", "runc"]
    for name in order:
        runtime = _oci(name, state_dir)
        if runtime is not None:
            if preference == "crun" and name != "crun":
                log.warning("crun does not work on this host; using runc")
            return runtime
    if preference is None:
        return _native(state_dir)
    raise ContainerError(
        f"selecting runtime {preference}: no working {' or '.join(order)} found",
        hint="install runc (apt-get install runc) or use --runtime native",
    )
