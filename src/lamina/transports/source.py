"""Sources built on one primitive: open a blob by descriptor.

A transport that can open blobs subclasses :class:`BlobSource`; :meth:`BlobSource.load` then
returns a :class:`SourceImage` (a :class:`lamina.image.BlobImage`) or a :class:`SourceIndex`
for a descriptor, reading the manifest bounded and verified against the descriptor.

Invariants: a descriptor's media type and the document's own ``mediaType`` must agree on
manifest vs index (no confusion attacks); nested indexes are followed at most
:data:`MAX_DEPTH` deep; every blob stream handed out is verified by the image layer when read
to EOF (see :mod:`lamina.image.partial`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import BinaryIO, TypeGuard, cast

from lamina.errors import InvalidManifest, NotFound
from lamina.image.model import Image, ImageIndex
from lamina.image.partial import BlobImage, read_verified
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Index, sniff_media_type
from lamina.oci.platform import Platform

#: Index -> index -> ... nesting accepted before the document is refused.
MAX_DEPTH = 4


class BlobSource(ABC):
    """Something that opens blobs by descriptor (a layout directory, an archive)."""

    #: Human-readable name for messages ("oci:/x:v1").
    what: str = "source"

    @abstractmethod
    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """A new unverified stream of blob ``desc``; the caller closes it. NotFound if absent."""

    def read_document(self, desc: Descriptor, what: str) -> bytes:
        """A manifest/index/config blob, read whole and verified against ``desc``."""
        with self.open_blob(desc) as f:
            return read_verified(f, desc, what)

    def load(self, desc: Descriptor, depth: int = 0) -> Image | ImageIndex:
        """The image or index ``desc`` points at (kind checked against the document)."""
        if depth > MAX_DEPTH:
            raise InvalidManifest(f"{self.what}: indexes nested more than {MAX_DEPTH} deep")
        if not (mediatype.is_manifest(desc.media_type) or mediatype.is_index(desc.media_type)):
            raise InvalidManifest(
                f"{self.what}: {desc.digest} has media type {desc.media_type!r}, "
                "which is neither an image manifest nor an index"
            )
        data = self.read_document(desc, "manifest")
        declared = sniff_media_type(data)
        if mediatype.is_index(desc.media_type) != mediatype.is_index(declared):
            raise InvalidManifest(
                f"{self.what}: descriptor {desc.digest} says {desc.media_type!r} "
                f"but the document is {declared!r}"
            )
        if mediatype.is_index(desc.media_type):
            return SourceIndex(self, data, desc, depth)
        return SourceImage(self, data, desc)


class SourceImage(BlobImage):
    """An image whose blobs come from a :class:`BlobSource`."""

    def __init__(self, source: BlobSource, data: bytes, desc: Descriptor) -> None:
        super().__init__(data, desc)
        self.source = source
        self.descriptor = desc

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """Delegate to the source."""
        return self.source.open_blob(desc)


class SourceIndex:
    """An index (or Docker manifest list) whose children come from a :class:`BlobSource`."""

    def __init__(self, source: BlobSource, data: bytes, desc: Descriptor, depth: int = 0) -> None:
        self.source = source
        self.descriptor = desc
        self._raw = data
        self._index = Index.from_json(data)
        self._depth = depth

    def raw_manifest(self) -> bytes:
        """The index's exact bytes."""
        return self._raw

    def index(self) -> Index:
        """The parsed index."""
        return self._index

    def digest(self) -> Digest:
        """Digest of the raw index."""
        return self.descriptor.digest

    def media_type(self) -> str:
        """The index's media type."""
        return self._index.media_type or self.descriptor.media_type

    def child(self, desc: Descriptor) -> Image | ImageIndex:
        """The image or nested index ``desc`` (one of ``index().manifests``) points at."""
        return self.source.load(desc, self._depth + 1)

    def image(self, desc: Descriptor) -> Image:
        """The child image ``desc`` points at; InvalidManifest if it is an index."""
        child = self.child(desc)
        if is_index(child):
            raise InvalidManifest(f"{self.source.what}: {desc.digest} is an index, not an image")
        return cast(Image, child)


def select_image(
    item: Image | ImageIndex, platform: Platform | None = None, what: str = "image"
) -> Image:
    """Resolve ``item`` to one image: itself, or the index entry for ``platform`` (default host).

    Nested indexes are searched depth first in document order.
    """
    want = platform or Platform.host()
    found = _select(item, want, 0)
    if found is None:
        raise NotFound(
            f"{what}: no image for platform {want} in the index",
            hint="choose one of the platforms the index lists with --platform",
        )
    return found


def is_index(item: Image | ImageIndex) -> TypeGuard[ImageIndex]:
    """True for indexes / manifest lists (they have ``index()``)."""
    return hasattr(item, "index")


def child_of(idx: ImageIndex, desc: Descriptor) -> Image | ImageIndex:
    """The image or nested index ``desc`` points at (nested ones need a ``child`` method)."""
    opener = getattr(idx, "child", None)
    if opener is None:
        return idx.image(desc)
    return cast("Image | ImageIndex", opener(desc))


def _select(item: Image | ImageIndex, want: Platform, depth: int) -> Image | None:
    if not is_index(item):
        return cast(Image, item)
    if depth > MAX_DEPTH:
        raise InvalidManifest(f"indexes nested more than {MAX_DEPTH} deep")
    index = item.index()
    chosen = index.select(want)
    if chosen is not None:
        return item.image(chosen)
    for desc in index.manifests:
        if not mediatype.is_index(desc.media_type):
            continue
        if desc.platform is not None and not want.matches(desc.platform):
            continue
        found = _select(child_of(item, desc), want, depth + 1)
        if found is not None:
            return found
    return None
