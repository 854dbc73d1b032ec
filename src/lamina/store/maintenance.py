"""``system check``, garbage collection and ``system df`` for a :class:`~lamina.store.Store`.

Invariants:
- :func:`collect` runs with ``gc.lock`` held exclusively by its caller, so no load is in
  flight: every temp entry is a leftover and every unreferenced layer or blob is garbage.
  Decisions and unregistration happen under the store lock; trees are deleted after it.
- :func:`check` never changes anything. Problems that ``gc`` fixes start with ``removable:``;
  anything else means corruption (a blob that does not hash to its name, a broken chain).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lamina._internal.lock import flocked
from lamina.errors import LaminaError
from lamina.oci import canonical
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest
from lamina.store.images import ImageRecord, ImageTable
from lamina.store.layers import remove_tree
from lamina.store.layout import TMP_PREFIX, chain_ids, is_layer_id
from lamina.unionfs import syscall

if TYPE_CHECKING:
    from lamina.store.store import Store

REMOVABLE = "removable: "


def _manifest(store: Store, digest: Digest) -> Manifest | None:
    try:
        return Manifest.from_json(store.blobs.read_small(digest, canonical.MAX_DOCUMENT))
    except LaminaError:
        return None


def _kept_blobs(store: Store, table: ImageTable, chains: set[Digest]) -> set[Digest]:
    keep: set[Digest] = set()
    for rec in table.images.values():
        keep.update((rec.digest, rec.id))
        m = _manifest(store, rec.digest)
        if m is not None:
            keep.update(d.digest for d in m.layers)
    for chain in chains:
        rec_l = store.layers.db.get(chain)
        if rec_l is not None:
            keep.update(b.digest for b in rec_l.blobs)
    return keep


def referenced_chains(table: ImageTable) -> set[Digest]:
    """Chain ids some image uses (images list every chain of their stack)."""
    return {c for rec in table.images.values() for c in rec.layers}


def tree_size(path: Path) -> int:
    """Bytes of regular files under ``path`` (not following links)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def collect(store: Store, *, only: ImageRecord | None = None) -> int:
    """Remove garbage; with ``only``, just the layers and blobs of that deleted image.

    The caller holds ``gc.lock`` exclusively. Returns bytes freed.
    """
    doomed: list[Path] = []
    freed = 0
    with flocked(store.layout.lock):
        table = store.images.load()
        used = referenced_chains(table) | store.held_layers()[0]
        candidates = list(only.layers) if only else list(store.layers.db.iter_chains())
        for chain in reversed(candidates):
            if chain not in used:
                path = store.layers.unregister(chain)
                if path is not None:
                    doomed.append(path)
        keep = _kept_blobs(store, table, used)
        if only is not None:
            m = _manifest(store, only.digest)
            blobs = [only.digest, only.id, *(d.digest for d in m.layers)] if m else [only.id]
        else:
            blobs = list(store.blobs.iter_digests())
        for digest in blobs:
            if digest not in keep:
                freed += store.blobs.delete(digest)
        if only is None:
            doomed.extend(_leftovers(store))
            freed += _drop_stale_files(store)
    for path in doomed:
        freed += _remove(path)
    return freed


def _leftovers(store: Store) -> list[Path]:
    """Everything :func:`_leftover_paths` finds plus unmounted entries of ``tmp/``."""
    out = list(_leftover_paths(store))
    mounts = syscall.mount_points()
    for entry in sorted(os.listdir(store.layout.tmp)):
        path = store.layout.tmp / entry
        if entry != "locks" and not any(m.startswith(str(path)) for m in mounts):
            out.append(path)
    return out


