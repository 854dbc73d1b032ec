"""Archive destinations stream each blob once into the tar: what that must still guarantee."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina import transports
from lamina.errors import DigestMismatch
from lamina.image.memory import MemoryImage
from lamina.image.validate import validate_image
from lamina.oci import mediatype
from lamina.testing.layers import file

MakeImage = Callable[..., MemoryImage]


def _layers() -> list[list[object]]:
    return [[file("etc/motd", b"hello\n")], [file("data", bytes(range(256)) * 300)]]


def test_docker_archive_of_gzip_layers_is_deterministic_and_sized_right(
    tmp_path: Path, make_image: MakeImage
) -> None:
    """Gzip layers are decompressed straight into the archive; their headers are completed
    afterwards. Two saves give the same bytes; every member's size is the tar's."""
    img = make_image(_layers(), compression="gzip")
    assert all(layer.digest() != layer.diff_id() for layer in img.layers())
    outs = [tmp_path / "one.tar", tmp_path / "two.tar"]
    for out in outs:
        transports.copy(img, transports.parse(f"docker-archive:{out}:app:1"))
    one, two = (hashlib.sha256(p.read_bytes()).hexdigest() for p in outs)
    assert one == two
    back = transports.parse(f"docker-archive:{outs[0]}").open_image()
    validate_image(back)
    for layer, want in zip(back.layers(), img.layers(), strict=True):
        assert layer.digest() == want.diff_id()
        with want.open_uncompressed() as f:
            assert layer.size() == len(f.read())
    with tarfile.open(outs[0]) as tar:
        names = tar.getnames()
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert names[-3:] == ["index.json", "manifest.json", "oci-layout"]


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_a_corrupt_source_blob_leaves_no_archive(
    tmp_path: Path, make_image: MakeImage, transport: str
) -> None:
    """Read once and verified while written: a flipped bit in the source stops the save, and
    neither the archive nor a temp file is left."""
    img = make_image(_layers(), compression="none")
    src = tmp_path / "src"
    transports.copy(img, transports.parse(f"oci:{src}:v1"))
    top = src / "blobs" / "sha256" / img.layers()[-1].digest().encoded
    data = bytearray(top.read_bytes())
    data[-2000] ^= 1
    top.write_bytes(bytes(data))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DigestMismatch):
        transports.copy(
            transports.parse(f"oci:{src}:v1"), transports.parse(f"{transport}:{out_dir}/a.tar")
        )
    assert list(out_dir.iterdir()) == []


def test_oci_archive_keeps_layer_media_types_and_bytes(
    tmp_path: Path, make_image: MakeImage
) -> None:
    img = make_image(_layers(), compression="gzip")
    out = tmp_path / "o.tar"
    transports.copy(img, transports.parse(f"oci-archive:{out}:v1"))
    back = transports.parse(f"oci-archive:{out}:v1").open_image()
    validate_image(back)
    assert back.digest() == img.digest()
    assert [d.media_type for d in back.manifest().layers] == [mediatype.OCI_LAYER_GZIP] * 2
