"""``images.json``: image records and the names that point at them.

Format (version 1, deterministic JSON)::

    {"version": 1,
     "images": {"sha256:<manifest digest>": {"id": "sha256:<config digest>",
                                             "mediaType": "...", "layers": ["<chain id>", ...],
                                             "created": "<config created>", "loaded": <unix>}},
     "names": {"docker.io/library/busybox:latest": "sha256:<manifest digest>"}}

``layers`` are the chain ids, base first. A record with no names is a dangling (``<none>``)
image, as in Docker. Manifest and config bytes live in the blob store.

Invariants: the file is replaced atomically (temp + fsync + rename) and only under the store
lock, by a read-modify-write in :meth:`ImageDB.update`; every name maps to an existing record.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lamina._internal.fileio import read_regular, write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ImageError, StoreCorrupt
from lamina.oci.digest import Digest

_LIMIT = 256 << 20


@lazy_dataclass(frozen=True, kw_only=True)
class ImageRecord:
    """One stored image, keyed by its manifest digest."""

    digest: Digest
    id: Digest
    media_type: str
    layers: tuple[Digest, ...]
    created: str | None
    loaded: int
    names: tuple[str, ...] = ()

    @property
    def top_layer(self) -> Digest | None:
        """The chain id of the top layer (None for an image without layers)."""
        return self.layers[-1] if self.layers else None

    def to_dict(self) -> dict[str, Any]:
        """The stored form (names are kept in the top-level map, not here)."""
        return {
            "id": str(self.id),
            "mediaType": self.media_type,
            "layers": [str(c) for c in self.layers],
            "created": self.created,
            "loaded": self.loaded,
        }


@lazy_dataclass
class ImageTable:
    """The decoded content of images.json (mutable inside :meth:`ImageDB.update`)."""

    images: dict[Digest, ImageRecord]
    names: dict[str, Digest]

    def record(self, digest: Digest) -> ImageRecord:
        """The record with its current names filled in."""
        rec = self.images[digest]
        names = tuple(sorted(n for n, d in self.names.items() if d == digest))
        return ImageRecord(
            digest=rec.digest,
            id=rec.id,
            media_type=rec.media_type,
            layers=rec.layers,
            created=rec.created,
            loaded=rec.loaded,
            names=names,
        )

    def iter_records(self) -> Iterator[ImageRecord]:
        """Every image with its names, newest load first then by digest."""
        recs = [self.record(d) for d in self.images]
        yield from sorted(recs, key=lambda r: (-r.loaded, str(r.digest)))


class ImageDB:
    """Reads and atomically rewrites ``images.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> ImageTable:
        """The current table (empty if the file does not exist)."""
        try:
            data = read_regular(self.path, _LIMIT)
        except FileNotFoundError:
            return ImageTable({}, {})
        except OSError as exc:
            raise StoreCorrupt(f"reading {self.path}: {exc.strerror}") from None
        try:
            return _decode(json.loads(data))
        except (ValueError, KeyError, TypeError, ImageError) as exc:
            raise StoreCorrupt(
                f"reading {self.path}: malformed: {exc}",
                hint="restore it from a backup or remove it (images must then be reloaded)",
            ) from None

    def save(self, table: ImageTable) -> None:
        """Replace the file with ``table`` (atomic). Caller holds the store lock."""
        doc = {
            "version": 1,
            "images": {str(d): r.to_dict() for d, r in sorted(table.images.items())},
            "names": {n: str(d) for n, d in sorted(table.names.items())},
        }
        write_atomic(self.path, json.dumps(doc, sort_keys=True, indent=1).encode(), 0o600)

    def update(self, change: Callable[[ImageTable], None]) -> ImageTable:
        """Load, apply ``change`` (which mutates the table), save. Caller holds the lock.

        A change that changes nothing (an identical image rebuilt under the same names)
        rewrites nothing: the file already holds exactly what :meth:`save` would write.
        """
        table = self.load()
        before = (dict(table.images), dict(table.names))  # records are immutable
        change(table)
        dangling = [n for n, d in table.names.items() if d not in table.images]
        for n in dangling:
            del table.names[n]
        if (table.images, table.names) != before:
            self.save(table)
        return table


def _decode(doc: Any) -> ImageTable:
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ValueError("unsupported images.json version")
    images: dict[Digest, ImageRecord] = {}
    for key, value in doc.get("images", {}).items():
        digest = Digest.parse(key)
        images[digest] = ImageRecord(
            digest=digest,
            id=Digest.parse(value["id"]),
            media_type=str(value["mediaType"]),
            layers=tuple(Digest.parse(c) for c in value["layers"]),
            created=value.get("created"),
            loaded=int(value.get("loaded", 0)),
        )
    names: dict[str, Digest] = {}
    for name, target in doc.get("names", {}).items():
        with contextlib.suppress(ImageError):
            names[str(name)] = Digest.parse(target)
    return ImageTable(images, names)
