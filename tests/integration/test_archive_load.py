"""``load`` reads an archive in place, once: every entry, compressed archives, bad input."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina import transports
from lamina.errors import ImageError
from lamina.image.memory import MemoryImage
from lamina.ops.archive import detect_archive, load
from lamina.store import Store
from lamina.testing.layers import file

MakeImage = Callable[..., MemoryImage]


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store", driver="vfs")


def test_oci_archive_with_several_unnamed_entries_loads_each(
    tmp_path: Path, make_image: MakeImage
) -> None:
    a = make_image([[file("a", b"a")]], tag="a")
    b = make_image([[file("b", b"b")]], tag="b")
    layout = tmp_path / "layout"
    for img in (a, b):  # no :REF, so index.json gets two unnamed entries
        transports.copy(img, transports.parse(f"oci:{layout}"))
    archive = tmp_path / "two.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
    assert detect_archive(archive) == "oci-archive"
    store = _store(tmp_path)
    loaded = load(store, archive)
    assert loaded == [str(a.digest()), str(b.digest())]
    for img in (a, b):
        assert store.get_image(str(img.digest())).config().diff_ids == img.config().diff_ids


def test_gzipped_docker_archive_loads_with_its_names(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image([[file("etc/motd", b"hi\n")], [file("x", b"y" * 5000)]])
    plain = tmp_path / "d.tar"
    transports.copy(img, transports.parse(f"docker-archive:{plain}:me/app:1"))
    packed = tmp_path / "d.tar.gz"
    with plain.open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert detect_archive(packed) == "docker-archive"
    store = _store(tmp_path)
    assert load(store, packed) == ["me/app:1"]
    stored = store.get_image("me/app:1")
    assert stored.id() == img.manifest().config.digest
    assert stored.config().diff_ids == img.config().diff_ids


def test_not_a_tar_and_not_an_image_archive(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x01" * 4096)
    with pytest.raises(ImageError, match="not a readable tar archive"):
        load(_store(tmp_path), garbage)
    other = tmp_path / "other.tar"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "hello").write_text("hi")
    subprocess.run(["tar", "-C", str(tmp_path / "d"), "-cf", str(other), "."], check=True)
    with pytest.raises(ImageError, match="neither a docker-archive nor an oci-archive"):
        load(_store(tmp_path), other)
