"""Partial bases: implement a blob opener, inherit the rest.

A source that can open blobs by descriptor subclasses :class:`BlobImage` and implements
``open_blob``; manifests and configs are then read (bounded, verified) and layers built for it.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import BinaryIO, cast

from lamina._internal.compression import open_decompressed
from lamina._internal.verify import VerifyingReader
from lamina.errors import InvalidManifest
from lamina.oci import canonical, mediatype
from lamina.oci.config import ImageConfig
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest


def read_verified(stream: BinaryIO, desc: Descriptor, what: str) -> bytes:
    """Read a small blob fully, verifying size and digest; the caller closes ``stream``."""
    if desc.size > canonical.MAX_DOCUMENT:
        raise InvalidManifest(f"{what} {desc.digest} is too large ({desc.size} bytes)")
    reader = VerifyingReader(stream, desc.digest, desc.size, what=f"{what} {desc.digest}")
    data = reader.read(desc.size + 1)
    reader.drain()
    return data


class BlobImage(ABC):
    """An image backed by something that can open blobs by descriptor."""

    def __init__(self, manifest_bytes: bytes, manifest_desc: Descriptor | None = None) -> None:
        self._raw_manifest = manifest_bytes
        self._manifest = Manifest.from_json(manifest_bytes)
        self._digest = manifest_desc.digest if manifest_desc else Digest.of_bytes(manifest_bytes)

    @abstractmethod
    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """A new stream of the blob ``desc`` (unverified; callers verify)."""

    def raw_manifest(self) -> bytes:
        """The manifest's exact bytes."""
        return self._raw_manifest

    def manifest(self) -> Manifest:
        """The parsed manifest."""
        return self._manifest

    def digest(self) -> Digest:
        """Digest of the raw manifest."""
        return self._digest

    def media_type(self) -> str:
        """The manifest's media type (OCI if it declares none)."""
        return self._manifest.media_type or mediatype.OCI_MANIFEST

    @functools.cached_property
    def _config_bytes(self) -> bytes:
        desc = self._manifest.config
        with self.open_blob(desc) as f:
            return read_verified(f, desc, "config")

    def raw_config(self) -> bytes:
        """The config's exact bytes (verified against the manifest)."""
        return self._config_bytes

    @functools.cached_property
    def _config(self) -> ImageConfig:
        cfg = ImageConfig.from_json(self._config_bytes)
        if len(cfg.diff_ids) != len(self._manifest.layers):
            raise InvalidManifest(
                f"image {self._digest}: manifest has {len(self._manifest.layers)} layers "
                f"but config has {len(cfg.diff_ids)} diff_ids"
            )
        return cfg

    def config(self) -> ImageConfig:
        """The parsed config."""
        return self._config

    def layers(self) -> list[BlobLayer]:
        """The layers, base first."""
        cfg = self.config()
        return [
            BlobLayer(self, desc, diff_id)
            for desc, diff_id in zip(self._manifest.layers, cfg.diff_ids, strict=True)
        ]


class BlobLayer:
    """A layer of a :class:`BlobImage`; streams are verified against digest / diff_id at EOF."""

    def __init__(self, image: BlobImage, desc: Descriptor, diff_id: Digest) -> None:
        self._image = image
        self.descriptor = desc
        self._diff_id = diff_id

    def digest(self) -> Digest:
        """Digest of the compressed blob."""
        return self.descriptor.digest

    def diff_id(self) -> Digest:
        """Digest of the uncompressed tar."""
        return self._diff_id

    def size(self) -> int:
        """Size of the compressed blob."""
        return self.descriptor.size

    def media_type(self) -> str:
        """The descriptor's media type."""
        return self.descriptor.media_type

    def open_compressed(self) -> BinaryIO:
        """The blob, verified against digest and size when read to EOF."""
        raw = self._image.open_blob(self.descriptor)
        what = f"layer {self.descriptor.digest}"
        reader = VerifyingReader(raw, self.descriptor.digest, self.descriptor.size, what=what)
        return closing_reader(reader, [raw])

    def open_uncompressed(self) -> BinaryIO:
        """The uncompressed tar, verified against the blob digest and the diff_id at EOF."""
        compressed = self.open_compressed()
        stream, _ = open_decompressed(compressed, what=f"layer {self.descriptor.digest}")
        reader = VerifyingReader(stream, self._diff_id, None, what=f"layer {self._diff_id}")
        return closing_reader(reader, [stream, compressed])


class _Closing:
    """A reader that closes the streams beneath it."""

    def __init__(self, reader: VerifyingReader, closers: list[BinaryIO]) -> None:
        self._reader = reader
        self._closers = closers

    def read(self, n: int = -1, /) -> bytes:
        return self._reader.read(n)

    def readinto(self, buf: bytearray | memoryview) -> int:
        return self._reader.readinto(buf)

    @property
    def verifier(self) -> VerifyingReader:
        """The reader that verifies this stream at EOF (a sink checking the same digest and
        size can read through it instead of hashing every byte a second time)."""
        return self._reader

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        for c in self._closers:
            c.close()

    def __enter__(self) -> BinaryIO:
        return cast(BinaryIO, self)

    def __exit__(self, *exc: object) -> None:
        self.close()


def closing_reader(reader: VerifyingReader, closers: list[BinaryIO]) -> BinaryIO:
    """A BinaryIO-like reader over ``reader`` that closes ``closers`` when closed."""
    return cast(BinaryIO, _Closing(reader, closers))
