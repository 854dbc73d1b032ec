"""``local:NAME`` (or a bare ``NAME``) — an image in the local store (:class:`lamina.store.Store`).

``NAME`` is an image name (normalised: ``busybox`` is ``docker.io/library/busybox:latest``) or,
for reading only, anything :meth:`Store.resolve` accepts (an image id, a manifest digest, a
unique id prefix). The reference carries the store it was parsed with (not part of equality).

Writing: blobs are staged (verified) in a private directory under the store's ``tmp/``; the
store's own blobs count as present, so layers it has are not copied again. At commit each
image is handed to :meth:`Store.put_image`, which applies missing layers and names the image
under the store's locks; the stage is removed either way. Manifests are stored byte for byte
(``Format(media_types="preserve")``), so the stored manifest digest equals the source's.
Multi-platform indexes are resolved to one platform by the copier.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar, cast

from lamina import reference
from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.regex import LazyPattern
from lamina._internal.verify import VerifyingReader
from lamina.errors import InvalidReference, NotFound, UsageError
from lamina.image.model import Image, ImageIndex
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.transports.base import Destination, Format, ImageRef
from lamina.transports.source import BlobSource, SourceImage

if TYPE_CHECKING:
    from lamina.store import Store
    from lamina.transports.layout import BlobStage

_ID_RE = LazyPattern(r"(?:sha256:)?[a-f0-9]{4,64}")
_FULL_ID_RE = re.compile(r"sha256:[a-f0-9]{64}|[a-f0-9]{64}")


@lazy_dataclass(frozen=True)
class LocalRef(ImageRef):
    """An image in the local store."""

    transport: ClassVar[str] = "local"
    name: str
    is_name: bool = True
    store: Store | None = field(default=None, compare=False, repr=False)
    #: what the user typed: a name like ``abcd`` may also be an image id prefix (Docker tries
    #: the name first, then ids)
    typed: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, details: str, *, store: Store | None = None) -> LocalRef:
        """Parse an image name (normalised) or an id / digest (read-only)."""
        if _FULL_ID_RE.fullmatch(details):
            return cls(details, False, store, details)
        try:
            return cls(str(reference.parse(details)), True, store, details)
        except InvalidReference:
            if _ID_RE.fullmatch(details):
                return cls(details, False, store, details)
            raise

    def details(self) -> str:
        """The normalised name or the id as given."""
        return self.name

    def _store(self) -> Store:
        if self.store is None:
            raise UsageError(f"{self}: the local transport needs a store (use --root)")
        return self.store

    def open(self) -> Image | ImageIndex:
        """The stored image (blobs and layers stay in the store)."""
        store = self._store()
        try:
            return cast(Image, store.get_image(self.name))
        except NotFound:
            if self.typed is None or not _ID_RE.fullmatch(self.typed):
                raise
            return cast(Image, store.get_image(self.typed))

    def destination(self) -> LocalDestination:
        """A destination that stores and names the image at commit."""
        if not self.is_name:
            raise InvalidReference(f"{self}: an image id cannot be written to; use a name")
        return LocalDestination(self._store(), self.name, str(self))


class _StagedSource(BlobSource):
    """Blobs from the stage first, then from the store."""

    def __init__(self, stage: BlobStage, store: Store, what: str) -> None:
        self.stage = stage
        self.store = store
        self.what = what

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        if self.stage.size(desc.digest) is not None:
            from lamina.transports.files import DirFiles
            from lamina.transports.layout import blob_name

            return DirFiles(self.stage.dir).open(blob_name(desc.digest))
        return self.store.blobs.open(desc.digest)


class LocalDestination(Destination):
    """Writes into the local store; see the module docstring."""

    format: ClassVar[Format] = Format(media_types="preserve")

    def __init__(self, store: Store, name: str, what: str) -> None:
        super().__init__(what)
        self.store = store
        self.name = name
        tmp = store.layout.tmp
        tmp.mkdir(parents=True, exist_ok=True)
        # imported here: reading a local image (a build's FROM) needs no staging area
        from lamina.transports.layout import BlobStage

        self._stage = BlobStage(Path(tempfile.mkdtemp(prefix="copy-", dir=tmp)))
        self._images: list[tuple[bytes, Descriptor, list[str]]] = []

    def blob_size(self, digest: Digest) -> int | None:
        """Staged, or stored in the store's blob store."""
        staged = self._stage.size(digest)
        if staged is not None:
            return staged
        return self.store.blobs.size(digest) if self.store.blobs.has(digest) else None

    def _write_blob(self, reader: VerifyingReader, digest: Digest) -> int:
        return self._stage.write(reader, digest)

    def _put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...]) -> None:
        wanted = [str(reference.parse(n)) for n in names] or [self.name]
        self._images.append((data, desc, wanted))

    def _commit(self) -> None:
        source = _StagedSource(self._stage, self.store, self.what)
        for data, desc, names in self._images:
            self.store.put_image(SourceImage(source, data, desc), names)
        self._stage.remove()

    def _discard(self) -> None:
        self._stage.remove()
