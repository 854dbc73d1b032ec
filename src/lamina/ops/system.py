"""Store maintenance verbs: ``system df``, ``system prune``, ``system check``."""

from __future__ import annotations

from lamina.store import Store


def disk_usage(store: Store) -> dict[str, int]:
    """Sizes by kind (bytes) and counts, as the store reports them."""
    return store.df()


def prune(store: Store) -> tuple[list[str], int]:
    """Remove images without names, then unreferenced layers, blobs and stale temp files."""
    return store.prune()


def check(store: Store, *, repair: bool = False) -> tuple[list[str], list[str]]:
    """``(problems, reclaimable)`` of the store, rehashing every blob.

    Reclaimable items (unused build-cache layers, temps of interrupted commands) are what gc
    removes; they are not inconsistencies. With ``repair`` they are collected first and the
    check is run again.
    """
    from lamina.store.maintenance import REMOVABLE

    found = store.check()
    if repair and found:
        store.gc()
        found = store.check()
    reclaimable = [p.removeprefix(REMOVABLE) for p in found if p.startswith(REMOVABLE)]
    return [p for p in found if not p.startswith(REMOVABLE)], reclaimable
