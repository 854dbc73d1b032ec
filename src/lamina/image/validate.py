"""The conformance check every Image/Index implementation runs (go-containerregistry's validate).

:func:`validate_image` trusts nothing the implementation computed: it re-parses the raw
manifest and config, re-hashes them, and reads every layer twice (compressed and
uncompressed) hashing the bytes itself. It raises the first problem found as a
:class:`~lamina.errors.ImageError` subclass, with the layer index in the message.

Checks: manifest bytes parse and hash to ``digest()``; ``media_type()`` agrees with the
document; the config descriptor's type is a config type of the same family; config bytes hash
to the descriptor and parse; ``layers()`` count == manifest layers == ``diff_ids``; each layer's
``digest/size/media_type`` equal its descriptor; its compressed stream hashes to the digest and
has the size; the uncompressed stream hashes to the diff_id; the stream's real compression is
what the media type says (Docker's ``tar.gzip`` type on a plain tar whose digest is its diff_id
is accepted: ``docker save`` archives are presented that way by every tool).
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from lamina._internal.compression import open_decompressed, sniff
from lamina.errors import DigestMismatch, ImageError, InvalidManifest
from lamina.image.model import Image, ImageIndex, Layer
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Index, Manifest

CHUNK = 1 << 20


def _hash_stream(stream: BinaryIO, algorithm: str) -> tuple[Digest, int, bytes]:
    h = hashlib.new(algorithm)
    size = 0
    head = b""
    while chunk := stream.read(CHUNK):
        if size < 4:
            head = (head + chunk)[:4]
        h.update(chunk)
        size += len(chunk)
    return Digest(algorithm, h.hexdigest()), size, head


def _check_bytes(data: bytes, desc: Descriptor, what: str) -> None:
    if len(data) != desc.size:
        raise DigestMismatch(f"{what}: {len(data)} bytes, descriptor says {desc.size}")
    if Digest.of_bytes(data, desc.digest.algorithm) != desc.digest:
        raise DigestMismatch(f"{what}: bytes do not hash to {desc.digest}")


def _check_media_types(manifest: Manifest, declared: str) -> None:
    mt = manifest.media_type or mediatype.OCI_MANIFEST
    if mt != declared:
        raise InvalidManifest(f"manifest says {mt!r} but the image reports {declared!r}")
    docker = mt == mediatype.DOCKER_MANIFEST
    want_config = mediatype.DOCKER_CONFIG if docker else mediatype.OCI_CONFIG
    if manifest.config.media_type != want_config:
        raise InvalidManifest(
            f"config media type {manifest.config.media_type!r} in a {mt!r} manifest"
        )
    for i, d in enumerate(manifest.layers):
        if d.media_type not in mediatype.LAYER_TYPES:
            raise InvalidManifest(f"layer {i}: unknown media type {d.media_type!r}")
        if d.media_type.startswith("application/vnd.docker.") != docker:
            raise InvalidManifest(f"layer {i}: media type {d.media_type!r} in a {mt!r} manifest")


def validate_layer(layer: Layer, desc: Descriptor, diff_id: Digest, what: str) -> None:
    """Check one layer against its manifest descriptor and config diff_id."""
    if (layer.digest(), layer.size(), layer.media_type()) != (
        desc.digest,
        desc.size,
        desc.media_type,
    ):
        raise InvalidManifest(f"{what}: digest/size/media type differ from the manifest")
    if layer.diff_id() != diff_id:
        raise InvalidManifest(f"{what}: diff_id {layer.diff_id()} but config says {diff_id}")
    with layer.open_compressed() as f:
        digest, size, head = _hash_stream(f, desc.digest.algorithm)
    if (digest, size) != (desc.digest, desc.size):
        raise DigestMismatch(f"{what}: blob is {digest} ({size} bytes), expected {desc}")
    actual = sniff(head)
    declared = mediatype.layer_compression(desc.media_type)
    docker_plain = desc.media_type == mediatype.DOCKER_LAYER_GZIP and desc.digest == diff_id
    if actual != declared and not (docker_plain and actual == "none"):
        raise InvalidManifest(f"{what}: media type says {declared} but the blob is {actual}")
    with layer.open_uncompressed() as f:
        plain, _, _ = _hash_stream(f, diff_id.algorithm)
    if plain != diff_id:
        raise DigestMismatch(f"{what}: uncompressed tar is {plain}, diff_id is {diff_id}")
    with layer.open_compressed() as f:
        stream, _ = open_decompressed(f, what=what)
        again, _, _ = _hash_stream(stream, diff_id.algorithm)
    if again != diff_id:
        raise DigestMismatch(f"{what}: decompressing the blob gives {again}, not {diff_id}")


def validate_image(img: Image) -> None:
    """Run every check in the module docstring; raise the first failure."""
    raw = img.raw_manifest()
    manifest = Manifest.from_json(raw)
    if Digest.of_bytes(raw, img.digest().algorithm) != img.digest():
        raise DigestMismatch(f"manifest bytes do not hash to the image digest {img.digest()}")
    if manifest != img.manifest():
        raise InvalidManifest("manifest() differs from the parsed raw_manifest()")
    _check_media_types(manifest, img.media_type())
    _check_bytes(img.raw_config(), manifest.config, "config")
    config = img.config()
    layers = img.layers()
    if not len(layers) == len(manifest.layers) == len(config.diff_ids):
        raise InvalidManifest(
            f"{len(layers)} layers, {len(manifest.layers)} in the manifest, "
            f"{len(config.diff_ids)} diff_ids in the config"
        )
    for i, (layer, desc, diff_id) in enumerate(
        zip(layers, manifest.layers, config.diff_ids, strict=True)
    ):
        validate_layer(layer, desc, diff_id, f"layer {i} ({desc.digest})")


def validate_index(idx: ImageIndex) -> None:
    """Validate the index document and every child image (nested indexes too)."""
    raw = idx.raw_manifest()
    parsed = Index.from_json(raw)
    if Digest.of_bytes(raw, idx.digest().algorithm) != idx.digest():
        raise DigestMismatch(f"index bytes do not hash to {idx.digest()}")
    for desc in parsed.manifests:
        if mediatype.is_index(desc.media_type):
            opener = getattr(idx, "child", None)
            if opener is None:
                raise InvalidManifest(f"nested index {desc.digest} cannot be opened")
            validate_index(opener(desc))
            continue
        image = idx.image(desc)
        if image.digest() != desc.digest:
            raise InvalidManifest(f"child {desc.digest} opened as {image.digest()}")
        try:
            validate_image(image)
        except ImageError as exc:
            raise exc.with_context(f"index entry {desc.digest}") from None
