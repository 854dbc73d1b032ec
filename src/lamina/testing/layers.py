"""Test layers: tree specs -> tar bytes/files, a busybox base rootfs, and tree manifests.

- :class:`Entry` plus the constructors :func:`file`, :func:`directory`, :func:`symlink`,
  :func:`hardlink`, :func:`device`, :func:`fifo`, :func:`whiteout_of`, :func:`opaque_in`
  describe members; :func:`build_tar`/:func:`write_tar` serialise them in the given order
  (names verbatim: these helpers also build hostile layers). Large files come from a
  ``(pattern, size)`` source so nothing big is held in memory.
- :func:`make_busybox_rootfs` builds a small realistic base from Debian's ``busybox-static``.
- :func:`tree_manifest` describes a tree for comparisons (paths, types, modes, owners, sizes,
  content hashes, link targets, device numbers, xattrs, hard-link groups, mtimes).

Everything uses :data:`EPOCH` by default so digests are stable. Never imported by lamina itself.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import field
from pathlib import Path
from typing import BinaryIO

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.snapshot.writer import iter_tree
from lamina.testing.command import run_command

#: SOURCE_DATE_EPOCH used by test layers (2023-11-14T22:13:20Z).
EPOCH = 1_700_000_000
OVERLAY_PREFIXES = ("trusted.overlay.", "user.overlay.")


@lazy_dataclass
class Entry:
    """One tar member to write. ``data`` may be bytes or ``(pattern, size)`` (streamed)."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes | tuple[bytes, int] = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = EPOCH
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


def file(
    name: str, data: bytes | tuple[bytes, int] = b"", mode: int = 0o644, **kw: object
) -> Entry:
    """A regular file."""
    return Entry(name, tarfile.REGTYPE, data, mode, **kw)  # type: ignore[arg-type]


def directory(name: str, mode: int = 0o755, **kw: object) -> Entry:
    """A directory."""
    return Entry(name, tarfile.DIRTYPE, b"", mode, **kw)  # type: ignore[arg-type]


def symlink(name: str, target: str, **kw: object) -> Entry:
    """A symlink (target kept verbatim)."""
    return Entry(name, tarfile.SYMTYPE, b"", 0o777, linkname=target, **kw)  # type: ignore[arg-type]


def hardlink(name: str, target: str, **kw: object) -> Entry:
    """A hard link to an earlier member."""
    return Entry(name, tarfile.LNKTYPE, b"", 0o644, linkname=target, **kw)  # type: ignore[arg-type]


def device(name: str, major: int, minor: int, *, block: bool = False, mode: int = 0o666) -> Entry:
    """A character (or block) device."""
    kind = tarfile.BLKTYPE if block else tarfile.CHRTYPE
    return Entry(name, kind, b"", mode, devmajor=major, devminor=minor)


def fifo(name: str, mode: int = 0o644) -> Entry:
    """A FIFO."""
    return Entry(name, tarfile.FIFOTYPE, b"", mode)


def whiteout_of(path: str) -> Entry:
    """The OCI whiteout deleting ``path`` (``dir/.wh.name``)."""
    parent, _, name = path.rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", mode=0o600)


def opaque_in(dirpath: str) -> Entry:
    """The opaque marker of ``dirpath``."""
    return file(f"{dirpath}/.wh..wh..opq", mode=0o755, mtime=0)


