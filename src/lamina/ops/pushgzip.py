"""Layers a registry gets gzip-compressed: compressed once, kept in the store, and (when asked)
uploaded while they are compressed.

A store image may keep layers as plain tar (built or imported here). :func:`compressed_for_push`
gives a view of it (:class:`PushImage`) whose plain layers are gzip blobs: each compressed once
(isal, deterministic), streamed into the blob store and recorded against the layer
(``blobs.json``), so a later push reuses it and ``gc`` keeps it while the layer lives. With
``upload``, the same gzip stream also goes into an upload session
(:class:`~lamina.registry.streamupload.StreamUpload`) so compression and the network overlap;
the view's ``streamed`` set names those blobs.

Invariants: memory stays bounded (1 MiB reads, the upload's few chunks); the gzip blob is
committed to the store before the upload is committed, and an upload is cancelled on any
failure; the config (hence the image id) is never changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import BinaryIO

from lamina._internal.compression import open_compressor
from lamina._internal.lock import flocked
from lamina.blobstore.ingest import Ingest
from lamina.errors import StoreCorrupt
from lamina.image.model import Layer
from lamina.image.partial import BlobImage
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.registry.streamupload import StreamUpload
from lamina.store import Store
from lamina.store.image import StoreImage, StoreLayer
from lamina.store.layerdb import BlobRef

CHUNK = 1 << 20
#: layers compressed at once when a push needs gzip blobs
COMPRESS_WORKERS = 2


def _needs_gzip(desc: Descriptor) -> bool:
    media = desc.media_type
    plain = mediatype.layer_compression(media) == "none"
    return plain and "nondistributable" not in media and "foreign" not in media


class PushImage(BlobImage):
    """A stored image whose plain-tar layers are replaced by their cached gzip blobs."""

    def __init__(
        self,
        image: StoreImage,
        manifest: bytes,
        store: Store,
        streamed: frozenset[Digest] = frozenset(),
    ) -> None:
        super().__init__(manifest)
        self._image = image
        self._store = store
        #: gzip blobs already uploaded while they were compressed
        self.streamed = streamed

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """Config and gzip blobs from the store."""
        return self._store.blobs.open(desc.digest)

    def raw_config(self) -> bytes:
        """The stored config, byte for byte."""
        return self._image.raw_config()

    def layers(self) -> list[Layer]:  # type: ignore[override]
        """Original layers where unchanged (they regenerate blobs as needed), else gzip ones."""
        originals = self._image.layers()
        out: list[Layer] = []
        for new, old in zip(super().layers(), originals, strict=True):
            out.append(old if new.digest() == old.digest() else new)
        return out


def compressed_for_push(
    store: Store, image: StoreImage, *, upload: Callable[[], StreamUpload] | None = None
) -> StoreImage | PushImage:
    """``image``, or a view of it whose plain-tar layers are gzip blobs (compressed once,
    cached in the store; layers compressed in parallel, each streamed). With ``upload``, each
    layer compressed now is also sent into a new upload session while it is compressed."""
    layers = image.layers()
    todo = [layer for layer in layers if _needs_gzip(layer.descriptor)]
    if not todo:
        return image
    gzip_type = (
        mediatype.DOCKER_LAYER_GZIP
        if image.media_type() == mediatype.DOCKER_MANIFEST
        else mediatype.OCI_LAYER_GZIP
    )
    streamed: set[Digest] = set()

    def one(layer: StoreLayer) -> Descriptor:
        sent: list[bool] = []
        desc = gzip_blob(store, layer, gzip_type, upload=upload, sent=sent)
        if sent:
            streamed.add(desc.digest)
        return desc

    with ThreadPoolExecutor(max_workers=COMPRESS_WORKERS) as pool:
        results = list(pool.map(one, todo))
    done = {x.descriptor.digest: d for x, d in zip(todo, results, strict=True)}
    manifest = image.manifest()
    descs = tuple(done.get(layer.descriptor.digest, layer.descriptor) for layer in layers)
    data = replace(manifest, layers=descs).to_json()
    return PushImage(image, data, store, frozenset(streamed))


def gzip_blob(
    store: Store,
    layer: StoreLayer,
    media_type: str,
    *,
    upload: Callable[[], StreamUpload] | None = None,
    sent: list[bool] | None = None,
) -> Descriptor:
    """The gzip blob of ``layer``: a cached one recorded for it, or compressed now (streamed
    into the blob store, then recorded). Idempotent. A blob compressed now is also written
    to ``upload()`` (committed once the store has it) and ``True`` appended to ``sent``."""
    with contextlib.suppress(StoreCorrupt):
        for blob in layer.layer_record().blobs:
            gzip = mediatype.layer_compression(blob.media_type) == "gzip"
            if gzip and store.blobs.has(blob.digest) and store.blobs.size(blob.digest) == blob.size:
                return Descriptor(media_type=media_type, digest=blob.digest, size=blob.size)
    # gc.lock shared: gc must not collect the new blob before the layer records it
    with flocked(store.layout.gc_lock, shared=True):
        stream = upload() if upload is not None else None
        try:
            with layer.open_uncompressed() as tar, store.blobs.begin() as ingest:
                out = ingest if stream is None else _Tee(ingest, stream)
                writer = open_compressor(out, "gzip")  # type: ignore[arg-type]
                while chunk := tar.read(CHUNK):
                    writer.write(chunk)
                writer.close()
                digest, size = ingest.commit()
            ref = BlobRef(digest=digest, media_type=media_type, size=size)
            with flocked(store.layout.lock):
                store.layers.db.add_blob(layer.chain_id, ref)
            if stream is not None:
                stream.commit(digest, size)
                if sent is not None:
                    sent.append(True)
        finally:
            if stream is not None:
                stream.cancel()  # no-op once committed
    return Descriptor(media_type=media_type, digest=digest, size=size)


class _Tee:
    """A write-only file that writes to the store's ingest and to an upload."""

    def __init__(self, first: Ingest, second: StreamUpload) -> None:
        self._first = first
        self._second = second

    def write(self, data: bytes | memoryview) -> int:
        """Write ``data`` to both."""
        n = self._first.write(data)
        self._second.write(data)
        return n


__all__ = ["COMPRESS_WORKERS", "PushImage", "compressed_for_push", "gzip_blob"]
