"""Hostile and broken inputs: one clear LaminaError each, and no partial output left behind."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina import transports
from lamina.errors import DigestMismatch, InvalidManifest, LaminaError, NotFound, UnsafeArchive
from lamina.image.memory import MemoryImage
from lamina.image.validate import validate_image
from lamina.oci import mediatype
from lamina.testing.layers import directory, file

MakeImage = Callable[..., MemoryImage]


@pytest.fixture
def layout(tmp_path: Path, make_image: MakeImage) -> tuple[Path, MemoryImage]:
    img = make_image([[directory("etc"), file("etc/a", b"a" * 3000)], [file("b", b"b")]])
    transports.copy(img, transports.parse(f"oci:{tmp_path}/lay:v1"))
    return tmp_path / "lay", img


def _blob(lay: Path, digest: object) -> Path:
    return lay / "blobs/sha256" / str(digest).removeprefix("sha256:")


def _load_and_copy(ref_text: str, out: Path) -> None:
    """Open, validate and copy; the copy must leave nothing at ``out`` when it fails."""
    try:
        transports.copy(transports.parse(ref_text), transports.parse(f"oci:{out}:x"))
        validate_image(transports.parse(ref_text).open_image())
    finally:
        if out.exists():
            assert (out / "index.json").exists(), "a failed copy left a partial layout"


def _set_index(lay: Path, data: bytes) -> None:
    (lay / "index.json").write_bytes(data)


INDEX_BREAKERS: list[tuple[str, Callable[[bytes], bytes], type[LaminaError], str]] = [
    ("truncated", lambda b: b[:-3], InvalidManifest, "invalid JSON"),
    ("duplicate key", lambda b: b[:-1] + b',"schemaVersion":2}', InvalidManifest, "duplicate key"),
    ("not an object", lambda b: b"[]", InvalidManifest, "expected a JSON object"),
    (
        "manifest media type",
        lambda b: b.replace(mediatype.OCI_INDEX.encode(), mediatype.OCI_MANIFEST.encode()),
        InvalidManifest,
        "unexpected mediaType",
    ),
    ("NaN", lambda b: b[:-1] + b',"x":NaN}', InvalidManifest, "NaN"),
]


@pytest.mark.parametrize(("case", "mutate", "error", "needle"), INDEX_BREAKERS)
def test_bad_index_json(
    layout: tuple[Path, MemoryImage],
    tmp_path: Path,
    case: str,
    mutate: Callable[[bytes], bytes],
    error: type[LaminaError],
    needle: str,
) -> None:
    lay, _ = layout
    _set_index(lay, mutate((lay / "index.json").read_bytes()))
    with pytest.raises(error, match=needle):
        _load_and_copy(f"oci:{lay}:v1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_writing_refuses_to_clobber_a_malformed_index(
    layout: tuple[Path, MemoryImage], make_image: MakeImage
) -> None:
    lay, _ = layout
    _set_index(lay, b'{"schemaVersion":2,"schemaVersion":2}')
    other = make_image([[file("z", b"z")]], tag="z")
    with pytest.raises(InvalidManifest, match="refusing to overwrite"):
        transports.copy(other, transports.parse(f"oci:{lay}:v2"))
    assert (lay / "index.json").read_bytes() == b'{"schemaVersion":2,"schemaVersion":2}'
    assert not _blob(lay, other.digest()).exists()


def test_manifest_index_confusion(layout: tuple[Path, MemoryImage], tmp_path: Path) -> None:
    lay, img = layout
    doc = json.loads((lay / "index.json").read_text())
    doc["manifests"][0]["mediaType"] = mediatype.OCI_INDEX
    _set_index(lay, json.dumps(doc).encode())
    with pytest.raises(InvalidManifest):
        _load_and_copy(f"oci:{lay}:v1", tmp_path / "out")
    # and a manifest blob that declares itself an index while the descriptor says manifest
    raw = json.loads(img.raw_manifest())
    raw["mediaType"] = mediatype.OCI_INDEX
    _blob(lay, img.digest()).write_bytes(json.dumps(raw).encode())
    doc["manifests"][0]["mediaType"] = mediatype.OCI_MANIFEST
    doc["manifests"][0]["digest"] = (
        "sha256:" + __import__("hashlib").sha256(json.dumps(raw).encode()).hexdigest()
    )
    doc["manifests"][0]["size"] = len(json.dumps(raw).encode())
    _blob(lay, doc["manifests"][0]["digest"]).write_bytes(json.dumps(raw).encode())
    _set_index(lay, json.dumps(doc).encode())
    with pytest.raises(InvalidManifest, match="says"):
        transports.parse(f"oci:{lay}:v1").open()
    assert not (tmp_path / "out").exists()


def test_missing_and_mismatched_blobs(layout: tuple[Path, MemoryImage], tmp_path: Path) -> None:
    lay, img = layout
    top = _blob(lay, img.layers()[-1].digest())
    saved = top.read_bytes()
    top.unlink()
    with pytest.raises(NotFound, match="no such file"):
        _load_and_copy(f"oci:{lay}:v1", tmp_path / "out")
    top.write_bytes(saved + b"x")
    with pytest.raises(DigestMismatch, match="more than the declared"):
        _load_and_copy(f"oci:{lay}:v1", tmp_path / "out")
    top.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    with pytest.raises((DigestMismatch, UnsafeArchive)):
        _load_and_copy(f"oci:{lay}:v1", tmp_path / "out")
    cfg = _blob(lay, img.manifest().config.digest)
    cfg.write_bytes(cfg.read_bytes().replace(b"amd64", b"arm64"))
    with pytest.raises(DigestMismatch, match="config"):
        transports.parse(f"oci:{lay}:v1").open_image().config()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "outside", "blobs-dir-link"])
def test_blobs_that_are_not_regular_files(
    layout: tuple[Path, MemoryImage], tmp_path: Path, kind: str
) -> None:
    lay, img = layout
    blob = _blob(lay, img.layers()[0].digest())
    if kind == "blobs-dir-link":
        shutil.move(lay / "blobs", tmp_path / "elsewhere")
        (lay / "blobs").symlink_to(tmp_path / "elsewhere")
    else:
        blob.unlink()
        if kind == "fifo":
            os.mkfifo(blob)
        elif kind == "dev-zero":
            blob.symlink_to("/dev/zero")
        else:
            (tmp_path / "secret").write_bytes(b"secret")
            blob.symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafeArchive, match=r"symlink|not a regular file"):
        _load_and_copy(f"oci:{lay}:v1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(NotFound, match="not an OCI layout"):
        transports.parse(f"oci:{tmp_path}/d").open()
    with pytest.raises(NotFound):
        transports.parse(f"oci:{tmp_path}/missing").open()


def _tar(path: Path, members: list[tuple[str, bytes | None, str]]) -> None:
    """(name, data, kind) with kind file/symlink/hardlink; data is the link target for links."""
    with tarfile.open(path, "w") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = (data or b"").decode()
                tar.addfile(info)


def _archive_members(path: Path) -> list[tuple[str, bytes | None, str]]:
    with tarfile.open(path) as tar:
        return [
            (m.name, tar.extractfile(m).read(), "file")  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        ]


@pytest.mark.parametrize("case", ["dotdot", "absolute", "duplicate", "symlink", "hardlink"])
def test_hostile_oci_archives(tmp_path: Path, make_image: MakeImage, case: str) -> None:
    img = make_image([[file("a", b"a")]])
    transports.copy(img, transports.parse(f"oci-archive:{tmp_path}/good.tar"))
    members = _archive_members(tmp_path / "good.tar")
    layer_name = f"blobs/sha256/{img.layers()[0].digest().hex}"
    if case in ("dotdot", "absolute"):
        members.append(("../evil" if case == "dotdot" else "/etc/evil", b"x", "file"))
        needle = "unsafe member name"
    elif case == "duplicate":
        members.append((layer_name, b"other content", "file"))
        needle = "more than once"
    else:
        members = [m for m in members if m[0] != layer_name]
        members.append(("elsewhere", b"", "file"))
        members.append((layer_name, b"elsewhere", case))
        needle = "not a regular file"
    _tar(tmp_path / "bad.tar", members)
    with pytest.raises(UnsafeArchive, match=needle):
        _load_and_copy(f"oci-archive:{tmp_path}/bad.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_tar(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"hello, this is not a tar archive" * 40)
    with pytest.raises(UnsafeArchive, match="not a valid tar"):
        transports.parse(f"oci-archive:{tmp_path}/x.tar").open()


def _docker_archive_with(
    tmp_path: Path, make_image: MakeImage, edit: Callable[[list[dict[str, object]]], object]
) -> Path:
    img = make_image([[file("a", b"a")], [file("b", b"b")]])
    transports.copy(img, transports.parse(f"docker-archive:{tmp_path}/good.tar:x:1"))
    members = _archive_members(tmp_path / "good.tar")
    out = []
    for name, data, kind in members:
        if name == "manifest.json":
            doc = json.loads(data or b"")
            replaced = edit(doc)
            data = replaced if isinstance(replaced, bytes) else json.dumps(doc).encode()
        out.append((name, data, kind))
    _tar(tmp_path / "bad.tar", out)
    return tmp_path / "bad.tar"


def _set_layer(path: str) -> Callable[[list[dict[str, object]]], object]:
    def edit(doc: list[dict[str, object]]) -> None:
        doc[0]["Layers"] = [path, doc[0]["Layers"][1]]  # type: ignore[index]

    return edit


DOCKER_BREAKERS: list[
    tuple[str, Callable[[list[dict[str, object]]], object], type[LaminaError], str]
] = [
    ("dotdot layer", _set_layer("../../etc/passwd"), UnsafeArchive, "unsafe path"),
    ("inner dotdot", _set_layer("blobs/../../x"), UnsafeArchive, "unsafe path"),
    ("absolute layer", _set_layer("/etc/passwd"), UnsafeArchive, "unsafe path"),
    ("missing layer", _set_layer("nope/layer.tar"), NotFound, "no member"),
    (
        "dup key",
        lambda d: b'[{"Config":"a","Config":"b","Layers":[]}]',
        InvalidManifest,
        "duplicate key",
    ),
    ("not a list", lambda d: b'{"Config":"a"}', InvalidManifest, "non-empty list"),
    ("bad json", lambda d: b'[{"Config":', InvalidManifest, "invalid JSON"),
    ("layer count", lambda d: d[0].update(Layers=d[0]["Layers"][:1]), InvalidManifest, "diff_ids"),  # type: ignore[index]
    ("config types", lambda d: d[0].update(Config=3), InvalidManifest, "Config"),
]


@pytest.mark.parametrize(("case", "edit", "error", "needle"), DOCKER_BREAKERS)
def test_hostile_docker_archives(
    tmp_path: Path,
    make_image: MakeImage,
    case: str,
    edit: Callable[[list[dict[str, object]]], object],
    error: type[LaminaError],
    needle: str,
) -> None:
    bad = _docker_archive_with(tmp_path, make_image, edit)
    with pytest.raises(error, match=needle):
        _load_and_copy(f"docker-archive:{bad}", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_docker_archive_symlink_out_of_archive(tmp_path: Path, make_image: MakeImage) -> None:
    bad = _docker_archive_with(tmp_path, make_image, _set_layer("l/layer.tar"))
    members = _archive_members(bad)
    members.append(("l/layer.tar", b"../../../etc/passwd", "symlink"))
    _tar(bad, members)
    with pytest.raises(UnsafeArchive, match="links outside the archive"):
        transports.parse(f"docker-archive:{bad}").open()


def test_docker_archive_layer_content_mismatch(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image([[file("a", b"a")]])
    transports.copy(img, transports.parse(f"docker-archive:{tmp_path}/good.tar:x:1"))
    layer = f"blobs/sha256/{img.config().diff_ids[0].hex}"
    # the layer tar gains a trailing zero block: a different tar than the config's diff_id
    members: list[tuple[str, bytes | None, str]] = [
        (n, (d or b"") + (b"\0" * 512 if n == layer else b""), k)
        for n, d, k in _archive_members(tmp_path / "good.tar")
    ]
    _tar(tmp_path / "bad.tar", members)
    with pytest.raises(DigestMismatch):
        _load_and_copy(f"docker-archive:{tmp_path}/bad.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()
