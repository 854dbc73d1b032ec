"""The local store: the one object the upper layers hold (images, layers, blobs, locking).

Locking (all ``flock``, released by the kernel when a process dies):

- ``<root>/lock``: taken for every mutation of images.json and the layerdb, for short
  critical sections only — never while streaming a layer (layers are applied into temp dirs
  outside it and registered under it).
- ``<root>/gc.lock``: loaders hold it *shared* from their first blob to their image record, so
  gc/prune (which take it exclusively) never collect a blob or layer that a running load has
  written but not yet referenced. ``remove_image`` deletes layers and blobs only when it can
  take it at once; otherwise it leaves them to the next gc.

Lock order: gc.lock before lock; a per-chain apply lock (``tmp/locks``) before lock.
A ``kill -9`` at any point leaves only temp entries (``overlay2/.tmp-*``, ``ingest/put-*``,
``layerdb/sha256/.tmp-*``) or, in a tiny window, a registered layer no image uses; ``check``
reports both as removable and ``gc`` removes them; retrying the load succeeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lamina._internal.compression import open_decompressed
from lamina._internal.lock import flocked
from lamina._internal.verify import own_verifier
from lamina.blobstore.cas import BlobStore
from lamina.blobstore.ingest import Ingest
from lamina.errors import LockTimeout, NotFound, StorageError
from lamina.image.model import Image, Layer
from lamina.oci import canonical, mediatype
from lamina.oci.digest import Digest
from lamina.store import naming
from lamina.store.containers import ContainerStore
from lamina.store.image import StoreImage
from lamina.store.images import ImageDB, ImageRecord, ImageTable
from lamina.store.layerdb import BlobRef, LayerDB, LayerRecord
from lamina.store.layers import LayerDirs, LayerStore
from lamina.store.layout import Layout, chain_ids
from lamina.unionfs.backend import Backend, select_backend

CHUNK = 1 << 20


class _Tee:
    """Reads from ``raw`` and writes every byte read into ``ingest``."""

    def __init__(self, raw: BinaryIO, ingest: Ingest) -> None:
        self._raw = raw
        self._ingest = ingest

    def read(self, n: int = -1, /) -> bytes:
        data = self._raw.read(n)
        if data:
            self._ingest.write(data)
        return data


class Store:
    """A store rooted at ``root`` (created on first use with the right permissions).

    ``driver`` ("overlay2", "fuse-overlayfs", "vfs" or None = probe) is recorded in
    ``<root>/driver`` on creation; a store always keeps the driver it was created with.
    """

    def __init__(self, root: Path, *, driver: str | None = None) -> None:
        self.root = root
        self.layout = Layout(root)
        self.layout.ensure()
        self.blobs = BlobStore(root)
        self.blobs.ensure()
        self.backend: Backend = self._open_backend(driver)
        self.layers = LayerStore(self.layout, self.backend, LayerDB(self.layout.layerdb))
        self.images = ImageDB(self.layout.images_json)
        self.containers = ContainerStore(self.layout, self.layers)

    def _open_backend(self, driver: str | None) -> Backend:
        path = self.layout.driver_file
        recorded = path.read_text().strip() if path.exists() else None
        if recorded and driver and _canon(driver) != recorded:
            raise StorageError(
                f"store {self.root} uses the {recorded} driver, not {driver}",
                hint=f"omit --storage-driver, or use another --root for {driver}",
            )
        backend = select_backend(recorded or driver, self.root)
        if recorded is None:
            from lamina._internal.fileio import write_atomic

            write_atomic(path, _canon(backend.name).encode())
        return backend

    @property
    def driver(self) -> str:
        """The Docker-style driver name: overlay2, fuse-overlayfs or vfs."""
        return _canon(self.backend.name)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store lock (short mutations of images.json / layerdb)."""
        with flocked(self.layout.lock):
            yield

    # ------------------------------------------------------------------ layers
    def create_layer(
        self,
        parent_chain: Digest | None,
        uncompressed: BinaryIO,
        expected_diff_id: Digest | None = None,
    ) -> LayerRecord:
        """Apply a layer tar on ``parent_chain`` and register it (idempotent by chain id).

        Reads ``uncompressed`` to EOF, verified against ``expected_diff_id``; caller closes
        it. The layer is unreferenced until an image uses it (gc may collect it then).
        """
        with flocked(self.layout.gc_lock, shared=True):
            return self.layers.create(
                parent_chain, uncompressed, expected_diff_id, store_lock=self.layout.lock
            )

    def adopt_layer(
        self, parent_chain: Digest | None, diff: Path, diff_id: Digest, size: int
    ) -> LayerRecord:
        """Register a directory built in place (a build step's upper dir) as a layer, by
        renaming it into the store; see :meth:`LayerStore.adopt`. ``diff`` must be on the
        store's filesystem (under ``<root>/tmp``).

        When the plain tar blob ``diff_id`` (``size`` bytes) is already stored (a build step
        commits it first), the record lists it from the start: storing the image later finds
        it there instead of rewriting ``blobs.json`` (two fsyncs per built layer)."""
        plain = BlobRef(digest=diff_id, media_type=mediatype.OCI_LAYER, size=size)
        with flocked(self.layout.gc_lock, shared=True):
            blobs = (plain,) if self.blobs.has(diff_id) else ()
            return self.layers.adopt(
                parent_chain, diff, diff_id, size, store_lock=self.layout.lock, blobs=blobs
            )

    def get_layer(self, chain: Digest) -> LayerRecord:
        """The record of a layer with ``refcount`` = how many images use it; NotFound if absent.

        Counts are derived from images.json on each call, never stored (they cannot drift).
        """
        record = self.layers.get(chain)
        table = self.images.load()
        count = sum(1 for r in table.images.values() if chain in r.layers)
        return dataclasses.replace(record, refcount=count)

    def layer_dirs(self, chain: Digest) -> LayerDirs:
        """Directories to mount the layer ``chain`` (lowers top first, upper, work, merged)."""
        return self.layers.layer_dirs(chain)

    # ------------------------------------------------------------------ images
    def put_image(self, image: Image, names: list[str] | None = None) -> Digest:
        """Store ``image`` (every missing layer applied, every blob kept) and name it.

        Each layer's compressed stream is read once: written to the blob store while being
        decompressed and applied. Layers already present (by chain id) are not applied again.
        Returns the manifest digest. Idempotent; names move to this image (like docker tag).
        """
        wanted = [naming.normalise(n) for n in names or []]
        manifest = image.manifest()
        config = image.config()
        digest = image.digest()
        chains = chain_ids(config.diff_ids)
        with flocked(self.layout.gc_lock, shared=True):
            parent: Digest | None = None
            for layer, chain in zip(image.layers(), chains, strict=True):
                self._put_layer(layer, parent, chain)
                parent = chain
            # Config and manifest: each file is fsynced by its ingest, and one fsync of their
            # blob directory then makes both renames durable, before images.json names them
            # (one directory fsync fewer per stored image; nothing refers to them in between).
            fresh = [d for d in (manifest.config.digest, digest) if not self.blobs.has(d)]
            self.blobs.put_bytes(image.raw_config(), manifest.config.digest, sync_dir=False)
            self.blobs.put_bytes(image.raw_manifest(), digest, sync_dir=False)
            self.blobs.sync_dirs(fresh)
            record = ImageRecord(
                digest=digest,
                id=manifest.config.digest,
                media_type=image.media_type(),
                layers=tuple(chains),
                created=config.created,
                loaded=int(time.time()),
            )

            def change(table: ImageTable) -> None:
                old = table.images.get(digest)
                table.images[digest] = record if old is None else old
                for name in wanted:
                    table.names[name] = digest

            with self.locked():
                for chain in chains:
                    self.layers.get(chain)
                self.images.update(change)
        return digest

    def _put_layer(self, layer: Layer, parent: Digest | None, chain: Digest) -> None:
        ref = BlobRef(digest=layer.digest(), media_type=layer.media_type(), size=layer.size())
        present = self.layers.db.get(chain)
        if present is not None and self.blobs.has(ref.digest):
            if ref not in present.blobs:
                with self.locked():
                    self.layers.db.add_blob(chain, ref)
            return
        with layer.open_compressed() as compressed:
            if present is not None:
                self.blobs.put_stream(compressed, ref.digest, ref.size)
            else:
                # The source's own verifier, when it has one, is the only hash of the blob;
                # for a plain tar (digest == diff_id) it verifies the applied bytes too.
                own = own_verifier(compressed, ref.digest, ref.size)
                with self.blobs.begin(ref.digest, ref.size, voucher=own) as ingest:
                    tee = _Tee(compressed, ingest)
                    stream, kind = open_decompressed(tee, what=f"layer {ref.digest}")
                    plain = kind == "none" and ref.digest == layer.diff_id()
                    self.layers.create(
                        parent,
                        stream,
                        layer.diff_id(),
                        store_lock=self.layout.lock,
                        voucher=own if plain else None,
                    )
                    while tee.read(CHUNK):
                        pass
                    ingest.commit()
        with self.locked():
            self.layers.db.add_blob(chain, ref)

    def resolve(self, ref: str) -> Digest:
        """The manifest digest that a name, image id, manifest digest or id prefix means.

        Names are tried first (normalised), then full digests, then unique hex prefixes of
        image ids (at least 4 characters). Raises NotFound (also for ambiguous prefixes).
        """
        return naming.resolve(self.images.load(), ref)

    def get_image(self, ref: str) -> StoreImage:
        """The stored image ``ref`` means (see :meth:`resolve`)."""
        table = self.images.load()
        digest = naming.resolve(table, ref)
        record = table.record(digest)
        raw = self.blobs.read_small(digest, canonical.MAX_DOCUMENT)
        return StoreImage(record, raw, blobs=self.blobs, layers=self.layers, layout=self.layout)

    def list_images(self) -> list[ImageRecord]:
        """Every image with its names, most recently loaded first."""
        return list(self.images.load().iter_records())

    def tag(self, src: str, name: str) -> None:
        """Point ``name`` at the image ``src`` means (moving it from any other image)."""
        target = naming.normalise(name)
        with self.locked():

            def change(table: ImageTable) -> None:
                table.names[target] = naming.resolve(table, src)

            self.images.update(change)

    def untag(self, name: str) -> None:
        """Remove ``name``; NotFound if no image has it. The image itself is kept."""
        target = naming.normalise(name)
        with self.locked():

            def change(table: ImageTable) -> None:
                if target not in table.names:
                    raise NotFound(f"no image named {target}")
                del table.names[target]

            self.images.update(change)

    def remove_image(self, ref: str, force: bool = False) -> list[tuple[str, str]]:
        """``docker rmi``: untag a name, and delete the image once it has no name left.

        Returns Docker's events: ``("Untagged", name)`` and ``("Deleted", id)``. Removing by
        id an image with several names needs ``force``. Layers and blobs no other image uses
        are deleted (or left to gc while a load is running).
        """
        with self.locked():
            table = self.images.load()
            events, gone = naming.plan_removal(table, ref, force=force)
            if gone is not None:
                del table.images[gone.digest]
            self.images.update(lambda t: _replace(t, table))
        if gone is not None:
            events.append(("Deleted", str(gone.id)))
            with contextlib.suppress(LockTimeout), flocked(self.layout.gc_lock, timeout=0):
                from lamina.store import maintenance

                maintenance.collect(self, only=gone)
        return events

    # ------------------------------------------------------------------ maintenance
    def held_layers(self) -> tuple[set[Digest], set[str]]:
        """Layers and ``overlay2`` dirs held by something other than images.

        Returns (chain ids, dir names): every container's image chain and its
        ``<id>``/``<id>-init`` dirs, so gc and check keep them.
        """
        return self.containers.held()

    def check(self) -> list[str]:
        """Every problem found (``system check``); removable leftovers are prefixed so."""
        from lamina.store import maintenance

        return maintenance.check(self)

    def gc(self) -> int:
        """Remove unreferenced layers and blobs and stale temps; return bytes freed."""
        from lamina.store import maintenance

        with flocked(self.layout.gc_lock):
            return maintenance.collect(self)

    def prune(
        self, *, all_unused: bool = False, keep: frozenset[str] = frozenset()
    ) -> tuple[list[str], int]:
        """``image prune``: delete images without names (``all_unused``: every image), except
        those whose id is in ``keep`` (images containers use), then gc. Returns (ids, bytes)."""
        with self.locked():
            table = self.images.load()
            doomed = [
                r
                for r in table.iter_records()
                if (all_unused or not r.names) and str(r.id) not in keep
            ]
            for r in doomed:
                del table.images[r.digest]
            gone = {r.digest for r in doomed}
            table.names = {n: d for n, d in table.names.items() if d not in gone}
            self.images.update(lambda t: _replace(t, table))
        return [str(r.id) for r in doomed], self.gc()

    def df(self) -> dict[str, int]:
        """Sizes for ``system df``: images, layers, blobs, reclaimable bytes."""
        from lamina.store import maintenance

        return maintenance.disk_usage(self)


def _replace(target: ImageTable, source: ImageTable) -> None:
    target.images = source.images
    target.names = source.names


def _canon(driver: str) -> str:
    return {"overlay": "overlay2", "overlayfs": "overlay2", "fuse": "fuse-overlayfs"}.get(
        driver, driver
    )
