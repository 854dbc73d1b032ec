"""The registry build cache: step results kept in a registry repository, shared by machines.

``--cache-to type=registry,ref=HOST/REPO[:TAG][,mode=min|max]`` exports, and
``--cache-from type=registry,ref=...`` imports, the results of build steps (BuildKit's
``type=registry`` cache); ``--cache-repo HOST/REPO`` (Kaniko's flag) means both, with
``mode=max``, and keeps the entries it imported that this build did not touch (the flags are
parsed by :mod:`.cachespec`; the export is :mod:`.cacheexport`).

Format (one design chosen: BuildKit's single cache manifest, as with ``image-manifest=true``,
rather than Kaniko's one tag per step key). ``REPO:TAG`` (default tag ``buildcache``) names an
OCI image manifest whose

- ``config`` is a JSON document of media type :data:`CONFIG_TYPE`::

    {"version": 1, "records": [{"key": HEX, "diff_id": "sha256:..." | null,
                                "size": N, "blob": "sha256:..." | null, "created": UNIX}, ...]}

  one record per step key (:func:`lamina.build.cache.step_key`), sorted by key: the step's
  layer diff_id and uncompressed size (null for a step that made no layer), the digest of
  its gzip blob in ``layers``, and when the record was first exported (for ``cache_ttl``);
- ``layers`` are those gzip blobs (``application/vnd.oci.image.layer.v1.tar+gzip``), sorted
  by digest, each a plain layer of the registry repository (so pushes of images built from the
  cache mount or skip them).

Why one manifest: a lookup is then free (the whole table comes with two small requests at the
start of the build; no request per step), and the repository holds one tag instead of
thousands. The cost: two builds exporting to the same ref at once race (last writer wins),
as with BuildKit.

Laziness (the point of a remote cache): a hit only moves the stage's chain id forward (chain
ids need diff_ids, not bytes) and remembers where the layer is. Bytes are fetched by
:meth:`RegistryCache.materialize` when a step first needs the files of that chain (a RUN or
COPY on it, ``COPY --from`` it, a mount of it) or when the final image is stored; a hit whose
successors also hit costs nothing, so a second machine downloads only the final image's layers.
Every download is verified twice: the gzip blob by its digest, the tar by the diff_id.

Failures never fail the build (BuildKit warns for imports; Kaniko for exports too): an
unreachable registry, refused credentials or a corrupt cache manifest give one warning line
(no secrets: registry errors are redacted) and a build without that cache; a malformed record
is a miss. A cache layer whose bytes do not match its record fails the step that needs it
(BuildError naming the blob): a cache can make a build fail, never make a wrong image.
Trust: a cache says "this key gave this layer"; as with any shared build cache, only import
caches you trust to say so.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field, replace
from datetime import timedelta
from typing import BinaryIO, cast

from lamina._internal.compression import open_decompressed
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.blobstore.ingest import Ingest
from lamina.build.cachespec import CacheSpec, cache_repo_specs, parse_cache_spec
from lamina.build.progress import Reporter
from lamina.errors import BuildError, LaminaError, RegistryNotFound
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest
from lamina.registry import RegistryClient, TransportOptions
from lamina.store import Store, chain_id
from lamina.transports.docker import Registries

CONFIG_TYPE = "application/vnd.lamina.buildcache.config.v1+json"
MAX_CONFIG = 16 << 20
CHUNK = 1 << 20
#: attempts per cache request (image pulls use the client's default)
CACHE_ATTEMPTS = 2


# -- the record format ---------------------------------------------------------------------


@lazy_dataclass(frozen=True, kw_only=True)
class RemoteRecord:
    """One step result in a cache manifest (see the module docstring).

    Invariant: ``blob`` is set exactly when ``diff_id`` is (a step that made a layer).
    """

    diff_id: Digest | None
    size: int = 0
    blob: Descriptor | None = None
    created: int = 0


def encode_config(records: Mapping[str, RemoteRecord]) -> bytes:
    """The cache config document (deterministic: records sorted by key)."""
    items = []
    for key in sorted(records):
        rec = records[key]
        items.append(
            {
                "key": key,
                "diff_id": str(rec.diff_id) if rec.diff_id else None,
                "size": rec.size,
                "blob": str(rec.blob.digest) if rec.blob else None,
                "created": rec.created,
            }
        )
    return json.dumps({"version": 1, "records": items}, sort_keys=True).encode()


def _record(item: object, layers: Mapping[Digest, Descriptor]) -> tuple[str, RemoteRecord]:
    """One record; ValueError/KeyError/TypeError when it is malformed."""
    if not isinstance(item, dict):
        raise TypeError("record is not an object")
    key = item["key"]
    if not isinstance(key, str) or len(key) != 64 or key.strip("0123456789abcdef"):
        raise ValueError("bad key")
    created = int(item.get("created") or 0)
    if item.get("diff_id") is None:
        return key, RemoteRecord(diff_id=None, created=created)
    size = item["size"]
    if not isinstance(size, int) or size < 0:
        raise ValueError("bad size")
    blob = layers[Digest.parse(item["blob"])]
    return key, RemoteRecord(
        diff_id=Digest.parse(item["diff_id"]), size=size, blob=blob, created=created
    )


def decode_config(data: bytes, manifest: Manifest) -> tuple[dict[str, RemoteRecord], int]:
    """(records by key, number of malformed records skipped). ValueError if the document
    itself is not a cache config."""
    obj = json.loads(data)
    if not isinstance(obj, dict) or obj.get("version") != 1:
        raise ValueError("not a version 1 cache config")
    items = obj.get("records")
    if not isinstance(items, list):
        raise ValueError("no records list")
    layers = {d.digest: d for d in manifest.layers}
    out: dict[str, RemoteRecord] = {}
    bad = 0
    for item in items:
        try:
            key, rec = _record(item, layers)
        except (ValueError, KeyError, TypeError, LaminaError):
            bad += 1
            continue
        out.setdefault(key, rec)
    return out, bad


# -- the cache a build uses ----------------------------------------------------------------


@lazy_dataclass(frozen=True, kw_only=True)
class Hit:
    """A record found for a key, and the cache it came from."""

    record: RemoteRecord
    spec: CacheSpec


@lazy_dataclass(frozen=True, kw_only=True)
class Produced:
    """What one step of this build gave, for the export: its layer (None: empty), the chain
    of its layer, the stage's chain after it, and the registry hit it came from, if any."""

    diff_id: Digest | None
    size: int
    chain: Digest | None
    result: Digest | None
    remote: Hit | None = None


