"""The overlayfs on-disk format: whiteouts, opaque dirs and overlay xattrs (kernel docs).

- A whiteout is a 0/0 character device, or (kernel 6.7+, "xwhiteout") an empty regular file
  carrying ``<ns>.overlay.whiteout`` inside a directory marked ``<ns>.overlay.opaque=x``.
- A directory is opaque when ``<ns>.overlay.opaque`` is ``y``.
- ``<ns>`` is ``trusted`` for normal mounts and ``user`` for ``userxattr`` (rootless) mounts.

Helpers here never follow a final symlink. Used by the applier, the writer and the changes.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


def read_all_xattrs(path: str | Path) -> dict[str, bytes]:
    """Every xattr of ``path`` (not following a symlink), sorted by name."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def without_overlay(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    """``xattrs`` minus overlay metadata (``trusted.overlay.*``, ``user.overlay.*``)."""
    return {k: v for k, v in xattrs.items() if not k.startswith(OVERLAY_XATTR_PREFIXES)}


def read_xattrs(path: str | Path) -> dict[str, bytes]:
    """All xattrs of ``path`` (not following a symlink) except overlay metadata, sorted."""
    return without_overlay(read_all_xattrs(path))


def overlay_xattr(path: str | Path, name: str) -> bytes | None:
    """``trusted.overlay.<name>`` or ``user.overlay.<name>`` of ``path`` (no follow), or None."""
    for ns in ("trusted", "user"):
        try:
            return os.getxattr(path, f"{ns}.overlay.{name}", follow_symlinks=False)
        except OSError:
            continue
    return None


def is_overlay_whiteout(path: str | Path, st: os.stat_result) -> bool:
    """True for a 0/0 character device or an "xwhiteout" (file with ``*.overlay.whiteout``)."""
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    return (
        stat.S_ISREG(st.st_mode) and st.st_size == 0 and overlay_xattr(path, "whiteout") is not None
    )


def overlay_value(xattrs: dict[str, bytes], name: str) -> bytes | None:
    """``trusted.overlay.<name>`` (or the ``user.`` one) from an xattr dict, or None."""
    return xattrs.get(f"trusted.overlay.{name}", xattrs.get(f"user.overlay.{name}"))


def make_whiteout(pfd: int, name: str, *, rootless: bool, opaque_key: str) -> None:
    """Create whiteout ``name`` in directory ``pfd`` (which must not hold ``name``).

    A 0/0 character device (allowed without privileges since Linux 5.8); if that is refused
    and ``rootless``, an xwhiteout with ``user.overlay.whiteout`` and the parent marked ``x``
    (unless it is already fully opaque).
    """
    try:
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        return
    except PermissionError:
        if not rootless:
            raise
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    os.close(os.open(name, flags, 0o600, dir_fd=pfd))
    os.setxattr(f"/proc/self/fd/{pfd}/{name}", "user.overlay.whiteout", b"y")
    with contextlib.suppress(OSError):
        if os.getxattr(pfd, opaque_key) == b"y":
            return
    os.setxattr(pfd, opaque_key, b"x")
