"""Images assembled in this process: a config plus layers whose blobs are local files.

Used by ``import`` and by anything that creates a new image (commit, build outputs). The
manifest is generated deterministically from the config and layer descriptors, so the same
inputs always give the same manifest digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from lamina._internal.compression import open_decompressed
from lamina._internal.verify import VerifyingReader
from lamina.image.model import Layer
from lamina.image.partial import closing_reader
from lamina.oci import mediatype
from lamina.oci.config import ImageConfig
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest

_CHUNK = 1 << 20


class _HashingTee:
    """Reads from ``raw`` and hashes what passes (for the compressed digest)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._raw.read(n)
        self.hasher.update(data)
        self.count += len(data)
        return data


class FileLayer:
    """A layer whose blob (compressed or not) is the file at ``path``.

    Invariant: ``digest``/``size`` describe the file and ``diff_id`` its uncompressed content;
    :func:`file_layer` computes all three in one pass.
    """

    def __init__(
        self, path: Path, *, digest: Digest, size: int, diff_id: Digest, media_type: str
    ) -> None:
        self.path = path
        self._digest = digest
        self._size = size
        self._diff_id = diff_id
        self._media_type = media_type

    def digest(self) -> Digest:
        """Digest of the blob file."""
        return self._digest

    def diff_id(self) -> Digest:
        """Digest of the uncompressed tar."""
        return self._diff_id

    def size(self) -> int:
        """Size of the blob file."""
        return self._size

    def media_type(self) -> str:
        """The descriptor media type."""
        return self._media_type

    @property
    def descriptor(self) -> Descriptor:
        """The manifest descriptor."""
        return Descriptor(media_type=self._media_type, digest=self._digest, size=self._size)

    def open_compressed(self) -> BinaryIO:
        """The blob file, verified at EOF."""
        f = self.path.open("rb")
        return closing_reader(VerifyingReader(f, self._digest, self._size), [f])

    def open_uncompressed(self) -> BinaryIO:
        """The uncompressed tar."""
        f = self.path.open("rb")
        stream, _ = open_decompressed(f, what=f"layer {self._digest}")
        return closing_reader(VerifyingReader(stream, self._diff_id), [stream, f])


def file_layer(path: Path) -> FileLayer:
    """Describe the (possibly gzip/zstd compressed) tar at ``path``: one read pass."""
    with path.open("rb") as f:
        tee = _HashingTee(f)
        stream, kind = open_decompressed(tee, what=str(path))
        diff = hashlib.sha256()
        while chunk := stream.read(_CHUNK):
            diff.update(chunk)
    digest = Digest("sha256", tee.hasher.hexdigest())
    diff_id = Digest("sha256", diff.hexdigest())
    return FileLayer(
        path,
        digest=digest,
        size=tee.count,
        diff_id=diff_id,
        media_type=mediatype.oci_layer_type(kind),
    )


def layer_descriptor(layer: Layer) -> Descriptor:
    """The manifest descriptor of any layer (its own, annotations included, when it has one)."""
    own = getattr(layer, "descriptor", None)
    if isinstance(own, Descriptor):
        return own
    return Descriptor(media_type=layer.media_type(), digest=layer.digest(), size=layer.size())


class MemoryImage:
    """An image from a config and layers of any kind (files, stored layers, ...).

    Implements :class:`lamina.image.Image`; e.g. a commit is the base image's stored layers
    plus one new :class:`FileLayer`.
    """

    def __init__(self, config: ImageConfig, layers: Sequence[Layer]) -> None:
        self._config = config
        self._raw_config = config.to_json()
        self._layers = list(layers)
        manifest = Manifest(
            media_type=mediatype.OCI_MANIFEST,
            config=Descriptor.of_bytes(mediatype.OCI_CONFIG, self._raw_config),
            layers=tuple(layer_descriptor(layer) for layer in self._layers),
        )
        self._manifest = manifest
        self._raw_manifest = manifest.to_json()

    def raw_manifest(self) -> bytes:
        """Deterministic manifest bytes."""
        return self._raw_manifest

    def manifest(self) -> Manifest:
        """The manifest."""
        return self._manifest

    def raw_config(self) -> bytes:
        """Deterministic config bytes."""
        return self._raw_config

    def config(self) -> ImageConfig:
        """The config."""
        return self._config

    def layers(self) -> list[Layer]:
        """The layers, base first."""
        return list(self._layers)

    def digest(self) -> Digest:
        """The manifest digest."""
        return Digest.of_bytes(self._raw_manifest)

    def media_type(self) -> str:
        """OCI manifest."""
        return mediatype.OCI_MANIFEST
