"""Protocols for what callers need from a layer, an image and an index.

Invariants:
- ``Image.layers()`` is base first and has as many entries as ``config().diff_ids``.
- ``Layer.open_compressed()`` / ``open_uncompressed()`` return *new* streams each call (they are
  re-callable); the caller closes them. Streams are verified against ``digest()``/``diff_id()``
  when read to EOF by the layer implementations that can (see ``partial``).
- ``raw_manifest()`` / ``raw_config()`` are the exact bytes whose digests are the manifest
  digest and the image id; they are never re-serialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO, Protocol

from lamina.oci.config import ImageConfig
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Index, Manifest


class Layer(Protocol):
    """One layer of an image."""

    def digest(self) -> Digest:
        """Digest of the compressed blob as the manifest names it."""
        ...

    def diff_id(self) -> Digest:
        """Digest of the uncompressed tar."""
        ...

    def size(self) -> int:
        """Size of the compressed blob."""
        ...

    def media_type(self) -> str:
        """The layer descriptor's media type."""
        ...

    def open_compressed(self) -> BinaryIO:
        """A new stream of the blob as the manifest describes it."""
        ...

    def open_uncompressed(self) -> BinaryIO:
        """A new stream of the uncompressed tar."""
        ...


class Image(Protocol):
    """A single-platform image."""

    def raw_manifest(self) -> bytes:
        """The manifest's exact bytes."""
        ...

    def manifest(self) -> Manifest:
        """The parsed manifest."""
        ...

    def raw_config(self) -> bytes:
        """The config's exact bytes."""
        ...

    def config(self) -> ImageConfig:
        """The parsed config."""
        ...

    def layers(self) -> Sequence[Layer]:
        """The layers, base first."""
        ...

    def digest(self) -> Digest:
        """Digest of the raw manifest."""
        ...

    def media_type(self) -> str:
        """The manifest's media type."""
        ...


class ImageIndex(Protocol):
    """A multi-platform index (or Docker manifest list)."""

    def raw_manifest(self) -> bytes:
        """The index's exact bytes."""
        ...

    def index(self) -> Index:
        """The parsed index."""
        ...

    def image(self, desc: Descriptor) -> Image:
        """The child image that ``desc`` points at."""
        ...

    def digest(self) -> Digest:
        """Digest of the raw index."""
        ...
