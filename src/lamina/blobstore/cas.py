"""A content-addressed blob store on a plain directory, shared by processes without a daemon.

Layout: ``<root>/blobs/<alg>/<hex>`` for blobs, ``<root>/ingest/put-*`` for blobs being
written (see :mod:`lamina.blobstore.ingest`).

The contract (the same one umoci's CAS states, kept here):

- **Verified**: a blob is only ever stored under the digest of its bytes; ``put_*`` hash while
  streaming and refuse content whose digest or size differs from what the caller expected.
- **Atomic**: a blob appears under its final name whole or not at all (temp file, fsync,
  rename, fsync of the directory). A crash leaves at most an ingest temp file behind.
- **Idempotent**: putting a blob that already exists succeeds; the input is still drained and
  verified (callers may be tee-ing it elsewhere), and the existing file is kept.
- **Concurrent-safe**: every writer has its own ingest file; two processes putting the same
  blob both succeed (rename is atomic and the content identical). Readers that opened a blob
  keep reading the same inode even if it is replaced or deleted.
- **Safe to read**: :meth:`BlobStore.open` refuses symlinks, FIFOs and devices placed in the
  blob directory (O_NOFOLLOW|O_NONBLOCK, then S_ISREG on the open descriptor).

Permissions: ``blobs/`` and ``ingest/`` are 0700 (blobs may hold setuid binaries of layers).
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from lamina._internal.fileio import fsync_dir
from lamina._internal.verify import Readable, VerifyingReader
from lamina.blobstore.ingest import STALE_AFTER, Ingest, iter_stale
from lamina.errors import DigestMismatch, NotFound, StoreCorrupt
from lamina.oci.digest import Digest

CHUNK = 1 << 20


class BlobStore:
    """Blobs under ``root`` (the directory that holds ``blobs/`` and ``ingest/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"

    def ensure(self) -> None:
        """Create the directories with their permissions (idempotent)."""
        for d in (self.blobs_dir, self.blobs_dir / "sha256", self.ingest_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.blobs_dir, 0o700)
        os.chmod(self.ingest_dir, 0o700)

    def path(self, digest: Digest) -> Path:
        """Where ``digest`` lives (whether or not it exists)."""
        return self.blobs_dir / digest.algorithm / digest.encoded

    def has(self, digest: Digest) -> bool:
        """True if a regular file is stored for ``digest`` (not verified; see :meth:`verify`)."""
        try:
            return stat.S_ISREG(os.lstat(self.path(digest)).st_mode)
        except FileNotFoundError:
            return False

    def size(self, digest: Digest) -> int:
        """The stored size of ``digest``; NotFound if absent."""
        try:
            st = os.lstat(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the store") from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreCorrupt(f"blob {digest}: not a regular file")
        return st.st_size

    def begin(
        self,
        expected: Digest | None = None,
        size: int | None = None,
        *,
        voucher: VerifyingReader | None = None,
    ) -> Ingest:
        """Start writing a blob; the caller ``write``s then ``commit``s (or aborts) the Ingest.

        ``voucher``: see :class:`~lamina.blobstore.ingest.Ingest` (saves a second hash pass).
        """
        return Ingest(self.ingest_dir, self.path, expected, size, voucher=voucher)

    def put_stream(
        self,
        stream: Readable,
        expected: Digest | None = None,
        size: int | None = None,
        *,
        sync_dir: bool = True,
    ) -> tuple[Digest, int]:
        """Store everything ``stream`` yields; return (digest, size). Caller closes ``stream``.

        When ``expected`` is given and a blob of that digest (and ``size``, if given) already
        exists, the stream is only drained and verified. Raises DigestMismatch on bad content.
        ``sync_dir=False``: see :meth:`Ingest.commit` (then call :meth:`sync_dirs`).
        """
        if expected is not None and self._present(expected, size):
            reader = VerifyingReader(stream, expected, size, what=f"blob {expected}")
            reader.drain(CHUNK)
            return expected, reader.count
        with self.begin(expected, size) as ingest:
            while chunk := stream.read(CHUNK):
                ingest.write(chunk)
            return ingest.commit(sync_dir=sync_dir)

    def put_bytes(
        self, data: bytes, expected: Digest | None = None, *, sync_dir: bool = True
    ) -> tuple[Digest, int]:
        """Store ``data``; same contract as :meth:`put_stream`."""
        size = len(data) if expected else None
        return self.put_stream(io.BytesIO(data), expected, size, sync_dir=sync_dir)

    def sync_dirs(self, digests: Iterable[Digest]) -> None:
        """fsync the directories of ``digests`` once each: makes the renames of blobs put with
        ``sync_dir=False`` durable (call it before anything refers to them)."""
        for directory in sorted({self.path(d).parent for d in digests}):
            fsync_dir(directory)

    def _present(self, digest: Digest, size: int | None) -> bool:
        try:
            st = os.lstat(self.path(digest))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size)

    def open(self, digest: Digest) -> BinaryIO:
        """A new unverified stream of the blob; the caller closes it.

        Raises NotFound if absent and StoreCorrupt if the entry is a symlink, FIFO or device.
        """
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the store") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise StoreCorrupt(f"blob {digest}: not a regular file (symlink?)") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StoreCorrupt(f"blob {digest}: not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb", buffering=CHUNK)
        except BaseException:
            os.close(fd)
            raise

    def open_verified(self, digest: Digest, size: int | None = None) -> BinaryIO:
        """Like :meth:`open` but verified against ``digest`` (and ``size``) at EOF."""
        from lamina.image.partial import closing_reader

        raw = self.open(digest)
        return closing_reader(VerifyingReader(raw, digest, size, what=f"blob {digest}"), [raw])

    def read_small(self, digest: Digest, limit: int) -> bytes:
        """Read and verify a small blob (manifest, config) fully; refuse more than ``limit``."""
        with self.open(digest) as f:
            reader = VerifyingReader(f, digest, None, what=f"blob {digest}")
            data = reader.read(limit + 1)
            if len(data) > limit:
                raise StoreCorrupt(f"blob {digest}: larger than {limit} bytes")
            reader.drain()
            return data

    def delete(self, digest: Digest) -> int:
        """Remove ``digest``; returns the bytes freed (0 if it was absent). Idempotent."""
        path = self.path(digest)
        try:
            size = os.lstat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    def iter_digests(self) -> Iterator[Digest]:
        """Every stored digest (sorted per algorithm); names that are not digests are skipped."""
        if not self.blobs_dir.is_dir():
            return
        for alg_dir in sorted(self.blobs_dir.iterdir()):
            if not alg_dir.is_dir() or alg_dir.is_symlink():
                continue
            for entry in sorted(os.listdir(alg_dir)):
                try:
                    yield Digest(alg_dir.name, entry)
                except Exception:
                    continue

    def iter_strays(self) -> Iterator[Path]:
        """Entries under ``blobs/`` whose names are not digests (reported by check)."""
        if not self.blobs_dir.is_dir():
            return
        for alg_dir in sorted(self.blobs_dir.iterdir()):
            if not alg_dir.is_dir() or alg_dir.is_symlink():
                yield alg_dir
                continue
            for entry in sorted(os.listdir(alg_dir)):
                try:
                    Digest(alg_dir.name, entry)
                except Exception:
                    yield alg_dir / entry

    def verify(self, digest: Digest) -> None:
        """Rehash the stored blob; raise DigestMismatch/StoreCorrupt/NotFound on a problem."""
        with self.open(digest) as f:
            reader = VerifyingReader(f, digest, None, what=f"blob {digest}")
            try:
                reader.drain(CHUNK)
            except DigestMismatch as exc:
                raise StoreCorrupt(
                    f"stored {exc.message}",
                    hint="remove the images that use it and load them again",
                ) from None

    def iter_stale_ingest(self, stale_after: float = STALE_AFTER) -> Iterator[tuple[Path, int]]:
        """Ingest temp files no live writer holds and older than ``stale_after`` seconds."""
        return iter_stale(self.ingest_dir, stale_after)

    def gc(self, keep: set[Digest], *, stale_after: float = STALE_AFTER) -> int:
        """Delete every blob not in ``keep`` and stale ingest files; return the bytes freed.

        Callers must hold the store lock so no image referencing a blob is registered
        concurrently (a blob put but not yet referenced would otherwise be lost).
        """
        freed = 0
        for digest in list(self.iter_digests()):
            if digest not in keep:
                freed += self.delete(digest)
        for path, size in self.iter_stale_ingest(stale_after):
            try:
                os.unlink(path)
                freed += size
            except FileNotFoundError:
                pass
        return freed