@lazy_dataclass
class RegistryCache:
    """The registry caches of one build (thread-safe; see the module docstring).

    ``client_for(host)`` returns a client the caller closes; ``now`` is the clock for TTLs.
    """

    sources: Sequence[CacheSpec]
    targets: Sequence[CacheSpec]
    client_for: Callable[[str], RegistryClient]
    reporter: Reporter
    ttl: timedelta | None = None
    now: Callable[[], float] = time.time
    records: dict[str, Hit] = field(default_factory=dict)
    imported: dict[str, dict[str, RemoteRecord]] = field(default_factory=dict)
    produced: dict[str, Produced] = field(default_factory=dict)
    pending: dict[Digest, tuple[Digest | None, Hit]] = field(default_factory=dict)
    #: gzip blobs downloaded so far (what this machine needed)
    downloaded: list[Digest] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def load(self) -> None:
        """Import every source (once, before the build); a failure is a warning."""
        for spec in self.sources:
            vertex = self.reporter.start(f"importing cache manifest from {spec}")
            try:
                found = self._fetch(spec)
            except RegistryNotFound:
                vertex.log("no cache manifest yet")
                found = {}
            except LaminaError as exc:
                self.reporter.warning(f"importing cache from {spec}: {exc.message}")
                found = {}
            self.imported[str(spec)] = found
            fresh = {k: r for k, r in found.items() if not self.expired(r)}
            for key, rec in fresh.items():
                self.records.setdefault(key, Hit(record=rec, spec=spec))
            vertex.log(f"{len(fresh)} cached steps")
            vertex.done()

    def _fetch(self, spec: CacheSpec) -> dict[str, RemoteRecord]:
        client = self.client_for(spec.host)
        data, _media, _ = client.get_manifest(
            spec.repository, spec.tag, accept=[mediatype.OCI_MANIFEST]
        )
        try:
            manifest = Manifest.from_json(data)
            if manifest.config.media_type != CONFIG_TYPE or manifest.config.size > MAX_CONFIG:
                raise ValueError("not a lamina build cache manifest")
            with client.open_blob(spec.repository, manifest.config) as f:
                raw = f.read(MAX_CONFIG + 1)
            records, bad = decode_config(raw, manifest)
        except (ValueError, LaminaError) as exc:
            text = exc.message if isinstance(exc, LaminaError) else str(exc)
            self.reporter.warning(f"importing cache from {spec}: corrupt cache manifest: {text}")
            return {}
        if bad:
            self.reporter.warning(f"importing cache from {spec}: skipped {bad} malformed records")
        return records

    def expired(self, rec: RemoteRecord) -> bool:
        """True when ``rec`` is older than the TTL (``cache_ttl``)."""
        return self.ttl is not None and rec.created + self.ttl.total_seconds() < self.now()

    def take(self, key: str, parent: Digest | None) -> RemoteRecord | None:
        """The record for ``key``, applied on the chain ``parent``: remembered for download
        (its layer's chain id is ``chain_id(parent, diff_id)``) and export. None on a miss."""
        with self.lock:
            hit = self.records.get(key)
            if hit is None:
                return None
            rec = hit.record
            chain = chain_id(parent, rec.diff_id) if rec.diff_id is not None else None
            if chain is not None:
                self.pending.setdefault(chain, (parent, hit))
            self.produced[key] = Produced(
                diff_id=rec.diff_id, size=rec.size, chain=chain, result=chain or parent,
                remote=hit,
            )  # fmt: skip
            return rec

    def note(self, key: str, produced: Produced) -> None:
        """Remember a step result made (or found in the local cache) by this build."""
        with self.lock:
            self.produced[key] = produced

    def materialize(self, store: Store, chain: Digest | None) -> None:
        """Make the store hold the layer ``chain`` and its tar blob, downloading the registry
        hits below it that it lacks (parents first). No-op for chains that are not pending.
        BuildError when a cache layer cannot be fetched or does not match its record."""
        with self.lock:
            todo: list[Digest] = []
            current = chain
            while current is not None and current in self.pending:
                if _present(store, current, self.pending[current][1].record):
                    break
                todo.append(current)
                current = self.pending[current][0]
            for item in reversed(todo):
                parent, hit = self.pending[item]
                self._download(store, parent, item, hit)

    def _download(self, store: Store, parent: Digest | None, chain: Digest, hit: Hit) -> None:
        rec = hit.record
        assert rec.blob is not None and rec.diff_id is not None
        where = f"fetching cache layer {rec.blob.digest} from {hit.spec}"
        try:
            client = self.client_for(hit.spec.host)
            gz = client.open_blob(hit.spec.repository, rec.blob)
            with gz, store.blobs.begin(rec.diff_id, rec.size) as ingest:
                tar, _ = open_decompressed(gz, what=where)
                tee = _Tee(tar, ingest)
                if store.layers.db.get(chain) is None:
                    store.create_layer(parent, cast(BinaryIO, tee), rec.diff_id)
                while tee.read(CHUNK):
                    pass
                ingest.commit()
        except LaminaError as exc:
            raise BuildError(
                f"{where}: {exc.message}",
                hint="the cache is unusable: build without --cache-from, or with --no-cache",
            ) from exc
        self.downloaded.append(rec.blob.digest)


