"""Deterministic test images built from :mod:`lamina.testing.layers` entries."""

from __future__ import annotations

from pathlib import Path

from lamina._internal.compression import open_compressor
from lamina.image.memory import FileLayer, MemoryImage, file_layer
from lamina.oci.config import History, ImageConfig
from lamina.testing.layers import Entry, write_tar


def write_layer_file(path: Path, entries: list[Entry], compression: str = "gzip") -> FileLayer:
    """Write ``entries`` as a (compressed) tar at ``path`` and describe it as a FileLayer."""
    with path.open("wb") as f:
        writer = open_compressor(f, compression)
        write_tar(entries, writer)  # streamed: big pattern files never sit in memory
        writer.close()
    return file_layer(path)


def build_image(
    directory: Path, layers: list[list[Entry]], *, compression: str = "gzip", tag: str = ""
) -> MemoryImage:
    """A deterministic image (fixed created time) whose layers are files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [
        write_layer_file(directory / f"layer-{tag}{i}.tar", entries, compression)
        for i, entries in enumerate(layers)
    ]
    config = ImageConfig(
        created="2023-11-14T22:13:20Z",
        config={"Cmd": ["/bin/sh"], "Labels": {"tag": tag}} if tag else {"Cmd": ["/bin/sh"]},
        diff_ids=tuple(f.diff_id() for f in files),
        history=tuple(History(created_by=f"layer {i}") for i in range(len(files))),
    )
    return MemoryImage(config, files)