class _Pattern(io.RawIOBase):
    def __init__(self, pattern: bytes, size: int) -> None:
        self._chunk = (pattern * (1 << 20 // max(len(pattern), 1) + 1))[: 1 << 20]
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._left, len(self._chunk))
        buf[:n] = self._chunk[:n]
        self._left -= n
        return n


def write_tar(entries: Iterable[Entry], out: BinaryIO) -> None:
    """Write ``entries`` as a PAX tar to ``out`` in order (names verbatim). Does not close out."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.uid, info.gid = e.type, e.mode, e.uid, e.gid
            info.mtime, info.linkname = e.mtime, e.linkname
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.pax_headers = {
                f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                for k, v in sorted(e.xattrs.items())
            }
            if e.type == tarfile.REGTYPE:
                if isinstance(e.data, tuple):
                    info.size = e.data[1]
                    tf.addfile(info, io.BufferedReader(_Pattern(*e.data)))
                else:
                    info.size = len(e.data)
                    tf.addfile(info, io.BytesIO(e.data))
            else:
                tf.addfile(info)


def build_tar(entries: Iterable[Entry]) -> bytes:
    """``write_tar`` into memory (for small test layers)."""
    buf = io.BytesIO()
    write_tar(entries, buf)
    return buf.getvalue()


def make_busybox_rootfs(root: Path, *, busybox: Path = Path("/bin/busybox")) -> Path:
    """Build a small base rootfs in ``root`` from a static busybox; returns ``root``.

    Layout: ``/bin/busybox`` plus one symlink per applet (``busybox --list-full``), ``/etc``
    (passwd, group, hostname, hosts), ``/tmp`` 1777, ``/root`` 0700, empty ``/dev /proc /sys``
    and ``/home``. Everything is root-owned with mtime :data:`EPOCH`.
    """
    root.mkdir(parents=True, exist_ok=True)
    for d, mode in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("home", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
    ]:
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)
    shutil.copyfile(busybox, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    listing = run_command([str(busybox), "--list-full"]).out
    for applet in sorted(set(listing.split())):
        link = root / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    etc = {
        "passwd": "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "group": "root:x:0:\nnogroup:x:65534:\n",
        "hostname": "lamina\n",
        "hosts": "127.0.0.1\tlocalhost\n",
    }
    for name, text in etc.items():
        (root / "etc" / name).write_text(text)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))
    return root


def _kind(mode: int) -> str:
    for test, letter in [
        (stat.S_ISDIR, "d"),
        (stat.S_ISREG, "f"),
        (stat.S_ISLNK, "l"),
        (stat.S_ISCHR, "c"),
        (stat.S_ISBLK, "b"),
        (stat.S_ISFIFO, "p"),
    ]:
        if test(mode):
            return letter
    return "?"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_manifest(
    root: Path, *, mtimes: bool = True, xattrs: bool = True, dir_mtimes: bool = True
) -> list[tuple[object, ...]]:
    """A comparable description of the tree under ``root`` (root itself excluded).

    One tuple per entry, in the layer writer's walk order (depth first, names sorted
    bytewise): ``(path, kind, mode, uid, gid, size-or-None, sha256-or-link-target, rdev,
    xattrs, hardlink-group, mtime)``; ``hardlink-group`` is the first path in that order sharing
    the entry's inode, ``mtime`` is whole seconds or None. Overlay xattrs are left out. Walks
    with directory fds, so trees deeper than ``PATH_MAX`` work; symlinks are never followed.
    """
    rows: list[tuple[object, ...]] = []
    first: dict[tuple[int, int], str] = {}
    for full, rel, st in iter_tree(os.fspath(root)):
        kind = _kind(st.st_mode)
        group = None
        if kind != "d" and st.st_nlink > 1:
            group = first.setdefault((st.st_dev, st.st_ino), rel)
        content = _sha256(full) if kind == "f" else os.readlink(full) if kind == "l" else None
        xa: tuple[tuple[str, bytes], ...] = ()
        if xattrs:
            xa = tuple(
                (n, os.getxattr(full, n, follow_symlinks=False))
                for n in sorted(os.listxattr(full, follow_symlinks=False))
                if not n.startswith(OVERLAY_PREFIXES)
            )
        keep_mtime = mtimes and (dir_mtimes or kind != "d")
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in "cb" else None
        size = st.st_size if kind == "f" else None
        mtime = int(st.st_mtime) if keep_mtime else None
        rows.append(
            (rel, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, content, rdev, xa,
             group, mtime)
        )  # fmt: skip
    return rows
