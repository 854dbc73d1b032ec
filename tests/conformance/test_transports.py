"""Every transport passes ``image.validate`` for the same generated images.

Each image is written through the transport's destination, read back through its source,
validated, and compared with the original: image id (config digest), diff_ids, manifest digest
where the format keeps manifests byte for byte, and the flattened root filesystem. A new
transport joins by adding a row to ``CASES``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lamina import transports
from lamina.image.memory import MemoryImage
from lamina.image.model import Image
from lamina.image.validate import validate_image
from lamina.snapshot.apply import apply_layer
from lamina.testing.layers import (
    Entry,
    directory,
    file,
    hardlink,
    opaque_in,
    symlink,
    tree_manifest,
    whiteout_of,
)

MakeImage = Callable[..., MemoryImage]

RICH: list[list[Entry]] = [
    [
        directory("etc"),
        file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        directory("usr"),
        directory("usr/bin"),
        file("usr/bin/tool", b"#!/bin/sh\necho tool\n", mode=0o4755),
        hardlink("usr/bin/tool-again", "usr/bin/tool"),
        symlink("bin", "usr/bin"),
        directory("opt"),
        directory("opt/data"),
        file("opt/data/a", b"a"),
        file("opt/data/b", b"b", xattrs={"user.lamina": b"yes"}),
        directory("var"),
        directory("var/cache"),
        file("var/cache/big", (b"0123456789abcdef", 300_000)),
    ],
    [
        whiteout_of("etc/passwd"),
        opaque_in("opt/data"),
        file("opt/data/c", b"c"),
        file("etc/new", b"new\n", mode=0o600, uid=1000, gid=1000),
        whiteout_of("var/cache"),
    ],
    [file("usr/bin/tool", b"#!/bin/sh\necho tool v2\n", mode=0o755), symlink("etc/link", "../x")],
]

# (transport template, keeps the manifest bytes)
CASES = [
    ("oci:{d}/layout:v1", True),
    ("oci-archive:{d}/image.tar:v1", True),
    ("docker-archive:{d}/docker.tar:conformance/image:v1", False),
    ("local:conformance/image:v1", True),
]


def flatten(img: Image, target: Path) -> list[tuple[object, ...]]:
    """Apply every layer in merged mode into an empty ``target``; return its tree manifest."""
    target.mkdir(parents=True)
    for layer in img.layers():
        with layer.open_uncompressed() as f:
            apply_layer(f, target, mode="merged")
    return tree_manifest(target, dir_mtimes=False)  # deletions touch parent directories


@pytest.fixture(params=["gzip", "none", "zstd"])
def source_image(request: pytest.FixtureRequest, make_image: MakeImage) -> MemoryImage:
    img = make_image(RICH, compression=request.param)
    validate_image(img)
    return img


@pytest.mark.parametrize(("template", "keeps_manifest"), CASES)
def test_transport_conformance(
    tmp_path: Path, source_image: MemoryImage, template: str, keeps_manifest: bool
) -> None:
    from lamina.store import Store

    store = Store(tmp_path / "store") if template.startswith("local:") else None
    ref = transports.parse(template.format(d=tmp_path), store=store)
    assert transports.parse(str(ref), store=store) == ref
    desc = transports.copy(source_image, ref)
    back = ref.open_image()
    validate_image(back)
    if keeps_manifest:
        assert back.digest() == desc.digest == source_image.digest()
        assert back.raw_manifest() == source_image.raw_manifest()
    assert back.manifest().config.digest == source_image.manifest().config.digest
    assert back.raw_config() == source_image.raw_config()
    assert back.config().diff_ids == source_image.config().diff_ids
    assert flatten(back, tmp_path / "got") == flatten(source_image, tmp_path / "want")
    # and onwards: what this transport gives is a valid source for every other
    onward = transports.parse(f"oci:{tmp_path}/onward:x")
    transports.copy(back, onward)
    validate_image(onward.open_image())


def test_all_transports_agree(tmp_path: Path, make_image: MakeImage) -> None:
    """Chained through every transport, the image keeps its id, diff_ids and tree."""
    from lamina.store import Store

    img = make_image(RICH)
    store = Store(tmp_path / "store")
    current: Image = img
    for template, _ in [*CASES, *CASES]:
        ref = transports.parse(template.format(d=tmp_path / template[:3]), store=store)
        transports.copy(current, ref)
        current = ref.open_image()
        validate_image(current)
        assert current.manifest().config.digest == img.manifest().config.digest
    assert flatten(current, tmp_path / "got") == flatten(img, tmp_path / "want")
