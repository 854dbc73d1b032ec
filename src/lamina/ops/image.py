"""Image verbs over the store: list, inspect, history, tag, remove.

``inspect_image`` returns the same shape as ``docker image inspect`` (Engine API
``ImageInspect``): ``Id``, ``RepoTags``, ``RepoDigests``, ``Created``, ``Config``,
``Architecture``, ``Os``, ``Size``, ``GraphDriver`` (``Name: overlay2`` and the
``LowerDir``/``UpperDir``/``MergedDir``/``WorkDir`` of the image's top layer) and ``RootFS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from lamina._internal.lazydataclass import lazy_dataclass

if TYPE_CHECKING:  # type names only: listing images must not load the whole store
    from lamina.store import Store
    from lamina.store.catalog import Catalog
    from lamina.store.image import StoreImage


@lazy_dataclass(frozen=True, kw_only=True)
class ImageRow:
    """One row of ``lamina images`` (an untagged image has repository/tag ``<none>``)."""

    repository: str
    tag: str
    id: str
    digest: str
    created: str | None
    size: int


def _split_name(name: str) -> tuple[str, str]:
    if "@" in name:
        return name.partition("@")[0], "<none>"
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def familiar(name: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest`` (as docker shows names)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def image_size(store: Store, image: StoreImage) -> int:
    """Uncompressed size of all layers (what ``docker images`` calls SIZE)."""
    return sum(store.get_layer(chain).size for chain in image.record.layers)


def list_images(store: Store | Catalog, *, all_names: bool = True) -> list[ImageRow]:
    """Every (image, name) pair; images without names appear once as ``<none>``.

    A read-only :class:`~lamina.store.catalog.Catalog` serves as well as the store."""
    rows: list[ImageRow] = []
    for record in store.list_images():
        size = sum(store.get_layer(c).size for c in record.layers)
        names = [familiar(n) for n in record.names] or ["<none>:<none>"]
        for name in names:
            repo, tag = ("<none>", "<none>") if name == "<none>:<none>" else _split_name(name)
            rows.append(
                ImageRow(
                    repository=repo,
                    tag=tag,
                    id=str(record.id),
                    digest=str(record.digest),
                    created=record.created,
                    size=size,
                )
            )
    return rows


def inspect_image(store: Store, ref: str) -> dict[str, Any]:
    """``docker image inspect`` data for one image."""
    image = store.get_image(ref)
    config = image.config()
    return {
        "Id": str(image.id()),
        "RepoTags": [familiar(n) for n in image.names() if "@" not in n],
        "RepoDigests": [familiar(n) for n in image.names() if "@" in n],
        "Parent": "",
        "Comment": config.history[-1].comment or "" if config.history else "",
        "Created": config.created or "",
        "DockerVersion": "",
        "Author": config.author or "",
        "Config": config.config,
        "Architecture": config.architecture,
        **({"Variant": config.variant} if config.variant else {}),
        "Os": config.os,
        "Size": image_size(store, image),
        "GraphDriver": image.graph_driver(),
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.diff_ids]},
        "Metadata": {"LastTagTime": _loaded_time(image.record.loaded)},
        "Descriptor": {
            "mediaType": image.media_type(),
            "digest": str(image.digest()),
            "size": len(image.raw_manifest()),
        },
    }


def _loaded_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat()


def history(store: Store, ref: str) -> list[dict[str, Any]]:
    """``docker history`` rows, newest first: CreatedBy, Created, Size, Comment, Id."""
    image = store.get_image(ref)
    config = image.config()
    sizes = [store.get_layer(c).size for c in image.record.layers]
    # The Engine API reports layer sizes as differences of the merged sizes; the store keeps
    # per-layer sizes of the diff itself, which is what `docker history` shows in practice.
    rows: list[dict[str, Any]] = []
    layer = 0
    for entry in config.history:
        size = 0
        if not entry.empty_layer and layer < len(sizes):
            size = sizes[layer]
            layer += 1
        rows.append(
            {
                "Created": entry.created or "",
                "CreatedBy": entry.created_by or "",
                "Size": size,
                "Comment": entry.comment or "",
            }
        )
    rows.reverse()
    if rows:
        rows[0]["Id"] = str(image.id())
    return rows


def tag(store: Store, source: str, name: str) -> None:
    """``docker tag``."""
    store.tag(source, name)


def remove(store: Store, refs: list[str], *, force: bool = False) -> list[tuple[str, str]]:
    """``docker rmi``: events ``("Untagged", name)`` / ``("Deleted", id)`` for every ref.

    As Docker: an image that a container was made from is not deleted (untagging one of
    several names is fine) unless ``force``, and never while such a container runs."""
    events: list[tuple[str, str]] = []
    for ref in refs:
        _check_unused(store, ref, force)
        events += store.remove_image(ref, force=force)
    return events


def _check_unused(store: Store, ref: str, force: bool) -> None:
    import copy

    from lamina.errors import ContainerError, NotFound
    from lamina.ops import container_state as cs
    from lamina.ops.system import container_images
    from lamina.store.naming import plan_removal

    # a dry run of the store's own rule on a copy: checking inside remove_image would hold
    # the store lock (which every load and build takes) while container states are refreshed.
    # A container made from the image between this check and the removal is not caught; its
    # layers stay held by the container either way.
    _events, gone = plan_removal(copy.deepcopy(store.images.load()), ref, force=force)
    if gone is None:  # only a name goes
        return
    for cid, image in container_images(store).items():
        if image != str(gone.id):
            continue
        try:
            running = cs.refresh(store, cid).get("Status") == "running"
        except NotFound:
            continue
        short = gone.id.short()
        if running:
            raise ContainerError(
                f"conflict: unable to delete {short} (cannot be forced) - image is being used "
                f"by running container {cid[:12]}",
                hint="stop and remove the container first",
            )
        if not force:
            raise ContainerError(
                f"conflict: unable to remove repository reference {ref!r} (must force) - "
                f"container {cid[:12]} is using its referenced image {short}",
                hint="remove the container first, or use rmi -f",
            )
