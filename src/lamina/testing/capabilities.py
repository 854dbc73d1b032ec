"""Capability probes for the test markers (``needs_root``, ``needs_overlay``, ...).

Each probe runs at most once per process and returns ``None`` when the capability is there,
else the reason it is missing (used as the skip reason). CI has every capability, so a test
skipped there is a bug in the CI image, not in the test. Never imported by lamina itself.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


@functools.cache
def missing_root() -> str | None:
    """None if running as uid 0."""
    return None if os.geteuid() == 0 else "needs root (uid 0)"


@functools.cache
def missing_overlay() -> str | None:
    """None if a real kernel overlayfs mount works here."""
    from lamina.unionfs.overlay import OverlayBackend

    with tempfile.TemporaryDirectory(prefix="lamina-probe-") as d:
        if OverlayBackend(probe_dir=Path(d)).probe():
            return None
    return "kernel overlayfs mounts do not work here"


@functools.cache
def missing_fuse() -> str | None:
    """None if a fuse-overlayfs mount works here."""
    from lamina.unionfs.overlay import FuseOverlayBackend

    if shutil.which("fuse-overlayfs") is None:
        return "fuse-overlayfs is not installed"
    with tempfile.TemporaryDirectory(prefix="lamina-probe-") as d:
        if FuseOverlayBackend(probe_dir=Path(d)).probe():
            return None
    return "fuse-overlayfs mounts do not work here (no /dev/fuse?)"


@functools.cache
def missing_runtime() -> str | None:
    """None if runc or crun is installed."""
    if shutil.which("runc") or shutil.which("crun"):
        return None
    return "needs runc or crun"


@functools.cache
def missing_registry() -> str | None:
    """None if the docker-registry binary is installed."""
    from lamina.testing import registry

    return None if registry.available() else "needs the docker-registry binary"


@functools.cache
def missing_tools() -> str | None:
    """None if skopeo, umoci and a static tini (``run --init``) are installed."""
    absent = [t for t in ("skopeo", "umoci", "tini-static") if shutil.which(t) is None]
    return f"needs {', '.join(absent)}" if absent else None


@functools.cache
def missing_rootless() -> str | None:
    """None if the CI's unprivileged user (with sub-ids) can run lamina here."""
    from lamina.testing.rootless import missing_rootless as probe

    return probe()


#: marker name -> probe
PROBES: dict[str, Callable[[], str | None]] = {
    "needs_root": missing_root,
    "needs_overlay": missing_overlay,
    "needs_fuse": missing_fuse,
    "needs_runtime": missing_runtime,
    "needs_registry": missing_registry,
    "needs_tools": missing_tools,
    "needs_rootless": missing_rootless,
}


def mount_points_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (to assert that tests leak no mounts)."""
    from lamina.unionfs.syscall import mount_points

    prefix = str(path)
    return sorted(m for m in mount_points() if m == prefix or m.startswith(prefix + "/"))
