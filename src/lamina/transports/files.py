"""Read-only views of a layout's files: a directory, or a tar archive indexed in place.

Both views answer ``open(name)`` for clean relative names and refuse anything that is not a
regular file: symlinks (to ``/dev/zero``, or out of the layout), FIFOs, devices, sparse or
linked tar members. Names are looked up exactly; they never reach the filesystem as paths.

Archives: an uncompressed tar is indexed once (headers only; ``tarfile`` seeks over data) and
members are then read with ``pread`` at their data offset, so a 2 GB archive costs one header
walk and no copy. This is faster than extracting to a temporary directory, which writes every
byte a second time. A compressed archive (``docker save | gzip``) is first decompressed into an
anonymous temporary file (there is no random access into gzip), then indexed the same way.
Archives whose member names contain ``..`` or are absolute, or that name a file twice, are
refused: two tools could otherwise read two different files for one name.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import shutil
import stat
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from lamina._internal.compression import open_decompressed
from lamina.errors import NotFound, StorageError, UnsafeArchive

if TYPE_CHECKING:  # tarfile is imported where an archive is indexed, not for directories
    import tarfile

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _components(name: str, what: str) -> list[str]:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UnsafeArchive(f"{what}: unsafe path {name[:200]!r}")
    return parts


class DirFiles:
    """Files under a directory, opened component by component with ``O_NOFOLLOW``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, name: str) -> BinaryIO:
        """A regular file ``name`` (e.g. ``blobs/sha256/<hex>``); NotFound if missing."""
        parts = _components(name, str(self.root))
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise NotFound(f"{self.root}: {exc.strerror}") from None
        try:
            for part in parts[:-1]:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
            file_fd = os.open(parts[-1], _OPEN_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise self._error(name, exc) from None
        finally:
            os.close(fd)
        return _checked_regular(file_fd, f"{self.root}/{name}")

    def _error(self, name: str, exc: OSError) -> Exception:
        where = f"{self.root}/{name}"
        if exc.errno == errno.ENOENT:
            return NotFound(f"{where}: no such file")
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return UnsafeArchive(f"{where}: is (or passes through) a symlink; refusing it")
        return StorageError(f"{where}: {exc.strerror}")

    def read(self, name: str, limit: int) -> bytes:
        """A small file whole; refuses files over ``limit`` bytes."""
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise UnsafeArchive(f"{self.root}/{name}: larger than {limit} bytes")
        return data

    def exists(self, name: str) -> bool:
        """True if ``name`` exists (any type); used to tell layouts apart."""
        return os.path.lexists(self.root / name)


def _checked_regular(fd: int, where: str) -> BinaryIO:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeArchive(f"{where}: not a regular file; refusing it")
    os.set_blocking(fd, True)
    return open(fd, "rb", buffering=1 << 16)


@dataclass(frozen=True, slots=True)
class _Member:
    offset: int
    size: int
    kind: str  # "file", "symlink", "other"
    linkname: str = ""


class _Section(io.RawIOBase):
    """``size`` bytes of a shared fd from ``offset`` via pread (thread-safe, no seek)."""

    def __init__(self, owner: TarFiles, offset: int, size: int) -> None:
        self._owner = owner
        self._pos = offset
        self._end = offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview | bytearray) -> int:  # type: ignore[override]
        n = min(len(buf), self._end - self._pos)
        if n <= 0:
            return 0
        got = self._owner.preadinto(memoryview(buf)[:n], self._pos)  # no intermediate copy
        if not got:
            raise UnsafeArchive("archive truncated while reading a member")
        self._pos += got
        return got


