"""Exporting a build's step results to registry caches: the write side of :mod:`.regcache`.

:func:`export_cache` runs once the image is stored. For each ``--cache-to`` target it picks
the records (``mode=max``: every step of this build; ``min``: the steps whose result is part of
the final image; ``merge``: plus the target's imported records this build did not replace),
makes sure each layer's gzip blob is in the target repository, then pushes the config document
and finally the manifest under the target's tag (so a reader never sees a manifest whose blobs
are missing).

Where a layer's gzip blob comes from, cheapest first: the cache it was imported from, when
that is the same repository (nothing moves) or another repository of the same registry (a
cross-repository mount); else the store — a gzip form already recorded for the layer (by an
earlier export or push), or the layer's tar compressed now (deterministic gzip, streamed into
the blob store and recorded against the layer, so a later ``push`` reuses it). A registry hit
from another registry is downloaded first (:meth:`RegistryCache.materialize`).

Invariants: nothing is held in memory but one chunk; failures are warnings (the image is
already stored; see :mod:`.regcache`); a record whose layer the store no longer has is left
out rather than exported wrong.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from lamina._internal.compression import open_compressor
from lamina._internal.lock import flocked
from lamina.build.progress import Vertex
from lamina.build.regcache import (
    CONFIG_TYPE,
    CacheSpec,
    Hit,
    Produced,
    RegistryCache,
    RemoteRecord,
    encode_config,
)
from lamina.errors import LaminaError
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest
from lamina.registry import RegistryClient
from lamina.store import Store
from lamina.store.layerdb import BlobRef

CHUNK = 1 << 20


def export_cache(cache: RegistryCache, store: Store, final_chains: Iterable[Digest]) -> None:
    """Push this build's records to every target of ``cache`` (warnings on failure)."""
    final = set(final_chains)
    for spec in cache.targets:
        vertex = cache.reporter.start(f"exporting cache to {spec}")
        try:
            _export(cache, store, spec, final, vertex)
        except LaminaError as exc:
            cache.reporter.warning(f"exporting cache to {spec}: {exc.message}")
        vertex.done()


def _selected(cache: RegistryCache, spec: CacheSpec, final: set[Digest]) -> dict[str, Produced]:
    out: dict[str, Produced] = {}
    if spec.merge:
        for key, rec in cache.imported.get(str(spec), {}).items():
            if not cache.expired(rec):
                out[key] = Produced(
                    diff_id=rec.diff_id, size=rec.size, chain=None, result=None,
                    remote=Hit(record=rec, spec=spec),
                )  # fmt: skip
    with cache.lock:
        produced = dict(cache.produced)
    for key, item in produced.items():
        if spec.mode == "max" or item.result is None or item.result in final:
            out[key] = item
    return out


def _export(
    cache: RegistryCache, store: Store, spec: CacheSpec, final: set[Digest], vertex: Vertex
) -> None:
    client = cache.client_for(spec.host)
    records: dict[str, RemoteRecord] = {}
    layers: dict[Digest, Descriptor] = {}
    now = int(cache.now())
    for key, item in sorted(_selected(cache, spec, final).items()):
        created = item.remote.record.created if item.remote is not None else now
        if item.diff_id is None:
            records[key] = RemoteRecord(diff_id=None, created=created)
            continue
        desc = _layer_blob(cache, store, client, spec, item, vertex)
        if desc is None:
            continue
        layers[desc.digest] = desc
        records[key] = RemoteRecord(
            diff_id=item.diff_id, size=item.size, blob=desc, created=created
        )
    config = encode_config(records)
    config_desc = Descriptor(
        media_type=CONFIG_TYPE, digest=Digest.of_bytes(config), size=len(config)
    )
    vertex.log(f"writing config {config_desc.digest}")
    client.put_blob(spec.repository, io.BytesIO(config), config_desc)
    manifest = Manifest(
        config=config_desc, layers=tuple(layers[d] for d in sorted(layers, key=str))
    ).to_json()
    vertex.log(f"writing cache manifest {Digest.of_bytes(manifest)} ({len(records)} records)")
    client.put_manifest(spec.repository, spec.tag, manifest, mediatype.OCI_MANIFEST)


def _layer_blob(
    cache: RegistryCache, store: Store, client: RegistryClient, spec: CacheSpec,
    item: Produced, vertex: Vertex,
) -> Descriptor | None:  # fmt: skip
    """The gzip blob of ``item`` in ``spec``'s repository (put there if needed); None when
    the store no longer has the layer."""
    remote = item.remote
    if remote is not None and remote.record.blob is not None and remote.spec.host == spec.host:
        shared = remote.record.blob
        if remote.spec.repository == spec.repository:
            return shared
        if client.mount_blob(spec.repository, shared, remote.spec.repository):
            vertex.log(f"mounted layer {shared.digest} from {remote.spec.repository}")
            return shared
    if remote is not None:
        cache.materialize(store, item.chain)
    if item.chain is None:
        return None
    desc = _gzip(store, item.chain, item.diff_id)
    if desc is None:
        return None
    if not client.has_blob(spec.repository, desc.digest):
        vertex.log(f"writing layer {desc.digest}")
        with store.blobs.open(desc.digest) as f:
            client.put_blob(spec.repository, f, desc)
    return desc


def _gzip(store: Store, chain: Digest, diff_id: Digest | None) -> Descriptor | None:
    """The recorded gzip blob of the layer ``chain``, or one compressed now and recorded."""
    record = store.layers.db.get(chain)
    if record is None or diff_id is None:
        return None
    for blob in record.blobs:
        if mediatype.layer_compression(blob.media_type) == "gzip" and store.blobs.has(blob.digest):
            return Descriptor(
                media_type=mediatype.OCI_LAYER_GZIP, digest=blob.digest, size=blob.size
            )
    if not store.blobs.has(diff_id):
        return None
    with flocked(store.layout.gc_lock, shared=True):
        with store.blobs.open(diff_id) as tar, store.blobs.begin() as ingest:
            writer = open_compressor(ingest, "gzip")  # type: ignore[arg-type]
            while chunk := tar.read(CHUNK):
                writer.write(chunk)
            writer.close()
            digest, size = ingest.commit()
        with flocked(store.layout.lock):
            store.layers.db.add_blob(
                chain, BlobRef(digest=digest, media_type=mediatype.OCI_LAYER_GZIP, size=size)
            )
    return Descriptor(media_type=mediatype.OCI_LAYER_GZIP, digest=digest, size=size)
