"""The layer database: chain id -> layer record, one directory per layer like Docker's.

``<root>/layerdb/sha256/<chain hex>/`` holds small files, each without a trailing newline as
Docker writes them: ``diff`` (the diff_id), ``parent`` (the parent chain id; absent for a base
layer), ``size`` (decimal bytes of the layer's own files), ``cache-id`` (the ``overlay2/<id>``
directory name), and ``blobs.json`` (compressed blobs known for the layer: digest, media type,
size — so that ``save``/``push`` copy them instead of recompressing).

Invariants:
- An entry appears atomically: it is written into ``layerdb/sha256/.tmp-*`` and renamed into
  place; the rename is the commit point of a new layer. Removing the directory is the commit
  point of a deletion. Callers mutate it only under the store lock.
- Reference counts are *derived* (from images.json and child layers) rather than stored, so a
  ``kill -9`` can never leave a count that disagrees with what references the layer.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lamina._internal.fileio import fsync_dir, read_regular, write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ImageError, StoreCorrupt
from lamina.oci.digest import Digest
from lamina.store.layout import TMP_PREFIX

_SMALL = 1 << 16


@lazy_dataclass(frozen=True, kw_only=True)
class BlobRef:
    """A compressed form of a layer kept in the blob store."""

    digest: Digest
    media_type: str
    size: int


@lazy_dataclass(frozen=True, kw_only=True)
class LayerRecord:
    """A registered layer. ``refcount`` is filled in by queries that compute it (else 0)."""

    chain_id: Digest
    diff_id: Digest
    parent: Digest | None
    cache_id: str
    size: int
    blobs: tuple[BlobRef, ...] = ()
    refcount: int = 0


class LayerDB:
    """Read and write layer records under ``directory`` (``<root>/layerdb/sha256``)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _entry(self, chain: Digest) -> Path:
        return self.dir / chain.encoded

    def has(self, chain: Digest) -> bool:
        """True if ``chain`` is registered."""
        return (self._entry(chain) / "cache-id").is_file()

    def get(self, chain: Digest) -> LayerRecord | None:
        """The record of ``chain``, None if absent; StoreCorrupt if the entry is malformed."""
        entry = self._entry(chain)
        if not entry.is_dir():
            return None
        try:
            diff = Digest.parse(_read(entry / "diff"))
            parent_text = _read(entry / "parent") if (entry / "parent").exists() else ""
            parent = Digest.parse(parent_text) if parent_text else None
            size = int(_read(entry / "size"))
            cache_id = _read(entry / "cache-id")
            blobs = _parse_blobs(entry / "blobs.json")
        except (OSError, ValueError, ImageError) as exc:
            raise StoreCorrupt(f"layer {chain}: unreadable layerdb entry: {exc}") from None
        if not cache_id or "/" in cache_id or cache_id.startswith("."):
            raise StoreCorrupt(f"layer {chain}: invalid cache-id {cache_id[:80]!r}")
        return LayerRecord(
            chain_id=chain, diff_id=diff, parent=parent, cache_id=cache_id, size=size, blobs=blobs
        )

    def put(self, record: LayerRecord) -> None:
        """Register ``record`` atomically (temp dir + rename). Caller holds the store lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        import shutil  # lazily: listing commands only read
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.dir))
        try:
            (tmp / "diff").write_text(str(record.diff_id))
            if record.parent is not None:
                (tmp / "parent").write_text(str(record.parent))
            (tmp / "size").write_text(str(record.size))
            (tmp / "cache-id").write_text(record.cache_id)
            (tmp / "blobs.json").write_bytes(_dump_blobs(record.blobs))
            os.chmod(tmp, 0o700)
            os.rename(tmp, self._entry(record.chain_id))
            fsync_dir(self.dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def add_blob(self, chain: Digest, blob: BlobRef) -> None:
        """Record one more compressed form of ``chain`` (idempotent; caller holds the lock)."""
        record = self.get(chain)
        if record is None or any(b.digest == blob.digest for b in record.blobs):
            return
        write_atomic(self._entry(chain) / "blobs.json", _dump_blobs((*record.blobs, blob)))

    def delete(self, chain: Digest) -> None:
        """Unregister ``chain`` (idempotent): rename away, then remove."""
        entry = self._entry(chain)
        if not entry.exists():
            return
        import shutil
        import tempfile

        doomed = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "del-", dir=self.dir))
        os.rename(entry, doomed / "entry")
        shutil.rmtree(doomed, ignore_errors=True)

    def iter_chains(self) -> Iterator[Digest]:
        """Every registered chain id."""
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.dir)):
                if name.startswith(TMP_PREFIX):
                    continue
                with contextlib.suppress(ImageError):
                    yield Digest("sha256", name)

    def iter_temps(self) -> Iterator[Path]:
        """Leftover temp entries (from a crash); removable."""
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.dir)):
                if name.startswith(TMP_PREFIX):
                    yield self.dir / name


def _read(path: Path) -> str:
    return read_regular(path, _SMALL).decode().strip()


def _dump_blobs(blobs: tuple[BlobRef, ...]) -> bytes:
    return json.dumps(
        [{"digest": str(b.digest), "mediaType": b.media_type, "size": b.size} for b in blobs],
        sort_keys=True,
    ).encode()


def _parse_blobs(path: Path) -> tuple[BlobRef, ...]:
    if not path.exists():
        return ()
    items = json.loads(read_regular(path, _SMALL))
    if not isinstance(items, list):
        raise ValueError("blobs.json must be a list")
    return tuple(
        BlobRef(
            digest=Digest.parse(i["digest"]),
            media_type=str(i["mediaType"]),
            size=int(i["size"]),
        )
        for i in items
    )
