"""The transport contract: :class:`ImageRef` (where an image lives) and :class:`Destination`.

A reference is ``transport:details`` (containers-transports(5)); ``str(ref)`` always parses
back to an equal ref. Sources *return* the :mod:`lamina.image` model; sinks accept blobs and
manifests through a :class:`Destination`, which the generic copier in
:mod:`lamina.transports.copy` drives.

Destination invariants:

- every blob is verified (digest, and size unless the caller says the size is not known yet)
  while it is written; nothing unverified becomes visible;
- nothing is visible at the destination until :meth:`Destination.commit`; leaving the
  ``with`` block without committing (an exception, or simply no commit) calls
  :meth:`Destination.discard`, which removes everything written so far. Both are idempotent;
- ``put_blob`` may be called from several threads at once for *different* digests.
"""

from __future__ import annotations

import io
import threading
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO, ClassVar, Literal

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.verify import Readable, VerifyingReader, own_verifier
from lamina.errors import LaminaError, NotFound, StorageError, UsageError
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Index, Manifest
from lamina.oci.platform import Platform

if TYPE_CHECKING:
    from types import TracebackType

    from lamina.image.model import Image, ImageIndex


@lazy_dataclass(frozen=True, kw_only=True)
class Format:
    """What a destination stores; the copier converts images to it deterministically.

    ``media_types``: ``"oci"`` converts Docker schema 2 media types to OCI ones, ``"preserve"``
    keeps manifests byte for byte. ``uncompressed_layers`` stores every layer as its plain tar
    (digest == diff_id). ``indexes``: multi-platform indexes are stored whole; otherwise the
    copier picks one platform. ``serial_blobs``: blobs go into one stream (an archive), so the
    copier puts them one at a time, in manifest order (deterministic output).
    """

    media_types: Literal["oci", "preserve"] = "preserve"
    uncompressed_layers: bool = False
    indexes: bool = False
    serial_blobs: bool = False


class ImageRef(ABC):
    """A parsed ``transport:details`` reference. Subclasses are frozen dataclasses."""

    transport: ClassVar[str]

    @abstractmethod
    def details(self) -> str:
        """The part after ``transport:``; ``parse(str(ref)) == ref``."""

    @abstractmethod
    def open(self) -> Image | ImageIndex:
        """The image or index the reference names (nothing is copied; blobs open lazily)."""

    @abstractmethod
    def destination(self) -> Destination:
        """A new destination writing to this reference (use it as a context manager)."""

    def open_image(self, platform: Platform | None = None) -> Image:
        """The single-platform image: an index is resolved for ``platform`` (default: host)."""
        from lamina.transports.source import select_image

        return select_image(self.open(), platform)

    def __str__(self) -> str:
        return f"{self.transport}:{self.details()}"


class Destination(ABC):
    """A sink for one copy operation; see the module docstring for the invariants."""

    #: What this destination can store (the copier converts to it).
    format: ClassVar[Format] = Format()

    def __init__(self, what: str) -> None:
        self.what = what
        self._state: Literal["open", "committed", "discarded"] = "open"
        self._state_lock = threading.Lock()

    # -- what implementations provide -------------------------------------------------------

    @abstractmethod
    def blob_size(self, digest: Digest) -> int | None:
        """The size of blob ``digest`` if the destination (or this session) has it, else None."""

    @abstractmethod
    def _write_blob(self, reader: VerifyingReader, digest: Digest) -> int:
        """Stage the stream under ``digest``: read it to EOF *before* keeping it; return size."""

    @abstractmethod
    def _put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...]) -> None:
        """Record ``data`` (already verified against ``desc``) as a top-level image/index."""

    @abstractmethod
    def _commit(self) -> None:
        """Make everything staged visible, atomically where the format allows."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove everything staged; leave the destination as it was before."""

    # -- the public contract ----------------------------------------------------------------

    def has_blob(self, desc: Descriptor) -> bool:
        """True if a blob with ``desc``'s digest and size is present (it can be reused)."""
        return self.blob_size(desc.digest) == desc.size

    def put_blob(
        self, stream: Readable | BinaryIO, desc: Descriptor, *, verify_size: bool = True
    ) -> Descriptor:
        """Write ``stream`` as blob ``desc``, verifying digest (and size) while writing.

        Returns ``desc`` with the size actually written. The caller closes ``stream``.
        Idempotent: putting a blob that exists re-verifies the input and keeps one copy.
        """
        self._check_open()
        size = desc.size if verify_size else None
        reader = own_verifier(stream, desc.digest, size) or VerifyingReader(
            stream, desc.digest, size, what=f"blob {desc.digest}"
        )
        try:
            written = self._write_blob(reader, desc.digest)
        except LaminaError as exc:
            raise exc.with_context(f"writing to {self.what}") from None
        except OSError as exc:
            raise StorageError(
                f"writing to {self.what}: blob {desc.digest}: {exc.strerror or exc}"
            ) from exc
        return replace(desc, size=written)

    def put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...] = ()) -> None:
        """Store manifest/index ``data`` as a top-level entry, tagged ``names``.

        With no ``names`` the destination uses the name its reference carries (if any).
        Children of an index are blobs: write them with :meth:`put_blob`.
        """
        self._check_open()
        reader = VerifyingReader(io.BytesIO(data), desc.digest, desc.size, what="manifest")
        reader.drain()
        try:
            self._check_references(data, desc)
            self._put_manifest(data, desc, names)
        except LaminaError as exc:
            raise exc.with_context(f"writing to {self.what}") from None
        except OSError as exc:
            raise StorageError(f"writing to {self.what}: {exc.strerror or exc}") from exc

    def _check_references(self, data: bytes, desc: Descriptor) -> None:
        """Refuse a manifest/index whose blobs were not written (no dangling entries)."""
        if mediatype.is_index(desc.media_type):
            refs: tuple[Descriptor, ...] = Index.from_json(data).manifests
        else:
            manifest = Manifest.from_json(data)
            refs = (manifest.config, *manifest.layers)
        for ref in refs:
            if ref.urls:  # foreign layers live elsewhere by design
                continue
            if not self.has_blob(ref):
                raise NotFound(f"{desc.digest} references {ref.digest}, which was not written")

    def commit(self) -> None:
        """Publish what was written. Idempotent; an error leaves nothing partial behind."""
        with self._state_lock:
            if self._state == "committed":
                return
            self._check_open()
            try:
                self._commit()
            except BaseException as exc:
                self._state = "discarded"
                self._discard()
                if isinstance(exc, OSError):
                    raise StorageError(f"committing {self.what}: {exc.strerror or exc}") from exc
                raise
            self._state = "committed"

    def discard(self) -> None:
        """Throw away everything written (no effect after commit). Idempotent."""
        with self._state_lock:
            if self._state != "open":
                return
            self._state = "discarded"
            self._discard()

    def _check_open(self) -> None:
        if self._state != "open":
            raise UsageError(f"{self.what}: destination already {self._state}")

    def __enter__(self) -> Destination:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()
