"""Ingest files: where a blob is written, hashed and verified before it becomes visible.

An :class:`Ingest` is a temp file in ``<root>/ingest/`` that its writer holds an exclusive
``flock`` on from creation until it is committed or aborted. Garbage collection only removes
ingest files it can lock itself *and* that are older than a grace period, so a live writer's
file is never removed (a ``kill -9`` releases the lock, and the leftover becomes collectable).

Invariants:
- ``commit()`` verifies the size and digest of everything written, fsyncs the file, and only
  then renames it to ``blobs/<alg>/<hex>`` (atomic: a reader sees the whole blob or nothing).
- ``commit()`` is idempotent with respect to content: when the blob already exists with the
  right size the temp file is dropped and the existing blob kept.
- Any failure (mismatch, I/O error) removes the temp file; ``abort()`` may be called twice.
- With a ``voucher`` (a :class:`~lamina._internal.verify.VerifyingReader` expecting the same
  digest, through which the writer reads exactly the bytes it writes, from the first) the
  ingest does not hash them a second time: ``commit()`` then requires the voucher to have
  verified all of them, and compares the digest as usual.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lamina._internal.fileio import fsync_dir
from lamina._internal.verify import VerifyingReader
from lamina.errors import DigestMismatch, StorageError
from lamina.oci.digest import Digest

INGEST_PREFIX = "put-"
#: Ingest files older than this and not locked by a live writer are removed by gc.
STALE_AFTER = 15 * 60.0


class Ingest:
    """A blob being written. Use as a context manager: leaving it without commit aborts.

    ``final_path`` maps a digest to its place in the store (supplied by the BlobStore).
    """

    def __init__(
        self,
        ingest_dir: Path,
        final_path: Callable[[Digest], Path],
        expected: Digest | None = None,
        size: int | None = None,
        *,
        voucher: VerifyingReader | None = None,
    ) -> None:
        if voucher is not None and (voucher.expected != expected or voucher.count):
            raise ValueError("an ingest voucher must expect the same digest and be unread")
        ingest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix=INGEST_PREFIX, dir=ingest_dir)
        self._fd: int | None = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.path = Path(name)
        self._final_path = final_path
        self.expected = expected
        self.expected_size = size
        import hashlib  # here, not at import: commands that write no blob skip OpenSSL's set-up

        self._hasher = hashlib.new(expected.algorithm if expected else "sha256")
        self._voucher = voucher
        self.count = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; raises DigestMismatch as soon as the declared size is exceeded."""
        if self._fd is None:
            raise StorageError(f"writing blob ingest {self.path.name}: already closed")
        self.count += len(data)
        if self.expected_size is not None and self.count > self.expected_size:
            self.abort()
            raise DigestMismatch(
                f"blob {self.expected or ''}: more than the declared {self.expected_size} bytes"
            )
        if self._voucher is None:
            self._hasher.update(data)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        return len(data)

    def digest(self) -> Digest:
        """The digest of what was written so far (the voucher's, when there is one)."""
        if self._voucher is not None:
            return self._voucher.digest()
        return Digest(self._hasher.name, self._hasher.hexdigest())

    def commit(self, *, sync_dir: bool = True) -> tuple[Digest, int]:
        """Verify, fsync and move into place; returns (digest, size). Closes the ingest.

        ``sync_dir=False`` leaves the directory fsync that makes the rename durable to the
        caller (:meth:`BlobStore.sync_dirs`), which must do it before anything refers to the
        blob: several blobs' renames then cost one directory fsync.
        """
        if self._fd is None:
            raise StorageError(f"committing blob ingest {self.path.name}: already closed")
        try:
            got = self.digest()
            if self._voucher is not None and not (
                self._voucher.verified and self._voucher.count == self.count
            ):
                raise DigestMismatch(f"blob {self.expected}: content was not verified to the end")
            if self.expected_size is not None and self.count != self.expected_size:
                raise DigestMismatch(
                    f"blob {self.expected or got}: size {self.count} does not match "
                    f"the declared {self.expected_size}"
                )
            if self.expected is not None and got != self.expected:
                raise DigestMismatch(
                    f"blob: content has digest {got}, expected {self.expected}",
                    hint="the source sent different bytes than its manifest promised",
                )
            os.fsync(self._fd)
            os.fchmod(self._fd, 0o644)
            final = self._final_path(got)
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not _is_regular_of_size(final, self.count):
                os.replace(self.path, final)
                if sync_dir:
                    fsync_dir(final.parent)
            return got, self.count
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove the temp file (if still there) and release the lock. Idempotent."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _is_regular_of_size(path: Path, size: int) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    import stat

    return stat.S_ISREG(st.st_mode) and st.st_size == size


def iter_stale(ingest_dir: Path, stale_after: float = STALE_AFTER) -> Iterator[tuple[Path, int]]:
    """Yield (path, size) of ingest files older than ``stale_after`` with no live writer.

    Each yielded file is flock-ed by this generator while the caller handles it (removal is
    safe then); the lock is dropped when the generator advances.
    """
    now = time.time()
    try:
        entries = list(os.scandir(ingest_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            # a symlink or vanished entry: report it for removal with size 0
            if os.path.islink(entry.path):
                yield Path(entry.path), 0
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            st = os.fstat(fd)
            if now - st.st_mtime >= stale_after:
                yield Path(entry.path), st.st_size
        finally:
            os.close(fd)