def _remove(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            size = os.lstat(path).st_size
            os.unlink(path)
            return size
        return 0
    size = tree_size(path)
    remove_tree(path)
    return size


def _drop_stale_files(store: Store) -> int:
    freed = 0
    for path, size in store.blobs.iter_stale_ingest(0):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            freed += size
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(store.layout.apply_locks):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(store.layout.apply_locks / entry)
    return freed


def check(store: Store) -> list[str]:
    """Every problem in the store (waits for running loads to finish)."""
    with flocked(store.layout.gc_lock), flocked(store.layout.lock):
        table = store.images.load()
        problems = _check_blobs(store)
        problems += _check_layers(store, referenced_chains(table) | store.held_layers()[0])
        problems += _check_images(store, table)
        problems += [f"{REMOVABLE}leftover {p}" for p in _leftover_paths(store)]
        problems += [f"{REMOVABLE}leftover {p}" for p, _ in store.blobs.iter_stale_ingest(0)]
    return problems


def _check_blobs(store: Store) -> list[str]:
    out = [f"blobs: unexpected entry {p}" for p in store.blobs.iter_strays()]
    for digest in store.blobs.iter_digests():
        try:
            store.blobs.verify(digest)
        except LaminaError as exc:
            out.append(f"blob {digest}: {exc.message}")
    return out


def _check_layers(store: Store, used: set[Digest]) -> list[str]:
    out: list[str] = []
    layers = store.layers
    for chain in layers.db.iter_chains():
        try:
            rec = layers.get(chain)
            short = layers.short_id(rec)
            layer_dir = store.layout.layer_dir(rec.cache_id)
            if not (layer_dir / "diff").is_dir():
                out.append(f"layer {chain}: missing {layer_dir}/diff")
            link = store.layout.link_path(short)
            if not link.is_symlink() or os.readlink(link) != f"../{rec.cache_id}/diff":
                out.append(f"layer {chain}: link {link} missing or pointing elsewhere")
            want = None
            if rec.parent is not None:
                want = ":".join(f"l/{layers.short_id(r)}" for r in layers.chain(rec.parent))
            lower = layer_dir / "lower"
            have = lower.read_text() if lower.exists() else None
            if have != want:
                out.append(f"layer {chain}: lower file is {have!r}, expected {want!r}")
        except LaminaError as exc:
            out.append(f"layer {chain}: {exc.message}")
            continue
        if chain not in used:
            out.append(f"{REMOVABLE}layer {chain} is not used by any image")
    return out


def _check_images(store: Store, table: ImageTable) -> list[str]:
    out: list[str] = []
    for rec in table.images.values():
        what = f"image {rec.id.short()} (manifest {rec.digest})"
        m = _manifest(store, rec.digest)
        if m is None:
            out.append(f"{what}: manifest blob missing or invalid")
            continue
        if not store.blobs.has(rec.id) or m.config.digest != rec.id:
            out.append(f"{what}: config blob {rec.id} missing or not the manifest's")
            continue
        try:
            from lamina.oci.config import ImageConfig

            cfg = ImageConfig.from_json(store.blobs.read_small(rec.id, canonical.MAX_DOCUMENT))
        except LaminaError as exc:
            out.append(f"{what}: config: {exc.message}")
            continue
        if chain_ids(cfg.diff_ids) != list(rec.layers):
            out.append(f"{what}: recorded layers do not match the config's diff_ids")
        out += [f"{what}: layer {c} missing" for c in rec.layers if not store.layers.db.has(c)]
    return out


def _leftover_paths(store: Store) -> Iterable[Path]:
    registered = set(store.held_layers()[1])
    for chain in store.layers.db.iter_chains():
        with contextlib.suppress(LaminaError):
            rec = store.layers.db.get(chain)
            if rec is not None:
                registered.add(rec.cache_id)
    for entry in sorted(os.listdir(store.layout.overlay2)):
        if entry.startswith(TMP_PREFIX) or (is_layer_id(entry) and entry not in registered):
            yield store.layout.overlay2 / entry
    for short in sorted(os.listdir(store.layout.links)):
        if not (store.layout.links / short).exists():
            yield store.layout.links / short
    yield from store.layers.db.iter_temps()


def disk_usage(store: Store) -> dict[str, int]:
    """Counts and byte sizes: images, layers, blobs and what prune would reclaim."""
    table = store.images.load()
    named = {c for r in table.iter_records() if r.names for c in r.layers}
    sizes: dict[Digest, int] = {}
    for chain in store.layers.db.iter_chains():
        with contextlib.suppress(LaminaError):
            rec = store.layers.db.get(chain)
            if rec is not None:
                sizes[chain] = rec.size
    blob_bytes = sum(store.blobs.size(d) for d in store.blobs.iter_digests())
    return {
        "images": len(table.images),
        "layers": len(sizes),
        "layers_size": sum(sizes.values()),
        "blobs": sum(1 for _ in store.blobs.iter_digests()),
        "blobs_size": blob_bytes,
        "reclaimable": sum(s for c, s in sizes.items() if c not in named),
    }
