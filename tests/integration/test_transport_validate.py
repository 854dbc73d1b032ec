"""``image.validate`` catches every inconsistency an implementation could report."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from lamina import transports
from lamina.errors import DigestMismatch, ImageError, InvalidManifest
from lamina.image.memory import MemoryImage
from lamina.image.validate import validate_image, validate_index
from lamina.oci import Descriptor, Digest, Index, Platform, mediatype
from lamina.testing.layers import file

MakeImage = Callable[..., MemoryImage]


class Lying:
    """Wraps an image and overrides one answer."""

    def __init__(self, inner: Any, **overrides: Any) -> None:
        self._inner = inner
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            value = self._overrides[name]
            return value if callable(value) else (lambda *a: value)
        return getattr(self._inner, name)


def _manifest_with(img: MemoryImage, edit: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(img.raw_manifest())
    edit(doc)
    return json.dumps(doc).encode()


def _consistent(raw: bytes) -> dict[str, Any]:
    """Overrides that keep manifest(), raw_manifest() and digest() agreeing."""
    from lamina.oci.manifest import Manifest

    parsed = Manifest.from_json(raw)
    return {"raw_manifest": raw, "digest": Digest.of_bytes(raw), "manifest": lambda: parsed}


def test_a_good_image_passes(make_image: MakeImage) -> None:
    validate_image(make_image([[file("a", b"a")], [file("b", b"b")]]))


CASES: list[tuple[str, Callable[[MemoryImage], dict[str, Any]], type[ImageError], str]] = [
    (
        "manifest digest",
        lambda img: {"digest": Digest.of_bytes(b"other")},
        DigestMismatch,
        "manifest bytes",
    ),
    (
        "media type",
        lambda img: {"media_type": mediatype.DOCKER_MANIFEST},
        InvalidManifest,
        "reports",
    ),
    (
        "config bytes",
        lambda img: {"raw_config": img.raw_config() + b" "},
        DigestMismatch,
        "config",
    ),
    ("layer count", lambda img: {"layers": img.layers()[:1]}, InvalidManifest, "2 in the manifest"),
    (
        "layer order",
        lambda img: {"layers": img.layers()[::-1]},
        InvalidManifest,
        "differ from the manifest",
    ),
    (
        "config type",
        lambda img: _consistent(
            _manifest_with(img, lambda d: d["config"].update(mediaType=mediatype.DOCKER_CONFIG))
        ),
        InvalidManifest,
        "config media type",
    ),
    (
        "docker layer in an oci manifest",
        lambda img: _consistent(
            _manifest_with(
                img, lambda d: d["layers"][0].update(mediaType=mediatype.DOCKER_LAYER_GZIP)
            )
        ),
        InvalidManifest,
        "layer 0: media type",
    ),
]


@pytest.mark.parametrize(("case", "lie", "error", "needle"), CASES)
def test_lies_are_caught(
    make_image: MakeImage,
    case: str,
    lie: Callable[[MemoryImage], dict[str, Any]],
    error: type[ImageError],
    needle: str,
) -> None:
    img = make_image([[file("a", b"a")], [file("b", b"b")]])
    with pytest.raises(error, match=needle):
        validate_image(Lying(img, **lie(img)))


def _layer_lying(img: MemoryImage, index: int, **overrides: Any) -> Lying:
    layers = img.layers()
    layers[index] = Lying(layers[index], **overrides)  # type: ignore[call-overload]
    return Lying(img, layers=layers)


def test_layer_streams_are_hashed_independently(make_image: MakeImage, tmp_path: Path) -> None:
    img = make_image([[file("a", b"a")], [file("b", b"b")]])
    other = make_image([[file("z", b"z")]], tag="z").layers()[0]

    def wrong_blob() -> BinaryIO:
        return other.open_compressed()

    def wrong_tar() -> BinaryIO:
        return other.open_uncompressed()

    with pytest.raises(DigestMismatch, match="layer 1"):
        validate_image(_layer_lying(img, 1, open_compressed=wrong_blob))
    with pytest.raises(DigestMismatch, match="uncompressed tar"):
        validate_image(_layer_lying(img, 0, open_uncompressed=wrong_tar))


def test_compression_must_match_the_media_type(make_image: MakeImage) -> None:
    img = make_image([[file("a", b"a")]], compression="none")
    lying_type = mediatype.OCI_LAYER_GZIP
    raw = _manifest_with(img, lambda d: d["layers"][0].update(mediaType=lying_type))
    layers = [Lying(img.layers()[0], media_type=lying_type)]
    fake = Lying(img, raw_manifest=raw, digest=Digest.of_bytes(raw), layers=layers)
    from lamina.oci.manifest import Manifest

    fake._overrides["manifest"] = lambda: Manifest.from_json(raw)
    with pytest.raises(InvalidManifest, match="media type says gzip but the blob is none"):
        validate_image(fake)


def test_indexes_validate_every_child(tmp_path: Path, make_image: MakeImage) -> None:
    a, b = make_image([[file("a", b"a")]], tag="a"), make_image([[file("b", b"b")]], tag="b")
    lay = tmp_path / "lay"
    for name, img in (("a", a), ("b", b)):
        transports.copy(img, transports.parse(f"oci:{lay}:{name}"))
    children = tuple(
        Descriptor.of_bytes(
            mediatype.OCI_MANIFEST,
            img.raw_manifest(),
            platform=Platform(os="linux", architecture=arch),
        )
        for img, arch in ((a, "amd64"), (b, "arm64"))
    )
    data = Index(manifests=children).to_json()
    desc = Descriptor.of_bytes(mediatype.OCI_INDEX, data)
    (lay / f"blobs/sha256/{desc.digest.hex}").write_bytes(data)
    transports.copy(transports.parse(f"oci:{lay}:a").open(), transports.parse(f"oci:{tmp_path}/x"))
    source = transports.parse(f"oci:{lay}:a")
    from lamina.transports.oci import OciRef

    assert isinstance(source, OciRef)
    idx = source.source().load(desc)
    validate_index(idx)  # type: ignore[arg-type]
    (lay / f"blobs/sha256/{b.layers()[0].digest().hex}").write_bytes(io.BytesIO(b"x").read())
    with pytest.raises(DigestMismatch, match="index entry"):
        validate_index(idx)  # type: ignore[arg-type]
