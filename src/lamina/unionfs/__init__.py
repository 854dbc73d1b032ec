"""Union filesystems: kernel overlayfs, fuse-overlayfs and a copying fallback (vfs).

Use :func:`select_backend` to get the :class:`Backend` that works here.
"""

from __future__ import annotations

from lamina.unionfs.backend import Backend, VfsBackend, select_backend, unmount
from lamina.unionfs.overlay import FuseOverlayBackend, OverlayBackend, in_user_namespace

__all__ = [
    "Backend",
    "FuseOverlayBackend",
    "OverlayBackend",
    "VfsBackend",
    "in_user_namespace",
    "select_backend",
    "unmount",
]