class TarFiles:
    """Members of a tar archive, indexed once and read in place (see the module docstring).

    The archive's fd stays open until :meth:`close` or garbage collection.
    """

    def __init__(self, path: Path, *, tmpdir: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed below or owned by self
        except OSError as exc:
            raise NotFound(f"{path}: {exc.strerror}") from None
        try:
            self._fd = self._plain_fd(src, tmpdir)
        finally:
            src.close()
        self._finalizer = weakref.finalize(self, os.close, self._fd)
        self.members = self._index()

    def _plain_fd(self, src: BinaryIO, tmpdir: Path | None) -> int:
        stream, kind = open_decompressed(src, what=str(self.path))
        if kind == "none":
            return os.dup(src.fileno())
        tmp = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115 - fd duplicated and kept
        try:
            shutil.copyfileobj(stream, tmp, 1 << 20)
            return os.dup(tmp.fileno())
        finally:
            tmp.close()

    def _index(self) -> dict[str, _Member]:
        import tarfile

        members: dict[str, _Member] = {}
        raw = os.fdopen(os.dup(self._fd), "rb")
        try:
            raw.seek(0)  # the fd shares its offset with the stream that sniffed it
            with tarfile.open(fileobj=raw, mode="r:") as tar:
                for info in tar:
                    self._add(members, info)
        except tarfile.TarError as exc:
            raise UnsafeArchive(f"{self.path}: not a valid tar archive: {exc}") from None
        finally:
            raw.close()
        return members

    def _add(self, members: dict[str, _Member], info: tarfile.TarInfo) -> None:
        name = info.name.removeprefix("./").rstrip("/")
        if info.isdir() and name in ("", "."):
            return
        clean = posixpath.normpath(name) if name else name
        if not name or clean != name or _is_escape(name):
            raise UnsafeArchive(f"{self.path}: unsafe member name {info.name[:200]!r}")
        if info.isdir():
            return
        if name in members:
            raise UnsafeArchive(f"{self.path}: member {name!r} appears more than once")
        if info.isreg() and not info.issparse():
            members[name] = _Member(info.offset_data, info.size, "file")
        elif info.issym():
            members[name] = _Member(0, 0, "symlink", info.linkname)
        else:
            members[name] = _Member(0, 0, "other")

    def resolve(self, name: str, *, follow: bool) -> str:
        """The regular member ``name`` names, following in-archive symlinks if ``follow``."""
        for _ in range(16):
            _components(name, str(self.path))
            member = self.members.get(name)
            if member is None:
                raise NotFound(f"{self.path}: no member {name!r}")
            if member.kind == "file":
                return name
            if member.kind != "symlink" or not follow:
                raise UnsafeArchive(f"{self.path}: member {name!r} is not a regular file")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            if member.linkname.startswith("/") or _is_escape(target):
                raise UnsafeArchive(f"{self.path}: member {name!r} links outside the archive")
            name = target
        raise UnsafeArchive(f"{self.path}: too many symlinks resolving {name!r}")

    def open(self, name: str, *, follow: bool = False) -> BinaryIO:
        """A stream of regular member ``name``; the caller closes it (the archive stays open)."""
        member = self.members[self.resolve(name, follow=follow)]
        section = _Section(self, member.offset, member.size)
        return cast(BinaryIO, io.BufferedReader(section, 1 << 20))

    def read(self, name: str, limit: int, *, follow: bool = False) -> bytes:
        """A small member whole; refuses members over ``limit`` bytes."""
        member = self.members[self.resolve(name, follow=follow)]
        if member.size > limit:
            raise UnsafeArchive(f"{self.path}: member {name!r} is larger than {limit} bytes")
        with self.open(name, follow=follow) as f:
            return f.read()

    def preadinto(self, buf: memoryview, offset: int) -> int:
        """Fill ``buf`` from the (plain) archive at ``offset``; bytes read (0 at EOF)."""
        if not self._finalizer.alive:
            raise StorageError(f"{self.path}: archive already closed")
        return os.preadv(self._fd, [buf], offset)

    def exists(self, name: str) -> bool:
        """True if the archive has a member ``name``."""
        return name in self.members

    def close(self) -> None:
        """Close the archive (streams already open keep failing cleanly). Idempotent."""
        self._finalizer()


def _is_escape(name: str) -> bool:
    return name.startswith("/") or name == ".." or name.startswith("../") or "/../" in name
