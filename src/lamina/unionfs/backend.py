"""The union filesystem Backend protocol, the copying fallback, robust unmount, selection.

A :class:`Backend` stacks read-only ``lowers`` (top first) under a writable ``upper`` at
``target``. Three exist: kernel overlayfs (:class:`~lamina.unionfs.overlay.OverlayBackend`),
fuse-overlayfs (:class:`~lamina.unionfs.overlay.FuseOverlayBackend`) and :class:`VfsBackend`,
which mounts nothing: with it the store keeps a full tree per layer (like Docker's vfs driver)
and the "merged" view of a layer is its own directory.

Invariants:
- ``mount`` either mounts or raises :class:`~lamina.errors.UnionFSError`; it never leaves a
  half-made mount behind. ``unmount`` is idempotent (not mounted is fine), retries EBUSY and
  detaches lazily as a last resort, so no mount leaks.
- :func:`select_backend` probes by really mounting a tiny overlay under ``<root>/tmp`` and
  caches the answer in ``<root>/unionfs-probe.json`` keyed by the kernel release.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from typing import Protocol

from lamina._internal.fileio import write_atomic
from lamina._internal.log import get_logger
from lamina.errors import UnionFSError
from lamina.unionfs import syscall

log = get_logger(__name__)

PROBE_CACHE = "unionfs-probe.json"


class Backend(Protocol):
    """What the store needs from a union filesystem."""

    #: "overlay", "fuse-overlayfs" or "vfs"
    name: str
    #: True when layers are full trees (no union mount; the store copies parents)
    copies: bool

    def probe(self) -> bool:
        """True if this backend works here (may mount something briefly)."""
        ...

    def mount(
        self, lowers: list[Path], upper: Path, work: Path, target: Path, *, volatile: bool = False
    ) -> None:
        """Mount ``lowers`` (top first) under ``upper`` at ``target``; ``work`` is scratch.

        ``volatile``: the upper dir's data need not survive a crash (build steps, which
        snapshot it themselves), so unmounting does not sync the whole upper filesystem. A
        volatile ``work`` dir cannot be mounted again: give a fresh one.
        """
        ...

    def unmount(self, target: Path) -> None:
        """Unmount ``target`` (idempotent)."""
        ...


class VfsBackend:
    """The copying fallback: no mounts at all.

    The store keeps a full merged tree per layer and per container, so ``mount`` has nothing
    to do: the merged view *is* ``upper``. ``mount`` only checks that ``upper`` exists.
    """

    name = "vfs"
    copies = True

    def probe(self) -> bool:
        """Always works."""
        return True

    def mount(
        self, lowers: list[Path], upper: Path, work: Path, target: Path, *, volatile: bool = False
    ) -> None:
        """Nothing to mount: the caller uses ``upper`` as the merged tree."""
        if not upper.is_dir():
            raise UnionFSError(f"vfs: layer directory {upper} does not exist")

    def unmount(self, target: Path) -> None:
        """Nothing to unmount."""


def unmount(target: Path, *, attempts: int = 8) -> None:
    """Unmount every mount stacked on ``target``: retry EBUSY, then detach lazily.

    Idempotent: a target that is not mounted (or does not exist) is fine.
    """
    delay = 0.02
    for _ in range(64):  # stacked mounts: unmount until nothing is left
        if not syscall.is_mountpoint(target):
            return
        for attempt in range(attempts):
            try:
                syscall.umount(target)
                break
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOENT):
                    return
                if exc.errno != errno.EBUSY:
                    raise UnionFSError(f"unmounting {target}: {exc.strerror}") from None
                if attempt == attempts - 1:
                    log.warning("unmounting %s: busy, detaching lazily", target)
                    with contextlib.suppress(OSError):
                        syscall.umount(target, syscall.MNT_DETACH)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
    raise UnionFSError(f"unmounting {target}: still mounted after 64 unmounts")


def _backend_named(name: str, root: Path) -> Backend:
    from lamina.unionfs.overlay import FuseOverlayBackend, OverlayBackend

    if name in ("overlay", "overlay2", "overlayfs"):
        return OverlayBackend(probe_dir=root / "tmp")
    if name in ("fuse-overlayfs", "fuse"):
        return FuseOverlayBackend(probe_dir=root / "tmp")
    if name == "vfs":
        return VfsBackend()
    raise UnionFSError(
        f"unknown storage driver {name!r}", hint="use one of: overlay2, fuse-overlayfs, vfs"
    )


def _cached_probe(backend: Backend, root: Path) -> bool:
    """Probe ``backend`` once per kernel release; the answer is kept in PROBE_CACHE."""
    cache = root / PROBE_CACHE
    kernel = os.uname().release
    key = f"{backend.name}:{os.geteuid()}"
    data: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(cache.read_bytes())
        if not isinstance(data, dict) or data.get("kernel") != kernel:
            data = {}
    if isinstance(data.get(key), bool):
        return bool(data[key])
    ok = backend.probe()
    data["kernel"] = kernel
    data[key] = ok
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, json.dumps(data, sort_keys=True).encode(), durable=False)
    return ok


def select_backend(preference: str | None, root: Path) -> Backend:
    """The backend to use for the store at ``root``.

    With a ``preference`` ("overlay2"/"overlay", "fuse-overlayfs", "vfs") that backend is
    returned if its probe passes, else UnionFSError. Without one: kernel overlayfs when it
    works here, else vfs with a one-line warning.
    """
    if preference:
        backend = _backend_named(preference, root)
        if not _cached_probe(backend, root):
            raise UnionFSError(
                f"storage driver {preference!r} does not work here",
                hint="try --storage-driver vfs (slower, uses more disk)",
            )
        return backend
    overlay = _backend_named("overlay", root)
    if _cached_probe(overlay, root):
        return overlay
    log.warning("kernel overlayfs is not usable here; using the vfs driver (copies layers)")
    return VfsBackend()
