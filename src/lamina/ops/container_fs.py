"""Verbs on a container's filesystem and record: ``diff``, ``commit``, ``export``, ``mount``,
``rename``, ``inspect``.

``diff`` reads the upper dir against the lower dirs (init layer first) with
:func:`lamina.snapshot.changes_from_upper`, so the init layer's placeholders never show;
with the vfs driver the container's full tree is compared with its init layer's.
``commit`` writes the upper dir as a layer tar (overlay whiteouts become ``.wh.`` entries)
and stores base layers + that layer as a new image (history entry, ``--change``, message,
author). The container is not paused while its upper dir is read: commit a stopped
container for a consistent layer. ``export`` and ``mount`` need the merged tree: a stopped
container's rootfs is mounted for the duration (``mount`` leaves it mounted, as ``podman
mount``; ``rm`` unmounts it).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from lamina.errors import ContainerError, NotFound, UsageError
from lamina.image.memory import MemoryImage, file_layer
from lamina.oci.config import History
from lamina.ops import container_state as cs
from lamina.ops.container_config import host_paths
from lamina.snapshot import Change, changes_from_trees, changes_from_upper, write_layer
from lamina.store import Store
from lamina.store.image import StoreImage


def diff(store: Store, ref: str) -> list[Change]:
    """``docker diff``: the changes in the container's layer, sorted by path."""
    cid = store.containers.resolve(ref)
    dirs = store.containers.dirs(cid)
    if store.backend.copies:
        return changes_from_trees(dirs.init, dirs.upper)
    return changes_from_upper(dirs.upper, dirs.lower)


def inspect(store: Store, ref: str) -> dict[str, Any]:
    """``docker inspect`` of a container (Docker's field names and order)."""
    cid = store.containers.resolve(ref)
    record = store.containers.read(cid)
    state = cs.refresh(store, cid)
    graph = store.containers.dirs(cid).graph_driver()
    if store.driver != "overlay2":
        graph["Name"] = store.driver
    return {
        "Id": cid,
        "Created": record["Created"],
        "Path": record["Path"],
        "Args": record["Args"],
        "State": cs.public_state(state),
        "Image": record["Image"],
        **host_paths(store, cid),
        "Name": record["Name"],
        "RestartCount": record.get("RestartCount", 0),
        "Driver": "overlay2" if store.driver == "overlay2" else store.driver,
        "Platform": record.get("Platform", "linux"),
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": record["HostConfig"],
        "GraphDriver": graph,
        "Mounts": record.get("Mounts") or [],
        "Config": record["Config"],
        "NetworkSettings": {"Networks": {record["HostConfig"].get("NetworkMode", "none"): {}}},
    }


def rename(store: Store, ref: str, new_name: str) -> None:
    """``docker rename``: the new name is reserved first, the old one released last."""
    from lamina.ops.container import _check_name

    cid = store.containers.resolve(ref)
    name = new_name.removeprefix("/")
    _check_name(name)
    if str(store.containers.read(cid).get("Name", "")).removeprefix("/") == name:
        raise ContainerError(  # as Docker: a no-op rename is a mistake worth saying
            "renaming a container with the same name as its current name"
        )
    store.containers.reserve_name(name, cid)
    with store.containers.locked(cid):
        record = store.containers.read(cid)
        old = str(record.get("Name", "")).removeprefix("/")
        record["Name"] = f"/{name}"
        store.containers.write(cid, record)
    if old != name:
        store.containers.release_name(old, cid)


def mount(store: Store, ref: str) -> Path:
    """``mount``: mount the container's rootfs (if needed) and return the MergedDir."""
    cid = store.containers.resolve(ref)
    with store.containers.locked(cid):
        return cs.ensure_mounted(store, cid)


def export(store: Store, ref: str, out: IO[bytes], *, epoch: int | None = None) -> None:
    """``docker export``: the container's merged filesystem as a tar stream to ``out``."""
    cid = store.containers.resolve(ref)
    with store.containers.locked(cid):
        rootfs = cs.ensure_mounted(store, cid)
        try:
            write_layer(rootfs, out, kind="dir", epoch=epoch)  # type: ignore[arg-type]
        finally:
            cs.unmount_unless_running(store, cid)


def export_to(store: Store, ref: str, output: Path | None, *, epoch: int | None = None) -> None:
    """``docker export [-o FILE]``: to ``output`` (appearing whole or not at all) or stdout."""
    import sys

    if output is None:
        export(store, ref, sys.stdout.buffer, epoch=epoch)
        return
    from lamina._internal.fileio import atomic_output

    with atomic_output(output) as tmp, tmp.open("wb") as f:
        export(store, ref, f, epoch=epoch)


def commit(
    store: Store, ref: str, name: str | None, *, changes: Sequence[str] = (),
    message: str | None = None, author: str | None = None, epoch: int | None = None,
) -> str:  # fmt: skip
    """``docker commit``: a new image from the container's changes; returns its id."""
    from lamina._internal.compression import open_compressor
    from lamina.build.imageconfig import apply_changes
    from lamina.ops.archive import timestamp
    from lamina.snapshot import write_diff_layer

    cid = store.containers.resolve(ref)
    record = store.containers.read(cid)
    try:
        base: StoreImage | None = store.get_image(record["Image"])
    except NotFound:
        raise UsageError(f"commit {ref}: its image {record['Image']} is gone") from None
    dirs = store.containers.dirs(cid)
    tmp_root = store.root / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="commit-") as tmp:
        path = Path(tmp) / "layer.tar.gz"
        with path.open("wb") as f:
            writer = open_compressor(f, "gzip")
            if store.backend.copies:
                write_diff_layer(dirs.init, dirs.upper, writer, epoch=epoch)
            else:
                write_layer(dirs.upper, writer, kind="overlay-upper", epoch=epoch)
            writer.close()
        layer = file_layer(path)
        assert base is not None
        base_cfg = base.config()
        created = timestamp(epoch)
        container_cfg = _committed_config(base_cfg.config, record["Config"])
        config = dataclasses.replace(
            base_cfg,
            created=created,
            author=author or None,
            config=apply_changes(container_cfg, changes),
            diff_ids=(*base_cfg.diff_ids, layer.diff_id()),
            history=(*base_cfg.history, History(
                created=created, created_by=_created_by(record), author=author or None,
                comment=message or None,
            )),
        )  # fmt: skip
        digest = store.put_image(
            MemoryImage(config, [*(base.layers() if base else []), layer]),
            [name] if name else [],
        )
    return str(store.get_image(str(digest)).id())


def _committed_config(image_cfg: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The image config of a commit: the container's Config (as Docker), image-only keys kept."""
    out = dict(image_cfg or {})
    for key in ("User", "Env", "Cmd", "WorkingDir", "Entrypoint", "Labels", "StopSignal"):
        value = container.get(key)
        if value in (None, "", [], {}):
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _created_by(record: dict[str, Any]) -> str:
    argv = [str(record.get("Path", "")), *map(str, record.get("Args") or [])]
    return " ".join(argv)
