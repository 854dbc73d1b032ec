"""Store maintenance verbs: ``system df``, ``system prune``, ``system check``."""

from __future__ import annotations

from lamina.store import Store


def disk_usage(store: Store) -> dict[str, int]:
    """Sizes by kind (bytes) and counts, as the store reports them."""
    return store.df()


def prune(store: Store, *, all_unused: bool = False) -> tuple[list[str], list[str], int]:
    """``system prune [-a]``, as Docker's: stopped containers, then images without names
    (``all_unused``: every image) that no container uses, then unreferenced layers, blobs
    and stale temp files. Returns (container ids, image ids, bytes freed)."""
    containers, freed = prune_containers(store)
    images, more = prune_images(store, all_unused=all_unused)
    return containers, images, freed + more


def prune_containers(store: Store) -> tuple[list[str], int]:
    """``container prune``: remove every container that is not running. One removed meanwhile
    by another process, or started since it was listed (``rm`` without force refuses it), is
    skipped. As with Docker, a ``run`` between its create and its start can lose its container
    to a concurrent prune. Returns (ids, bytes of their upper dirs)."""
    from lamina.errors import ContainerError, NotFound
    from lamina.ops import container_state as cs
    from lamina.ops.container import remove
    from lamina.store.maintenance import tree_size

    removed: list[str] = []
    freed = 0
    for cid in store.containers.ids():
        try:
            if cs.refresh(store, cid).get("Status") in ("running", "paused", "restarting"):
                continue
            size = tree_size(store.containers.dirs(cid).upper)
            remove(store, cid)
        except NotFound:
            continue
        except ContainerError:
            if _running(store, cid):  # started since it was listed: not ours to remove
                continue
            raise
        removed.append(cid)
        freed += size
    return removed, freed


def _running(store: Store, cid: str) -> bool:
    from lamina.errors import NotFound
    from lamina.ops import container_state as cs

    try:
        return cs.refresh(store, cid).get("Status") == "running"
    except NotFound:
        return False


def container_images(store: Store) -> dict[str, str]:
    """Container id -> the image id (``sha256:...``) it was made from."""
    from lamina.errors import LaminaError

    images: dict[str, str] = {}
    for cid in store.containers.ids():
        try:
            images[cid] = str(store.containers.read(cid).get("Image", ""))
        except (LaminaError, OSError):  # removed meanwhile, or unreadable: nothing to keep
            continue
    return images


def images_in_use(store: Store) -> frozenset[str]:
    """Image ids (``sha256:...``) that some container was made from."""
    return frozenset(container_images(store).values())


def prune_images(store: Store, *, all_unused: bool = False) -> tuple[list[str], int]:
    """``image prune [-a]``: images without names (``all_unused``: every image) that no
    container uses, then gc. Returns (image ids, bytes freed)."""
    return store.prune(all_unused=all_unused, keep=images_in_use(store))


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
