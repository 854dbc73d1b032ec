"""Interop with real tools: skopeo and umoci read what lamina writes, and the reverse.

The images: a busybox base made from Debian's static ``/bin/busybox``, plus layers with
deletions, an opaque directory, hard links, symlinks, a setuid file and an xattr. Trees are
compared with :func:`lamina.testing.layers.tree_manifest` (directory mtimes excluded: applying
a deletion touches the parent directory in every implementation).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina import transports
from lamina._internal.compression import open_compressor
from lamina.errors import UnsafeArchive
from lamina.image.memory import FileLayer, MemoryImage, file_layer
from lamina.image.model import Image
from lamina.image.validate import validate_image
from lamina.oci.config import History, ImageConfig
from lamina.snapshot.apply import apply_layer
from lamina.snapshot.writer import write_layer
from lamina.testing.layers import (
    EPOCH,
    Entry,
    directory,
    file,
    hardlink,
    make_busybox_rootfs,
    opaque_in,
    symlink,
    tree_manifest,
    whiteout_of,
    write_tar,
)

pytestmark = pytest.mark.needs_tools

MakeImage = Callable[..., MemoryImage]


def run(*args: str | Path) -> str:
    """Run a tool; fail the test with its stderr if it fails."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{args[0]} failed: {proc.stderr}"
    return proc.stdout


def write_layer_file(path: Path, entries: list[Entry], compression: str = "gzip") -> FileLayer:
    """Write ``entries`` as a (compressed) layer file and describe it."""
    with path.open("wb") as out:
        writer = open_compressor(out, compression)
        write_tar(entries, writer)
        writer.close()
    return file_layer(path)


def busybox_layer(tmp: Path) -> FileLayer:
    rootfs = make_busybox_rootfs(tmp / "busybox-rootfs")
    path = tmp / "busybox.tar.gz"
    with path.open("wb") as out:
        gz = open_compressor(out, "gzip")
        write_layer(rootfs, gz, kind="dir", epoch=EPOCH)
        gz.close()
    return file_layer(path)


def rich_image(tmp: Path) -> MemoryImage:
    """busybox + three layers exercising every change type."""
    layers = [
        busybox_layer(tmp),
        write_layer_file(
            tmp / "l1.tar.gz",
            [
                directory("opt"),
                directory("opt/data"),
                file("opt/data/a", b"a"),
                file("opt/data/b", b"b", xattrs={"user.lamina": b"yes"}),
                file("usr-tool", b"#!/bin/sh\necho tool\n", mode=0o4755),
                hardlink("usr-tool-link", "usr-tool"),
                symlink("opt/current", "data/a"),
                directory("var"),
                directory("var/cache"),
                file("var/cache/junk", b"x" * 10_000),
            ],
        ),
        write_layer_file(
            tmp / "l2.tar.gz",
            [
                whiteout_of("etc/hostname"),
                opaque_in("opt/data"),
                file("opt/data/c", b"c"),
                whiteout_of("var/cache"),
                file("etc/motd", b"hello from lamina\n", mode=0o600, uid=1000, gid=100),
            ],
        ),
        write_layer_file(tmp / "l3.tar", [file("usr-tool", b"v2\n", mode=0o755)], "none"),
    ]
    config = ImageConfig(
        created="2023-11-14T22:13:20Z",
        config={"Cmd": ["/bin/sh"], "Env": ["PATH=/bin:/sbin"]},
        diff_ids=tuple(layer.diff_id() for layer in layers),
        history=tuple(History(created_by=f"layer {i}") for i in range(len(layers))),
    )
    img = MemoryImage(config, layers)
    validate_image(img)
    return img


def flatten(img: Image, target: Path) -> list[tuple[object, ...]]:
    target.mkdir(parents=True)
    for layer in img.layers():
        with layer.open_uncompressed() as f:
            apply_layer(f, target, mode="merged")
    return tree(target)


def tree(root: Path) -> list[tuple[object, ...]]:
    return tree_manifest(root, dir_mtimes=False)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> MemoryImage:
    return rich_image(tmp_path_factory.mktemp("rich"))


@pytest.fixture(scope="module")
def expected_tree(image: MemoryImage, tmp_path_factory: pytest.TempPathFactory) -> list[object]:
    return flatten(image, tmp_path_factory.mktemp("flat") / "rootfs")  # type: ignore[return-value]


LAMINA_OUTPUTS = [
    ("oci:{d}/lay:v1", "oci:{d}/lay:v1"),
    ("oci-archive:{d}/a.tar:v1", "oci-archive:{d}/a.tar:v1"),
    ("docker-archive:{d}/d.tar:lamina/test:v1", "docker-archive:{d}/d.tar"),
]


