"""The build cache: step keys -> the layer a step produced, under ``<root>/buildcache/``.

A key is the sha256 of a step's inputs, built with :func:`step_key` from tagged parts (so
``("a", "bc")`` and ``("ab", "c")`` never collide). What goes into a key is decided by the step
executor (see :mod:`lamina.build.steps`): the parent chain id, the expanded instruction, the
environment and build args in scope, the user, working dir and shell, RUN's mounts and
network, and for COPY/ADD the content key of the sources (names, types, modes, kept
ownership, content — :func:`lamina.build.sourcekey.hash_sources`) and ``--chown``/``--chmod``.

A record says what the step produced: ``diff_id`` (None for a step whose layer was empty) and
the uncompressed blob it was stored as. A hit is usable only if the store still has the layer
(or at least its blob, to re-create it): gc may collect intermediate layers, and then the step
simply runs again. Records are one small JSON file each (``keys/<2 hex>/<hex>.json``), written
atomically; a corrupt or unreadable record is a miss. Deleting ``buildcache/`` loses speed,
never correctness.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from lamina._internal.fileio import write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.oci.digest import Digest

KEY_VERSION = "lamina-build-cache-v1"


def step_key(parts: Iterable[object]) -> str:
    """The hex sha256 of ``parts`` (each turned into text, length-prefixed)."""
    h = hashlib.sha256(KEY_VERSION.encode())
    for part in parts:
        data = (
            json.dumps(part, sort_keys=True, separators=(",", ":"), default=str)
            if not isinstance(part, str)
            else part
        ).encode("utf-8", "surrogateescape")
        h.update(f"{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


@lazy_dataclass(frozen=True, kw_only=True)
class CacheRecord:
    """What a cached step produced: its layer (None when empty) and where the tar blob is."""

    diff_id: Digest | None
    blob: Digest | None = None
    size: int = 0

    def to_json(self) -> bytes:
        """The record file's bytes."""
        return json.dumps(
            {
                "diff_id": str(self.diff_id) if self.diff_id else None,
                "blob": str(self.blob) if self.blob else None,
                "size": self.size,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CacheRecord:
        """Parse a record; ValueError (or KeyError/TypeError) when it is malformed."""
        obj = json.loads(data)
        diff = obj["diff_id"]
        blob = obj.get("blob")
        return cls(
            diff_id=Digest.parse(diff) if diff else None,
            blob=Digest.parse(blob) if blob else None,
            size=int(obj.get("size") or 0),
        )


class BuildCache:
    """Records under ``directory`` (normally ``<root>/buildcache``). Safe across threads and
    processes: a record is written with an atomic rename, and readers see old or new."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.keys = directory / "keys"
        self.mounts = directory / "mounts"

    def _path(self, key: str) -> Path:
        return self.keys / key[:2] / f"{key}.json"

    def get(self, key: str) -> CacheRecord | None:
        """The record for ``key``, or None (missing or unreadable)."""
        try:
            return CacheRecord.from_json(self._path(key).read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        except Exception:
            return None

    def put(self, key: str, record: CacheRecord) -> None:
        """Store ``record`` for ``key`` (atomic; last writer wins)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, record.to_json(), durable=False)

    def forget(self, key: str) -> None:
        """Remove ``key``'s record (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def mount_dir(self, cache_id: str) -> Path:
        """The persistent directory of ``RUN --mount=type=cache,id=...`` (not created)."""
        name = hashlib.sha256(cache_id.encode("utf-8", "surrogateescape")).hexdigest()
        return self.mounts / name
