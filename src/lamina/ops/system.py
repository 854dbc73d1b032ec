"""Store maintenance verbs: ``system df``, ``system prune``, ``system check``."""

from __future__ import annotations

from lamina.store import Store


def disk_usage(store: Store) -> dict[str, int]:
    """Sizes by kind (bytes) and counts, as the store reports them."""
    return store.df()


def prune(store: Store) -> tuple[list[str], int]:
    """Remove images without names, then unreferenced layers, blobs and stale temp files."""
    return store.prune()


def check(store: Store, *, repair: bool = False) -> list[str]:
    """Every problem in the store (rehashing every blob). With ``repair``, removable
    leftovers of interrupted commands are collected first and the check is run again."""
    problems = store.check()
    if repair and problems:
        store.gc()
        problems = store.check()
    return problems
