"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory.

Invariant: a reader never sees a partially written file at the final path; after a crash the
final path holds the old content or the new, and only ``.tmp-*`` files may be left behind
(which ``system check``/gc remove).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_atomic(path: Path, mode: int = 0o644, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary file whose content replaces ``path`` atomically when the block succeeds.

    On an exception the temp file is removed and ``path`` is untouched.
    """
    import tempfile  # lazily: read-only commands never write

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with open_atomic(path, mode, durable=durable) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_output(dest: Path) -> Iterator[Path]:
    """A temp path beside ``dest`` that replaces ``dest`` when the block ends without error.

    For writers that need a *path* (a directory tree, a tar written by another tool) rather
    than a file object. The temp dir is a sibling of ``dest`` (same filesystem, so the final
    ``os.replace`` is atomic) and is removed whatever happens; on error ``dest`` is untouched.
    """
    import shutil
    import tempfile

    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp / "out"
        os.replace(tmp / "out", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_regular(path: Path, limit: int) -> bytes:
    """Read a small regular file without following a final symlink; refuse FIFOs/devices/big.

    Raises OSError (ELOOP for symlinks, EINVAL for non-regular or too large files).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        import stat as _stat

        if not _stat.S_ISREG(st.st_mode):
            raise OSError(22, "not a regular file", str(path))
        if st.st_size > limit:
            raise OSError(27, f"file larger than {limit} bytes", str(path))
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise OSError(27, f"file larger than {limit} bytes", str(path))
        return data
    finally:
        os.close(fd)
