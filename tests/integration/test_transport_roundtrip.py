"""Transports on real directories and archives: round trips, merging, indexes, discard."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lamina import transports
from lamina.errors import DigestMismatch, NotFound, StorageError, UnsafeArchive
from lamina.image.memory import MemoryImage
from lamina.image.validate import validate_image, validate_index
from lamina.oci import Descriptor, Digest, Index, Platform, mediatype
from lamina.testing.layers import directory, file, symlink
from lamina.transports.copy import Progress
from lamina.transports.layout import REF_NAME
from lamina.transports.source import is_index

MakeImage = Callable[..., MemoryImage]


def _layers(tag: str) -> list[list[object]]:
    return [
        [
            directory("etc"),
            file("etc/os-release", b"ID=lamina\n"),
            symlink("etc/link", "os-release"),
        ],
        [file("etc/app.conf", f"tag={tag}\n".encode(), mode=0o600)],
    ]


def _index_json(path: Path) -> dict[str, Any]:
    return json.loads((path / "index.json").read_text())  # type: ignore[no-any-return]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_oci_round_trip_keeps_the_manifest_digest(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    ref = transports.parse(f"oci:{tmp_path}/lay:v1")
    desc = transports.copy(img, ref)
    assert desc.digest == img.digest()
    back = ref.open_image()
    assert back.digest() == img.digest() and back.raw_config() == img.raw_config()
    validate_image(back)
    doc = _index_json(tmp_path / "lay")
    assert doc["manifests"] == [
        {
            "mediaType": mediatype.OCI_MANIFEST,
            "digest": str(img.digest()),
            "size": len(img.raw_manifest()),
            "annotations": {REF_NAME: "v1"},
        }
    ]
    assert json.loads((tmp_path / "lay/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert not [p for p in (tmp_path / "lay").iterdir() if p.name.startswith(".")]


def test_oci_merges_and_replaces_entries(tmp_path: Path, make_image: MakeImage) -> None:
    a, b, c = (make_image(_layers(t), tag=t) for t in "abc")
    lay = tmp_path / "lay"
    transports.copy(a, transports.parse(f"oci:{lay}:v1"))
    transports.copy(b, transports.parse(f"oci:{lay}:v2"))
    transports.copy(c, transports.parse(f"oci:{lay}:v1"))
    entries = _index_json(lay)["manifests"]
    assert [(e["annotations"][REF_NAME], e["digest"]) for e in entries] == [
        ("v2", str(b.digest())),
        ("v1", str(c.digest())),
    ]
    assert transports.parse(f"oci:{lay}:v1").open_image().digest() == c.digest()
    with pytest.raises(NotFound) as info:
        transports.parse(f"oci:{lay}").open()
    assert info.value.hint and "v1" in info.value.hint and "v2" in info.value.hint
    with pytest.raises(NotFound, match="no image named 'v3'"):
        transports.parse(f"oci:{lay}:v3").open()


def test_reuse_skips_blobs_the_destination_has(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    transports.copy(img, transports.parse(f"oci:{tmp_path}/lay:v1"))
    events: list[Progress] = []
    transports.copy(img, transports.parse(f"oci:{tmp_path}/lay:v2"), progress=events.append)
    states = {(e.kind, e.state) for e in events}
    assert ("layer", "skipped") in states and ("layer", "done") not in states
    assert ("config", "skipped") in states


def test_oci_archive_is_deterministic(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    for name in ("one.tar", "two.tar"):
        transports.copy(img, transports.parse(f"oci-archive:{tmp_path}/{name}:v1"))
    assert _sha(tmp_path / "one.tar") == _sha(tmp_path / "two.tar")
    back = transports.parse(f"oci-archive:{tmp_path}/one.tar:v1").open_image()
    assert back.digest() == img.digest()
    validate_image(back)
    with tarfile.open(tmp_path / "one.tar") as tar:
        names = tar.getnames()
    assert names[:2] == ["blobs", "blobs/sha256"] and "index.json" in names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_docker_archive_writes_docker25_format(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    path = tmp_path / "d.tar"
    transports.copy(img, transports.parse(f"docker-archive:{path}:me/app:1"))
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    diff_ids = [str(d) for d in img.config().diff_ids]
    assert manifest == [
        {
            "Config": f"blobs/sha256/{img.manifest().config.digest.hex}",
            "RepoTags": ["me/app:1"],
            "Layers": [f"blobs/sha256/{d[7:]}" for d in diff_ids],
        }
    ]
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": "docker.io/me/app:1",
        REF_NAME: "1",
    }
    assert "oci-layout" in names and "repositories" not in names
    back = transports.parse(f"docker-archive:{path}").open_image()
    validate_image(back)
    assert back.media_type() == mediatype.DOCKER_MANIFEST
    assert back.manifest().config.digest == img.manifest().config.digest  # image id kept
    assert [layer.digest() for layer in back.layers()] == list(img.config().diff_ids)
    as_oci = transports.parse(f"oci-archive:{path}:1").open_image()  # also an OCI archive
    validate_image(as_oci)
    assert [d.media_type for d in as_oci.manifest().layers] == [mediatype.OCI_LAYER] * 2


def test_docker_archive_to_oci_is_deterministic(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    transports.copy(img, transports.parse(f"docker-archive:{tmp_path}/d.tar:x:1"))
    src = transports.parse(f"docker-archive:{tmp_path}/d.tar:x:1")
    d1 = transports.copy(src, transports.parse(f"oci:{tmp_path}/o1"))
    d2 = transports.copy(src, transports.parse(f"oci:{tmp_path}/o2"))
    assert d1 == d2 and d1.media_type == mediatype.OCI_MANIFEST
    validate_image(transports.parse(f"oci:{tmp_path}/o1").open_image())


def _legacy_archive(path: Path, images: list[tuple[MemoryImage, list[str]]]) -> None:
    """A pre-25 ``docker save`` archive: <id>/layer.tar, json, VERSION, <hex>.json, dedup links."""
    entries: list[dict[str, object]] = []
    seen: dict[Digest, str] = {}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for n, (img, tags) in enumerate(images):
            layer_paths = []
            for i, layer in enumerate(img.layers()):
                lid = hashlib.sha256(f"{n}-{i}".encode()).hexdigest()
                add(f"{lid}/VERSION", b"1.0")
                add(f"{lid}/json", json.dumps({"id": lid}).encode())
                if layer.diff_id() in seen:
                    link = tarfile.TarInfo(f"{lid}/layer.tar")
                    link.type = tarfile.SYMTYPE
                    link.linkname = f"../{seen[layer.diff_id()]}/layer.tar"
                    tar.addfile(link)
                else:
                    with layer.open_uncompressed() as f:
                        add(f"{lid}/layer.tar", f.read())
                    seen[layer.diff_id()] = lid
                layer_paths.append(f"{lid}/layer.tar")
            cfg = img.manifest().config.digest.hex
            add(f"{cfg}.json", img.raw_config())
            entries.append({"Config": f"{cfg}.json", "RepoTags": tags, "Layers": layer_paths})
        add("manifest.json", json.dumps(entries).encode())
        add("repositories", b"{}")


def test_docker_archive_reads_legacy_format(tmp_path: Path, make_image: MakeImage) -> None:
    a = make_image(_layers("a"), tag="a")
    b = make_image([_layers("a")[0], [file("b", b"b")]], tag="b")  # shares the base layer
    _legacy_archive(tmp_path / "l.tar", [(a, ["a:1"]), (b, ["docker.io/library/b:2", "b:3"])])
    for text, want in [(":a:1", a), (":b:3", b), (":@1", b), (":docker.io/library/a:1", a)]:
        img = transports.parse(f"docker-archive:{tmp_path}/l.tar{text}").open_image()
        validate_image(img)
        assert img.config().diff_ids == want.config().diff_ids
        assert img.manifest().config.digest == want.manifest().config.digest
    with pytest.raises(NotFound, match="holds 2 images"):
        transports.parse(f"docker-archive:{tmp_path}/l.tar").open()
    with pytest.raises(NotFound, match="no image @2"):
        transports.parse(f"docker-archive:{tmp_path}/l.tar:@2").open()
    with pytest.raises(NotFound, match="no image named c:1"):
        transports.parse(f"docker-archive:{tmp_path}/l.tar:c:1").open()


def test_compressed_archives_and_layers(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    transports.copy(img, transports.parse(f"docker-archive:{tmp_path}/d.tar:x:1"))
    raw = (tmp_path / "d.tar").read_bytes()
    import gzip

    (tmp_path / "d.tar.gz").write_bytes(gzip.compress(raw, mtime=0))
    back = transports.parse(f"docker-archive:{tmp_path}/d.tar.gz").open_image()
    validate_image(back)
    assert back.config().diff_ids == img.config().diff_ids
    # A docker-archive whose layer.tar members are gzip (some tools write them).
    with tarfile.open(tmp_path / "z.tar", "w") as tar:
        cfg = img.raw_config()
        layers = []
        for i, layer in enumerate(img.layers()):
            with layer.open_compressed() as f:
                data = f.read()
            info = tarfile.TarInfo(f"l{i}/layer.tar")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            layers.append(info.name)
        for name, data in [
            ("c.json", cfg),
            ("manifest.json", json.dumps([{"Config": "c.json", "Layers": layers}]).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    z = transports.parse(f"docker-archive:{tmp_path}/z.tar").open_image()
    validate_image(z)
    assert [layer.digest() for layer in z.layers()] == list(img.config().diff_ids)


def _multi_platform_layout(tmp_path: Path, make_image: MakeImage, nested: bool) -> Path:
    lay = tmp_path / "multi"
    imgs = {"amd64": make_image(_layers("x"), tag="x"), "arm64": make_image(_layers("y"), tag="y")}
    for arch, img in imgs.items():
        transports.copy(img, transports.parse(f"oci:{lay}:{arch}"))
    children = tuple(
        Descriptor(
            media_type=mediatype.OCI_MANIFEST,
            digest=img.digest(),
            size=len(img.raw_manifest()),
            platform=Platform(
                os="linux", architecture=arch, variant="v8" if arch == "arm64" else None
            ),
        )
        for arch, img in imgs.items()
    )
    index = Index(manifests=children).to_json()
    top = Descriptor.of_bytes(mediatype.OCI_INDEX, index)
    (lay / f"blobs/sha256/{top.digest.hex}").write_bytes(index)
    if nested:
        outer = Index(manifests=(top,)).to_json()
        top = Descriptor.of_bytes(mediatype.OCI_INDEX, outer)
        (lay / f"blobs/sha256/{top.digest.hex}").write_bytes(outer)
    entry = Descriptor(
        media_type=top.media_type, digest=top.digest, size=top.size, annotations={REF_NAME: "multi"}
    )
    (lay / "index.json").write_bytes(Index(manifests=(entry,)).to_json())
    return lay


@pytest.mark.parametrize("nested", [False, True])
def test_indexes_select_platforms_and_copy_whole(
    tmp_path: Path, make_image: MakeImage, nested: bool
) -> None:
    lay = _multi_platform_layout(tmp_path, make_image, nested)
    ref = transports.parse(f"oci:{lay}:multi")
    idx = ref.open()
    assert is_index(idx)
    validate_index(idx)
    arm = ref.open_image(Platform.parse("linux/arm64"))
    assert arm.config().config["Labels"] == {"tag": "y"}
    with pytest.raises(NotFound, match="no image for platform linux/s390x"):
        ref.open_image(Platform.parse("linux/s390x"))
    desc = transports.copy(ref, transports.parse(f"oci-archive:{tmp_path}/all.tar:multi"))
    assert desc.digest == idx.digest()  # every platform, bytes unchanged
    copied = transports.parse(f"oci-archive:{tmp_path}/all.tar:multi").open()
    assert is_index(copied)
    validate_index(copied)
    one = transports.copy(
        ref,
        transports.parse(f"docker-archive:{tmp_path}/one.tar:x:1"),
        platform=Platform.parse("linux/arm64"),
    )
    assert one.media_type == mediatype.OCI_MANIFEST
    got = transports.parse(f"docker-archive:{tmp_path}/one.tar").open_image()
    assert got.config().config["Labels"] == {"tag": "y"}


def _corrupt_layer(img: MemoryImage) -> None:
    path = img.layers()[-1].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_failed_copies_leave_nothing(tmp_path: Path, make_image: MakeImage) -> None:
    good = make_image(_layers("good"), tag="good")
    lay = tmp_path / "lay"
    transports.copy(good, transports.parse(f"oci:{lay}:v1"))
    before = {p: _sha(p) for p in lay.rglob("*") if p.is_file()}
    bad = make_image([*_layers("bad"), [file("x", os.urandom(4096))]], tag="bad")
    _corrupt_layer(bad)
    targets = [
        f"oci:{lay}:v1",
        f"oci:{tmp_path}/fresh:v1",
        f"oci-archive:{tmp_path}/a.tar",
        f"docker-archive:{tmp_path}/d.tar:x:1",
    ]
    for text in targets:
        # decompressing (docker-archive) trips on the gzip CRC before the digest check
        with pytest.raises((DigestMismatch, UnsafeArchive)):
            transports.copy(bad, transports.parse(text))
    assert {p: _sha(p) for p in lay.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "lay"]


def test_destination_context_discards_without_commit(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    layer = img.layers()[0]
    with transports.parse(f"oci:{tmp_path}/lay").destination() as dst:
        with layer.open_compressed() as f:
            dst.put_blob(f, layer.descriptor)
        assert dst.has_blob(layer.descriptor)
    assert not (tmp_path / "lay").exists()
    dst.discard()  # idempotent


def test_destination_paths_that_cannot_be_written(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    for text in (f"oci:{tmp_path}/afile", f"oci-archive:{tmp_path}/adir"):
        with pytest.raises(StorageError, match="cannot write"):
            transports.copy(img, transports.parse(text))
    assert (tmp_path / "afile").read_text() == "x" and not any((tmp_path / "adir").iterdir())


def test_manifests_must_not_dangle(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(_layers("a"))
    with transports.parse(f"oci:{tmp_path}/lay:v1").destination() as dst:
        dst.put_blob(io.BytesIO(img.raw_config()), img.manifest().config)
        with pytest.raises(NotFound, match="which was not written"):
            dst.put_manifest(
                img.raw_manifest(), Descriptor.of_bytes(img.media_type(), img.raw_manifest())
            )
    assert not (tmp_path / "lay").exists()


def test_concurrent_writers_keep_each_others_entries(tmp_path: Path, make_image: MakeImage) -> None:
    from concurrent.futures import ThreadPoolExecutor

    imgs = [make_image(_layers(str(i)), tag=str(i)) for i in range(6)]
    lay = tmp_path / "lay"
    transports.copy(imgs[0], transports.parse(f"oci:{lay}:t0"))
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: transports.copy(imgs[i], transports.parse(f"oci:{lay}:t{i}")), range(1, 6)
            )
        )
    for i, img in enumerate(imgs):
        assert transports.parse(f"oci:{lay}:t{i}").open_image().digest() == img.digest()
