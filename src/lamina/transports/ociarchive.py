"""``oci-archive:FILE[:REF]`` — a tar of an OCI image layout (containers-transports(5)).

Reading indexes the tar in place (see :mod:`lamina.transports.files`: no extraction; member
names are never trusted, blobs must be regular members). Writing streams each blob once,
verified, into a deterministic tar in a temp file next to ``FILE`` (blobs in manifest order,
then ``index.json`` and ``oci-layout``), renamed over ``FILE`` at commit: an existing archive
is replaced whole (as containers/image does), never left half-written. Layers keep their
compression; media types become OCI ones.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import ClassVar

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.verify import VerifyingReader
from lamina.errors import InvalidManifest, NotFound, StorageError
from lamina.image.model import Image, ImageIndex
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.transports.base import Destination, Format, ImageRef
from lamina.transports.files import TarFiles
from lamina.transports.layout import (
    CHUNK,
    INDEX_FILE,
    LAYOUT_BYTES,
    LAYOUT_FILE,
    LayoutSource,
    blob_name,
    index_entries,
    merge_index,
)
from lamina.transports.oci import check_ref_name, split_path_ref
from lamina.transports.tarball import TarAppender


@lazy_dataclass(frozen=True)
class OciArchiveRef(ImageRef):
    """An image in a tar of an OCI layout."""

    transport: ClassVar[str] = "oci-archive"
    path: str
    ref: str | None = None

    @classmethod
    def parse(cls, details: str) -> OciArchiveRef:
        """Parse ``FILE[:REF]``."""
        path, ref = split_path_ref(details, cls.transport)
        return cls(path, check_ref_name(ref, cls.transport) if ref is not None else None)

    def details(self) -> str:
        """``FILE[:REF]``."""
        return self.path if self.ref is None else f"{self.path}:{self.ref}"

    def open(self) -> Image | ImageIndex:
        """The entry's image or index (the archive stays open while they are referenced)."""
        src = LayoutSource(TarFiles(Path(self.path)), str(self))
        return src.load(src.resolve(self.ref))

    def destination(self) -> OciArchiveDestination:
        """A destination that writes the whole archive at commit."""
        return OciArchiveDestination(Path(self.path), self.ref, str(self))


class ArchiveDestination(Destination):
    """Streams every blob straight into a tar beside ``target``; renames it onto ``target``
    at commit.

    Blobs are appended (verified while written, rolled back on mismatch: see
    :mod:`lamina.transports.tarball`) as ``blobs/<alg>/<hex>`` in the order they arrive; the
    format's ``serial_blobs`` makes the copier send them one at a time in manifest order, so
    the archive is deterministic. Subclasses add their metadata members at commit.

    The archive is a user's output file, not the store: like ``cp``, ``skopeo`` and
    ``docker save`` it is not fsynced; the rename makes it appear whole or not at all.
    """

    format: ClassVar[Format] = Format(media_types="oci", indexes=True, serial_blobs=True)

    def __init__(self, target: Path, what: str) -> None:
        super().__init__(what)
        self.target = target
        try:
            if target.is_dir():
                raise IsADirectoryError(21, "is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise StorageError(f"{what}: cannot write {target}: {exc.strerror or exc}") from exc
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "w+b", buffering=CHUNK)
        self.tar = TarAppender(self._file)
        self._blobs: dict[Digest, tuple[int, int]] = {}  # digest -> (data offset, size)
        self._dirs: set[str] = set()
        self._lock = threading.Lock()

    def blob_size(self, digest: Digest) -> int | None:
        """Only this session's blobs count (the archive is rewritten whole)."""
        entry = self._blobs.get(digest)
        return None if entry is None else entry[1]

    def _write_blob(self, reader: VerifyingReader, digest: Digest) -> int:
        with self._lock:
            if digest in self._blobs:  # idempotent: verify the input, keep one copy
                reader.drain(CHUNK)
                return reader.count
            self._blob_dirs(digest)
            self._blobs[digest] = self.tar.add_stream(
                blob_name(digest), reader, reader.expected_size
            )
            return self._blobs[digest][1]

    def put_verified_bytes(self, data: bytes, digest: Digest) -> None:
        """Append small bytes the caller already verified as ``digest`` (a manifest)."""
        with self._lock:
            if digest not in self._blobs:
                self._blob_dirs(digest)
                self._blobs[digest] = (self.tar.add_bytes(blob_name(digest), data), len(data))

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        """A small blob written in this session (e.g. a config); NotFound if absent."""
        entry = self._blobs.get(digest)
        if entry is None:
            raise NotFound(f"blob {digest} was not written")
        if entry[1] > limit:
            raise InvalidManifest(f"blob {digest} is larger than {limit} bytes")
        with self._lock:
            return self.tar.read_at(*entry)

    def _blob_dirs(self, digest: Digest) -> None:
        for d in ("blobs", f"blobs/{digest.algorithm}"):
            if d not in self._dirs:
                self._dirs.add(d)
                self.tar.add_dir(d)

    def _metadata(self) -> list[tuple[str, bytes]]:
        """The non-blob members, written after the blobs at commit."""
        raise NotImplementedError

    def _commit(self) -> None:
        with self._lock:
            for name, data in self._metadata():
                self.tar.add_bytes(name, data)
            self.tar.finish()
            self._file.close()
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.target)

    def _discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class OciArchiveDestination(ArchiveDestination):
    """Writes an OCI layout tar; see the module docstring."""

    def __init__(self, target: Path, name: str | None, what: str) -> None:
        super().__init__(target, what)
        self.name = name
        self._entries: list[Descriptor] = []

    def _put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...]) -> None:
        for n in names:
            check_ref_name(n, "oci-archive")
        self.put_verified_bytes(data, desc.digest)
        self._entries.extend(index_entries(desc, names or ((self.name,) if self.name else ())))

    def _metadata(self) -> list[tuple[str, bytes]]:
        index = merge_index(None, self._entries).to_json()
        return [(INDEX_FILE, index), (LAYOUT_FILE, LAYOUT_BYTES)]