def _present(store: Store, chain: Digest, rec: RemoteRecord) -> bool:
    """True if the store has the layer ``chain`` and its tar blob."""
    return (
        rec.diff_id is not None
        and store.layers.db.get(chain) is not None
        and store.blobs.has(rec.diff_id)
    )


class _Tee:
    """Reads from ``raw`` and writes every byte read into ``out``."""

    def __init__(self, raw: BinaryIO, out: Ingest) -> None:
        self._raw = raw
        self._out = out

    def read(self, n: int = -1, /) -> bytes:
        data = self._raw.read(n)
        if data:
            self._out.write(data)
        return data


def open_registry_cache(
    *,
    cache_from: Sequence[CacheSpec],
    cache_to: Sequence[CacheSpec],
    cache_repo: str | None,
    ttl: timedelta | None,
    registries: Registries | None,
    reporter: Reporter,
) -> tuple[RegistryCache | None, Registries | None]:
    """The build's registry cache (None without cache flags) and the clients it talks through,
    which the caller closes. Credentials and TLS settings are ``registries``'; requests are
    retried less than image pulls (a dead cache should cost seconds, not a minute)."""
    sources, targets = list(cache_from), list(cache_to)
    if cache_repo:
        source, target = cache_repo_specs(cache_repo)
        sources.append(source)
        targets.append(target)
    if not sources and not targets:
        return None, None
    clients = _CacheRegistries(registries or Registries())
    cache = RegistryCache(
        sources=sources, targets=targets, client_for=clients.client, reporter=reporter, ttl=ttl
    )
    return cache, clients


class _CacheRegistries(Registries):
    """``base``'s credentials and per-host options, with :data:`CACHE_ATTEMPTS` attempts."""

    def __init__(self, base: Registries) -> None:
        super().__init__(credentials=base.credentials, options=base.options)
        self.base = base

    def options_for(self, host: str) -> TransportOptions:
        """``base``'s options for ``host``, retried less."""
        options = self.base.options_for(host)
        return replace(options, retry=replace(options.retry, attempts=CACHE_ATTEMPTS))


__all__ = [
    "CONFIG_TYPE",
    "CacheSpec",
    "Hit",
    "Produced",
    "RegistryCache",
    "RemoteRecord",
    "decode_config",
    "encode_config",
    "open_registry_cache",
    "parse_cache_spec",
]
