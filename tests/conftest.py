"""Shared pytest setup: capability markers and leak checks.

A test marked ``needs_<x>`` is skipped, with the probe's reason, when the capability is
missing here (probed once per process; see :mod:`lamina.testing.capabilities`). CI has every
capability, so nothing may skip there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina._internal.compression import open_compressor
from lamina.image.memory import FileLayer, MemoryImage, file_layer
from lamina.oci.config import History, ImageConfig
from lamina.testing.capabilities import PROBES, mount_points_under
from lamina.testing.layers import Entry, write_tar


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip items whose capability markers are not satisfied."""
    for item in items:
        for name, probe in PROBES.items():
            if item.get_closest_marker(name) is None:
                continue
            reason = probe()
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"{name}: {reason}"))
                break


@pytest.fixture
def no_mount_leaks(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, asserting afterwards that no mount is left under it."""
    yield tmp_path
    leftovers = mount_points_under(tmp_path)
    assert leftovers == [], f"mounts leaked: {leftovers}"


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


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., MemoryImage]:
    """``make_image([[entries...], ...], compression=..., tag=...)`` -> MemoryImage."""
    counter = iter(range(1_000_000))

    def make(layers: list[list[Entry]], **kw: object) -> MemoryImage:
        return build_image(tmp_path / "images" / str(next(counter)), layers, **kw)  # type: ignore[arg-type]

    return make
