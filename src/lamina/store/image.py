"""Stored images as :class:`lamina.image.Image`: manifests/configs from the blob store, layers
from their cached compressed blobs or regenerated from their ``diff`` dirs.

Invariants:
- Every stream is verified: blobs against the manifest's digest and size, regenerated tars
  against the recorded diff_id (a tar that does not reproduce the diff_id raises
  StoreCorrupt rather than handing out different bytes).
- A regenerated compressed blob is cached in the blob store (as Docker caches what it
  compresses for push) and recorded against the layer; it must hash to the digest the manifest
  names, else DigestMismatch (the manifest cannot be served from this store).
- Temp files of regeneration live in ``<root>/tmp`` and are unlinked as soon as opened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Literal

from lamina._internal.compression import open_compressor
from lamina._internal.lock import flocked
from lamina.blobstore.cas import BlobStore
from lamina.errors import DigestMismatch, StoreCorrupt
from lamina.image.partial import BlobImage, BlobLayer
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.store.images import ImageRecord
from lamina.store.layerdb import BlobRef, LayerRecord
from lamina.store.layers import LayerStore
from lamina.store.layout import Layout

CHUNK = 1 << 20


class StoreImage(BlobImage):
    """An image of the local store (implements :class:`lamina.image.Image`)."""

    def __init__(
        self,
        record: ImageRecord,
        raw_manifest: bytes,
        *,
        blobs: BlobStore,
        layers: LayerStore,
        layout: Layout,
    ) -> None:
        super().__init__(raw_manifest)
        self.record = record
        self._blobs = blobs
        self._layers = layers
        self._layout = layout

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """The stored blob (unverified; the partial bases verify)."""
        return self._blobs.open(desc.digest)

    def id(self) -> Digest:
        """The image id (config digest)."""
        return self.record.id

    def names(self) -> tuple[str, ...]:
        """The names pointing at this image (as of loading the record)."""
        return self.record.names

    def layers(self) -> list[BlobLayer]:
        """The layers, base first; each knows its chain id and layer record."""
        out: list[BlobLayer] = []
        for layer, chain in zip(super().layers(), self.record.layers, strict=True):
            out.append(StoreLayer(self, layer.descriptor, layer.diff_id(), chain))
        return out

    def graph_driver(self) -> dict[str, object]:
        """Docker's ``GraphDriver`` object for this image."""
        return self._layers.graph_driver(self.record.top_layer)


class StoreLayer(BlobLayer):
    """A stored layer: cached blob when present, else regenerated from the layer's diff."""

    def __init__(self, image: StoreImage, desc: Descriptor, diff_id: Digest, chain: Digest):
        super().__init__(image, desc, diff_id)
        self.chain_id = chain
        self._store_image = image

    def layer_record(self) -> LayerRecord:
        """The layer's record in the layer database."""
        return self._store_image._layers.get(self.chain_id)

    def open_compressed(self) -> BinaryIO:
        """The blob, verified; regenerated (and cached) if the store has no copy."""
        if not self._store_image._blobs.has(self.descriptor.digest):
            self._regenerate_blob()
        return super().open_compressed()

    def open_uncompressed(self) -> BinaryIO:
        """The tar, from the cached blob or regenerated from the diff dir (verified)."""
        if self._store_image._blobs.has(self.descriptor.digest):
            return super().open_uncompressed()
        return self._open_regenerated_tar()

    def _open_regenerated_tar(self) -> BinaryIO:
        from lamina.snapshot import write_layer

        img = self._store_image
        record = self.layer_record()
        kind: Literal["dir", "overlay-upper"] = (
            "dir" if img._layers.backend.copies else "overlay-upper"
        )
        if img._layers.backend.copies and record.parent is not None:
            raise StoreCorrupt(
                f"layer {self.descriptor.digest}: no cached blob and the vfs driver keeps only "
                "full trees",
                hint="remove the image and load it again",
            )
        img._layout.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=img._layout.tmp)
        f = os.fdopen(fd, "w+b")
        try:
            os.unlink(name)
            written = write_layer(img._layers.diff_dir(record), f, kind=kind, epoch=None)
            diff_id = written.diff_id
            if diff_id != self.diff_id():
                raise StoreCorrupt(
                    f"layer {self.diff_id()}: regenerated tar has diff_id {diff_id}",
                    hint="the layer cannot be reproduced; load the image again from its source",
                )
            f.seek(0)
            return f
        except BaseException:
            f.close()
            raise

    def _regenerate_blob(self) -> None:
        img = self._store_image
        desc = self.descriptor
        compression = mediatype.layer_compression(desc.media_type)
        with self._open_regenerated_tar() as tar:
            ingest = img._blobs.begin(desc.digest, desc.size)
            with ingest:
                writer = open_compressor(ingest, compression)  # type: ignore[arg-type]
                while chunk := tar.read(CHUNK):
                    writer.write(chunk)
                writer.close()
                try:
                    ingest.commit()
                except DigestMismatch as exc:
                    raise exc.with_context(
                        f"recompressing layer {self.diff_id()} for manifest {img.digest()}"
                    ) from None
        with flocked(img._layout.lock), contextlib.suppress(StoreCorrupt):
            ref = BlobRef(digest=desc.digest, media_type=desc.media_type, size=desc.size)
            img._layers.db.add_blob(self.chain_id, ref)
