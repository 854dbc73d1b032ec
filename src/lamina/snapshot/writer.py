"""Deterministic layer tars from a directory tree or an overlay upper dir (image-spec changesets).

:func:`write_layer` streams a tar to ``out`` and returns its diff_id (sha256 of the tar) and size.

Determinism invariants (same tree -> same bytes):
- Order: depth first, each directory's children sorted bytewise by name (``filepath.Walk``
  order), so a parent always precedes its children. No entry for the root itself.
- PAX format, numeric uid/gid only (uname/gname empty), whole-second mtimes clamped to
  ``epoch`` (SOURCE_DATE_EPOCH) when given, atime/ctime never recorded, xattrs sorted by name.
  The archive ends with two zero blocks and no record padding.
- Hard links are detected by (st_dev, st_ino) and emitted as links to the first path in order.
- For ``kind="overlay-upper"``: a 0/0 character device (or a file marked
  ``*.overlay.whiteout``) becomes an empty regular file ``.wh.<name>`` (mode 0600, owner and
  mtime of the whiteout, as ``docker save`` shows); a directory with ``*.overlay.opaque=y`` gets a
  ``<dir>/.wh..wh..opq`` marker (mode = the dir's permission bits, its owner, mtime 0). The
  overlay's own ``trusted.overlay.*``/``user.overlay.*`` xattrs are never copied. Redirect
  and metacopy entries (``redirect_dir``/``metacopy`` mounts) cannot be captured from the upper
  dir alone and raise :class:`~lamina.errors.StorageError`.

Files are streamed through a 1 MiB buffer, never held whole. A file whose size changes while it
is read raises :class:`~lamina.errors.StorageError` (the caller retries or fails). ``out`` is
written sequentially and never closed here.

Earlier tars (:class:`EarlierTar`): a regular file whose path and inode (``st_dev``,
``st_ino``) are listed gets the listed byte range of an earlier layer tar instead of a header
and data made here (consecutive ranges are copied as one). That is byte-identical when the
earlier tar was written by this writer with the same ``epoch`` from the same inode at the
same path as a plain (non-link) entry: the entry is a function of exactly those (layer files
are never changed in place, so an inode's content, mode, owner, times and xattrs are what
they were; it was a plain entry, so it carries no whiteout, redirect or metacopy mark, and
its xattrs are not read again). :mod:`lamina.build.reuse` makes such lists; ``offsets``
records where each plain file entry of this tar lies, for the next one.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import StorageError
from lamina.oci import whiteout
from lamina.oci.digest import Digest
from lamina.snapshot.overlayfmt import (
    overlay_value,
    read_all_xattrs,
    read_xattrs,
    without_overlay,
)
from lamina.snapshot.ustar import ustar_header

BUFSIZE = 1 << 20
#: (start, end) of an entry (header, data and padding) in a tar
Span = tuple[int, int]
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@lazy_dataclass(frozen=True, kw_only=True)
class WrittenLayer:
    """The result of writing a layer tar: its diff_id and uncompressed size in bytes."""

    diff_id: Digest
    size: int


@lazy_dataclass
class EarlierTar:
    """Entries of an earlier layer tar that may be copied (see the module docstring).

    ``fd``: the tar, open for reading (the caller closes it); ``entries``: path ->
    ``(st_dev, st_ino, start, end)``. A range past its end raises StorageError.
    """

    fd: int
    entries: dict[str, tuple[int, int, int, int]]


class TarEmitter:
    """Writes tar entries to ``out`` while hashing; shared by the tree and diff writers.

    ``digest_from``: when ``out`` hashes what it is given itself (a blob ingest), the diff_id
    is taken from it instead of hashing every byte twice. ``earlier`` and ``offsets``: see
    the module docstring.
    """

    def __init__(
        self,
        out: BinaryIO,
        epoch: int | None,
        digest_from: Callable[[], Digest] | None = None,
        *,
        earlier: EarlierTar | None = None,
        offsets: dict[str, Span] | None = None,
    ) -> None:
        self._out = out
        self._epoch = epoch
        self._digest_from = digest_from
        self._hash = hashlib.sha256() if digest_from is None else None
        self._size = 0
        self._links: dict[tuple[int, int], str] = {}
        self._buf = bytearray(BUFSIZE)
        self._earlier = earlier
        self._offsets = offsets
        self._run: Span | None = None  # earlier bytes still to copy (counted in _size)

    def _write(self, data: bytes | memoryview) -> None:
        if self._run is not None:
            self._copy_run()
        self._out.write(data)
        if self._hash is not None:
            self._hash.update(data)
        self._size += len(data)

    def _span(self, start: int, end: int) -> None:
        """Append bytes ``start:end`` of the earlier tar (joined to the pending run if next)."""
        if self._run is not None and self._run[1] == start:
            self._run = (self._run[0], end)
        else:
            if self._run is not None:
                self._copy_run()
            self._run = (start, end)
        self._size += end - start

    def _copy_run(self) -> None:
        assert self._run is not None and self._earlier is not None
        (pos, end), self._run = self._run, None
        view = memoryview(bytearray(min(BUFSIZE, end - pos)))
        while pos < end:
            n = os.preadv(self._earlier.fd, [view[: min(end - pos, len(view))]], pos)
            if n <= 0:
                raise StorageError("writing a layer: the earlier layer tar ends too soon")
            self._out.write(view[:n])
            if self._hash is not None:
                self._hash.update(view[:n])
            pos += n

    def _mtime(self, seconds: float) -> int:
        t = int(seconds)
        return min(t, self._epoch) if self._epoch is not None else t

    def _header(self, info: tarfile.TarInfo, xattrs: dict[str, bytes]) -> None:
        info.uname = info.gname = ""
        if not xattrs and (fast := ustar_header(info)) is not None:
            self._write(fast)  # the same bytes as below, without tarfile's generic path
            return
        info.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
            for k, v in sorted(xattrs.items())
        }
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def entry(
        self, full: str, rel: str, st: os.stat_result, xattrs: dict[str, bytes] | None = None
    ) -> None:
        """Emit ``rel`` described by ``st`` (content and, if not given, xattrs from ``full``)."""
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = self._mtime(st.st_mtime)
        if xattrs is None:
            xattrs = read_xattrs(full)
        fmt = stat.S_IFMT(st.st_mode)
        if fmt != stat.S_IFDIR and st.st_nlink > 1:
            first = self._links.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self._header(info, xattrs)
                return
        if fmt == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
        elif fmt == stat.S_IFLNK:
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(full)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif fmt == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        elif fmt == stat.S_IFREG:
            start = self._size
            info.size = st.st_size
            self._header(info, xattrs)
            self._file_data(full, st.st_size)
            if self._offsets is not None:
                self._offsets[rel] = (start, self._size)
            return
        else:  # sockets cannot be archived (tar and Docker skip them)
            return
        self._header(info, xattrs)

    def copy_earlier(self, rel: str, st: os.stat_result) -> bool:
        """Emit regular file ``rel`` as the earlier tar's entry when that lists this inode at
        this path (and it is not a second link here); False: emit it with :meth:`entry`."""
        known = self._earlier.entries.get(rel) if self._earlier is not None else None
        if known is None or known[0] != st.st_dev or known[1] != st.st_ino:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        if st.st_nlink > 1 and self._links.setdefault((st.st_dev, st.st_ino), rel) != rel:
            return False
        start = self._size
        self._span(known[2], known[3])
        if self._offsets is not None:
            self._offsets[rel] = (start, self._size)
        return True

    def _file_data(self, full: str, size: int) -> None:
        view = memoryview(self._buf)
        fd = os.open(full, _OPEN_FLAGS)
        try:
            left = size
            while left:
                n = os.readv(fd, [view[: min(left, BUFSIZE)]])
                if n == 0:
                    raise StorageError(f"snapshotting {full}: file shrank while being read")
                self._write(view[:n])
                left -= n
            if os.read(fd, 1):
                raise StorageError(f"snapshotting {full}: file grew while being read")
        finally:
            os.close(fd)
        pad = -size % 512
        if pad:
            self._write(bytes(pad))

    def whiteout(self, rel_parent: str, name: str, st: os.stat_result) -> None:
        """Emit ``.wh.<name>`` in ``rel_parent`` (empty file, mode 0600, whiteout's owner)."""
        wh = whiteout.whiteout_name(name)
        info = tarfile.TarInfo(f"{rel_parent}/{wh}" if rel_parent else wh)
        info.mode = 0o600
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = self._mtime(st.st_mtime)
        self._header(info, {})

    def opaque(self, rel_dir: str, st: os.stat_result) -> None:
        """Emit ``<rel_dir>/.wh..wh..opq`` (mode = dir permission bits, dir owner, mtime 0)."""
        info = tarfile.TarInfo(f"{rel_dir}/{whiteout.OPAQUE}")
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = 0
        self._header(info, {})

    def close(self) -> WrittenLayer:
        """Write the end-of-archive marker and return the diff_id and size."""
        self._write(bytes(1024))
        if self._hash is None:
            assert self._digest_from is not None
            return WrittenLayer(diff_id=self._digest_from(), size=self._size)
        return WrittenLayer(diff_id=Digest.from_hasher(self._hash), size=self._size)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def iter_tree(root: str, rel: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield (access path, relative path, lstat) depth first, children sorted bytewise by name.

    Walks with one directory fd at a time (``openat`` down with ``O_NOFOLLOW``, ``..`` back up)
    and without recursion, so trees deeper than ``PATH_MAX`` or the recursion limit work and
    symlinks are never followed. The access path is ``/proc/self/fd/<dirfd>/<name>``: valid
    only until the generator is resumed. ``rel`` starts the walk at that subdirectory.
    """
    fd = os.open(os.path.join(root, rel) if rel else root, _DIR_FLAGS)
    stack: list[tuple[str, list[str], int]] = [(rel, sorted(os.listdir(fd), key=os.fsencode), 0)]
    try:
        while stack:
            base, names, i = stack[-1]
            if i == len(names):
                stack.pop()
                if stack:
                    up = os.open("..", _DIR_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = up
                continue
            stack[-1] = (base, names, i + 1)
            name = names[i]
            child = f"{base}/{name}" if base else name
            st = os.lstat(name, dir_fd=fd)
            yield f"/proc/self/fd/{fd}/{name}", child, st
            if stat.S_ISDIR(st.st_mode):
                down = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = down
                stack.append((child, sorted(os.listdir(fd), key=os.fsencode), 0))
    finally:
        os.close(fd)


def write_layer(
    source: Path,
    out: BinaryIO,
    *,
    kind: Literal["dir", "overlay-upper"],
    epoch: int | None = None,
    digest_from: Callable[[], Digest] | None = None,
    earlier: EarlierTar | None = None,
    offsets: dict[str, Span] | None = None,
) -> WrittenLayer:
    """Stream the tar of ``source`` to ``out``; see the module invariants. Never closes ``out``.

    ``digest_from``: the sha256 of what ``out`` was given, when ``out`` hashes it anyway
    (see :class:`TarEmitter`); the diff_id is then not computed a second time here.
    ``earlier``: entries copied from an earlier tar; ``offsets``: filled with path -> span
    of every plain file entry (see the module docstring).
    """
    if kind not in ("dir", "overlay-upper"):
        raise ValueError(f"unknown layer source kind {kind!r}")
    emitter = TarEmitter(out, epoch, digest_from, earlier=earlier, offsets=offsets)
    upper = kind == "overlay-upper"
    for full, rel, st in iter_tree(os.fspath(source)):
        if earlier is not None and emitter.copy_earlier(rel, st):
            continue  # a plain entry from this inode before: no overlay marks, same xattrs
        xattrs = read_all_xattrs(full)
        if not upper:
            emitter.entry(full, rel, st, without_overlay(xattrs))
            continue
        if (
            overlay_value(xattrs, "redirect") is not None
            or overlay_value(xattrs, "metacopy") is not None
        ):
            raise StorageError(
                f"snapshotting {source}: {rel!r} is an overlay redirect or metacopy entry",
                hint="mount overlays with redirect_dir=off,metacopy=off, or diff two trees",
            )
        if (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0) or (
            stat.S_ISREG(st.st_mode) and st.st_size == 0 and overlay_value(xattrs, "whiteout")
        ):
            parent, _, name = rel.rpartition("/")
            emitter.whiteout(parent, name, st)
            continue
        emitter.entry(full, rel, st, without_overlay(xattrs))
        if stat.S_ISDIR(st.st_mode) and overlay_value(xattrs, "opaque") == b"y":
            emitter.opaque(rel, st)
    return emitter.close()
