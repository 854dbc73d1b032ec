"""How a layer member's metadata lands on disk when a layer is applied: owner, mode, xattrs, times.

:class:`MetadataWriter` is the policy :mod:`lamina.snapshot.apply` follows for every entry it
creates; apply decides *where* an entry goes, this module *what* it carries.

Invariants:

- Ownership is set only when running as root and either not rootless or in a user namespace
  that maps sub-ids (:func:`maps_sub_ids`; the owners are then sub-ids on the host); every
  other file belongs to the caller.
- ``trusted.overlay.*``/``user.overlay.*`` xattrs are dropped (they would let a layer forge
  overlay redirects); xattrs the kernel refuses (EPERM, ENOTSUP, EACCES, EINVAL) are skipped.
  Both are reported in ``skipped`` as ``(path, reason)``.
- Nothing is ever followed: nodes are reached by an open fd, or by name relative to a parent
  directory fd with ``follow_symlinks=False`` (a mode is set by name only on a node just
  created as a non-link).
"""

from __future__ import annotations

import errno
import os

from lamina.snapshot.overlayfmt import OVERLAY_XATTR_PREFIXES
from lamina.snapshot.tarstream import Member


def maps_sub_ids() -> bool:
    """True in a user namespace (not the initial one) that maps more than one uid and gid."""
    try:
        for kind in ("uid", "gid"):
            with open(f"/proc/self/{kind}_map") as f:
                lines = [line.split() for line in f if line.strip()]
            if lines == [["0", "0", "4294967295"]] or sum(int(ln[2]) for ln in lines) < 2:
                return False
    except (OSError, ValueError, IndexError):
        return False
    return True


class MetadataWriter:
    """Sets members' metadata for one layer application; ``skipped`` collects what it left out
    (shared with the caller's list, appended in member order)."""

    def __init__(self, *, rootless: bool, skipped: list[tuple[str, str]]) -> None:
        # Rootless in a namespace with sub-ids (the CLI's, see lamina.runtime.userns): chown
        # works for every mapped id, so the image's owners are kept (as sub-ids on the host).
        self.chown = os.geteuid() == 0 and (not rootless or maps_sub_ids())
        self.skipped = skipped

    def apply_fd(self, fd: int, m: Member) -> None:
        """Owner, mode, xattrs and times of the open file ``fd`` (a regular file)."""
        if self.chown:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode)
        self.xattrs(fd, m)
        os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))

    def owner_fd(self, fd: int, m: Member) -> None:
        """Owner and xattrs of the open directory ``fd`` (its mode and times come last)."""
        if self.chown:
            os.fchown(fd, m.uid, m.gid)
        self.xattrs(fd, m)

    def apply_path(self, pfd: int, base: str, m: Member, *, symlink: bool) -> None:
        """Owner, mode, xattrs and times of ``base`` in directory ``pfd``, a node that cannot be
        opened (symlink, device, FIFO); ``symlink`` keeps its mode untouched."""
        if self.chown:
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not symlink:  # the caller just created it as a non-link: following is harmless
            os.chmod(base, m.mode, dir_fd=pfd)
        if m.xattrs:
            proc = f"/proc/self/fd/{pfd}/{base}"
            for key, value in sorted(m.xattrs.items()):
                self._setxattr(proc, key, value, m.path, follow=False)
        os.utime(base, ns=(m.mtime_ns, m.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def xattrs(self, fd: int, m: Member) -> None:
        """The member's xattrs on the open ``fd``, sorted by key, minus dropped/refused ones."""
        for key, value in sorted(m.xattrs.items()):
            self._setxattr(fd, key, value, m.path, follow=True)

    def _setxattr(
        self, target: int | str, key: str, value: bytes, path: str, *, follow: bool
    ) -> None:
        if key.startswith(OVERLAY_XATTR_PREFIXES):
            self.skipped.append((path, f"xattr {key} (overlay metadata) dropped"))
            return
        try:
            os.setxattr(target, key, value, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EINVAL):
                raise
            self.skipped.append((path, f"xattr {key}: {exc.strerror}"))