@pytest.mark.parametrize(("lamina_ref", "skopeo_ref"), LAMINA_OUTPUTS)
def test_skopeo_reads_what_lamina_writes(
    tmp_path: Path,
    image: MemoryImage,
    expected_tree: list[object],
    lamina_ref: str,
    skopeo_ref: str,
) -> None:
    ref = transports.parse(lamina_ref.format(d=tmp_path))
    transports.copy(image, ref)
    ours = ref.open_image()
    info = json.loads(run("skopeo", "inspect", skopeo_ref.format(d=tmp_path)))
    # skopeo computes the same manifest digest (for docker-archive, of the manifest it and
    # lamina both synthesise from manifest.json)
    assert info["Digest"] == str(ours.digest())
    assert info["Layers"] == [str(layer.digest()) for layer in ours.layers()]
    raw_config = json.loads(run("skopeo", "inspect", "--config", skopeo_ref.format(d=tmp_path)))
    assert raw_config["rootfs"]["diff_ids"] == [str(d) for d in image.config().diff_ids]
    # skopeo copies it to the other formats, and lamina reads those with the same tree
    for n, out in enumerate(["oci:{d}/sk-oci:x", "docker-archive:{d}/sk.tar:sk/x:1"]):
        dest = out.format(d=tmp_path)
        run("skopeo", "copy", "--quiet", skopeo_ref.format(d=tmp_path), dest)
        back = transports.parse(dest).open_image()
        validate_image(back)
        assert back.config().diff_ids == image.config().diff_ids
        assert flatten(back, tmp_path / f"flat{n}") == expected_tree


def test_lamina_reads_skopeo_legacy_docker_archive(
    tmp_path: Path, image: MemoryImage, expected_tree: list[object]
) -> None:
    transports.copy(image, transports.parse(f"oci:{tmp_path}/lay:v1"))
    run(
        "skopeo",
        "copy",
        "--quiet",
        f"oci:{tmp_path}/lay:v1",
        f"docker-archive:{tmp_path}/s.tar:a/b:c",
    )
    skopeo_digest = json.loads(run("skopeo", "inspect", f"docker-archive:{tmp_path}/s.tar"))[
        "Digest"
    ]
    back = transports.parse(f"docker-archive:{tmp_path}/s.tar:a/b:c").open_image()
    validate_image(back)
    assert str(back.digest()) == skopeo_digest
    assert back.manifest().config.digest == image.manifest().config.digest
    assert flatten(back, tmp_path / "flat") == expected_tree


def test_umoci_unpacks_lamina_oci_output(
    tmp_path: Path, image: MemoryImage, expected_tree: list[object]
) -> None:
    transports.copy(image, transports.parse(f"oci:{tmp_path}/lay:v1"))
    run("umoci", "unpack", "--image", f"{tmp_path}/lay:v1", tmp_path / "bundle")
    assert tree(tmp_path / "bundle/rootfs") == expected_tree


def test_lamina_reads_umoci_images(tmp_path: Path, image: MemoryImage) -> None:
    lay = tmp_path / "umoci"
    transports.copy(image, transports.parse(f"oci:{lay}:base"))
    run("umoci", "unpack", "--image", f"{lay}:base", tmp_path / "bundle")
    rootfs = tmp_path / "bundle/rootfs"
    (rootfs / "etc/motd").unlink()
    shutil.rmtree(rootfs / "opt/data")
    (rootfs / "opt/data").mkdir()
    (rootfs / "opt/data/z").write_text("z\n")
    (rootfs / "new-link").symlink_to("bin/busybox")
    run("umoci", "repack", "--image", f"{lay}:next", tmp_path / "bundle")
    run("umoci", "gc", "--layout", lay)
    img = transports.parse(f"oci:{lay}:next").open_image()
    validate_image(img)
    assert len(img.layers()) == len(image.layers()) + 1
    got = flatten(img, tmp_path / "flat")
    (tmp_path / "expect").mkdir()
    run("umoci", "unpack", "--image", f"{lay}:next", tmp_path / "expect/bundle")
    assert got == tree(tmp_path / "expect/bundle/rootfs")
    paths = {row[0] for row in got}
    assert "new-link" in paths and "opt/data/z" in paths and "etc/motd" not in paths
    # and lamina passes umoci's image on to the other formats
    transports.copy(img, transports.parse(f"docker-archive:{tmp_path}/u.tar:u/x:1"))
    back = transports.parse(f"docker-archive:{tmp_path}/u.tar").open_image()
    validate_image(back)
    assert flatten(back, tmp_path / "flat2") == got


def test_umoci_insert_layers_are_truncated_tars(tmp_path: Path) -> None:
    """umoci 0.4.7 ``insert`` ends its layer tar without padding or end blocks (GNU tar and
    Go's archive/tar reject it too). lamina carries the blob (its digest is right) but refuses
    to apply it, with a clear error, rather than guessing."""
    lay = tmp_path / "lay"
    run("umoci", "init", "--layout", lay)
    run("umoci", "new", "--image", f"{lay}:t")
    (tmp_path / "f").write_text("inserted\n")
    run("umoci", "insert", "--image", f"{lay}:t", tmp_path / "f", "/f")
    img = transports.parse(f"oci:{lay}:t").open_image()
    validate_image(img)
    with pytest.raises(UnsafeArchive, match="truncated tar"):
        flatten(img, tmp_path / "flat")
