"""``docker-archive:FILE[:NAME:TAG|:@N]`` — the ``docker save`` / ``docker load`` format.

Reading accepts both layouts Docker has written: legacy (``<id>/layer.tar``, ``<id>/json``,
``VERSION``, ``<hex>.json`` configs) and Docker 25+ (``blobs/sha256/<hex>`` plus ``index.json``
and ``oci-layout``); ``manifest.json`` (``[{Config, RepoTags, Layers}]``) is authoritative for
both, as it is for ``docker load`` and containers/image. Paths in it are archive member names:
``..``/absolute paths are refused, in-archive symlinks (Docker dedups layers with them) are
followed but never out of the archive. ``:NAME:TAG`` selects the entry with that RepoTag,
``:@N`` the N-th entry; with neither, the archive must hold one image.

Like containers/image, a loaded image is presented as a Docker schema 2 manifest (the same bytes
skopeo generates, so ``skopeo inspect`` and lamina agree on the digest) whose layers
are the *uncompressed* tars (digest == diff_id, size == tar size) under the media type
``application/vnd.docker.image.rootfs.diff.tar.gzip`` (which Docker uses for every layer), and
whose config descriptor points at the config bytes unchanged (so the image id is kept). A
compressed ``layer.tar`` (some tools write them) is decompressed on the fly; its size is
measured once when the image is opened.

Writing produces Docker 25's format, streamed in one pass (see :class:`ArchiveDestination`):
config and uncompressed layers under ``blobs/sha256/<hex>`` (a compressed layer is
decompressed straight into the archive; its header is completed when its size is known),
``manifest.json`` naming them, and an OCI ``index.json``/``oci-layout``
whose manifest uses OCI media types (``...layer.v1.tar``) with the
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name`` annotations. Both
``docker load`` and ``skopeo copy docker-archive:`` read it; it is also a valid
``oci-archive``. No ``repositories`` file is written: it names legacy v1 layer ids, which this
format has no directories for, and every loader prefers ``manifest.json``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from lamina import reference
from lamina._internal.compression import open_decompressed, sniff
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import InvalidManifest, InvalidReference, NotFound
from lamina.image.model import Image, ImageIndex
from lamina.image.partial import closing_reader
from lamina.oci import canonical, mediatype
from lamina.oci.config import ImageConfig
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest
from lamina.transports.base import Format, ImageRef
from lamina.transports.files import TarFiles
from lamina.transports.layout import (
    INDEX_FILE,
    LAYOUT_BYTES,
    LAYOUT_FILE,
    REF_NAME,
    blob_name,
    index_entries,
    merge_index,
)
from lamina.transports.ociarchive import ArchiveDestination
from lamina.transports.source import BlobSource, SourceImage

MANIFEST_FILE = "manifest.json"
CONTAINERD_NAME = "io.containerd.image.name"


@lazy_dataclass(frozen=True)
class DockerArchiveRef(ImageRef):
    """An image in a ``docker save`` archive."""

    transport: ClassVar[str] = "docker-archive"
    path: str
    name: reference.Reference | None = None
    index: int | None = None

    @classmethod
    def parse(cls, details: str) -> DockerArchiveRef:
        """Parse ``FILE[:NAME[:TAG]|:@N]``."""
        path, sep, ref = details.partition(":")
        if not path or (sep and not ref):
            raise InvalidReference(
                f"invalid docker-archive reference {details!r}",
                hint="use docker-archive:FILE[:NAME:TAG] or docker-archive:FILE:@N",
            )
        if ref.startswith("@"):
            if not ref[1:].isdigit() or len(ref) > 10:
                raise InvalidReference(f"invalid docker-archive image index {ref!r}")
            return cls(path, index=int(ref[1:]))
        if not ref:
            return cls(path)
        name = reference.parse(ref)
        if name.digest is not None:
            raise InvalidReference(
                f"invalid docker-archive reference {details!r}: digests are not allowed",
                hint="docker-archive names images by NAME:TAG",
            )
        return cls(path, name=name)

    def details(self) -> str:
        """``FILE[:NAME:TAG|:@N]``."""
        if self.index is not None:
            return f"{self.path}:@{self.index}"
        return self.path if self.name is None else f"{self.path}:{self.name}"

    def open(self) -> Image | ImageIndex:
        """The selected image (layers read in place from the archive)."""
        return DockerArchiveSource(TarFiles(Path(self.path)), str(self)).image(
            self.name, self.index
        )

    def destination(self) -> DockerArchiveDestination:
        """A destination writing a Docker 25 style archive at commit."""
        if self.index is not None:
            raise InvalidReference(f"{self}: an @N index can only be read, not written")
        return DockerArchiveDestination(Path(self.path), self.name, str(self))


class DockerArchiveSource(BlobSource):
    """A ``docker save`` archive; see the module docstring."""

    def __init__(self, files: TarFiles, what: str) -> None:
        self.files = files
        self.what = what
        self._blobs: dict[Digest, Callable[[], BinaryIO]] = {}

    @functools.cached_property
    def entries(self) -> list[dict[str, Any]]:
        """The parsed ``manifest.json`` entries (shape checked)."""
        try:
            data = self.files.read(MANIFEST_FILE, canonical.MAX_DOCUMENT)
        except NotFound:
            raise NotFound(f"{self.what}: not a docker archive (no {MANIFEST_FILE})") from None
        doc = canonical.loads_strict(data, f"{self.what}: {MANIFEST_FILE}")
        if not isinstance(doc, list) or not doc:
            raise InvalidManifest(f"{self.what}: {MANIFEST_FILE} must be a non-empty list")
        for i, e in enumerate(doc):
            what = f"{self.what}: {MANIFEST_FILE}[{i}]"
            if not isinstance(e, dict) or not isinstance(e.get("Config"), str):
                raise InvalidManifest(f"{what}: needs a string 'Config'")
            layers, tags = e.get("Layers"), e.get("RepoTags") or []
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise InvalidManifest(f"{what}: 'Layers' must be a list of paths")
            if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
                raise InvalidManifest(f"{what}: 'RepoTags' must be a list of names")
        return doc

    def select(self, name: reference.Reference | None, index: int | None) -> dict[str, Any]:
        """The manifest.json entry for ``name`` / ``index`` (or the only one)."""
        entries = self.entries
        if index is not None:
            if index >= len(entries):
                raise NotFound(f"{self.what}: no image @{index} ({len(entries)} in the archive)")
            return entries[index]
        if name is None:
            if len(entries) != 1:
                raise NotFound(
                    f"{self.what}: the archive holds {len(entries)} images; name one",
                    hint="add :NAME:TAG or :@N",
                )
            return entries[0]
        for e in entries:
            if any(reference.parse(t) == name for t in e.get("RepoTags") or []):
                return e
        raise NotFound(f"{self.what}: no image named {name.familiar()}")

    def image(self, name: reference.Reference | None, index: int | None) -> SourceImage:
        """The selected entry as an image with a synthesized Docker schema 2 manifest."""
        entry = self.select(name, index)
        config = self.files.read(entry["Config"], canonical.MAX_DOCUMENT, follow=True)
        config_desc = Descriptor.of_bytes(mediatype.DOCKER_CONFIG, config)
        diff_ids = ImageConfig.from_json(config).diff_ids
        if len(diff_ids) != len(entry["Layers"]):
            raise InvalidManifest(
                f"{self.what}: {len(entry['Layers'])} layers but the config has "
                f"{len(diff_ids)} diff_ids"
            )
        self._blobs[config_desc.digest] = functools.partial(
            self.files.open, entry["Config"], follow=True
        )
        layers = [self._layer(path, d) for path, d in zip(entry["Layers"], diff_ids, strict=True)]
        manifest = docker_manifest_bytes(config_desc, layers)
        desc = Descriptor.of_bytes(mediatype.DOCKER_MANIFEST, manifest)
        return SourceImage(self, manifest, desc)

    def _layer(self, path: str, diff_id: Digest) -> Descriptor:
        member = self.files.resolve(path, follow=True)
        with self.files.open(member) as f:
            compressed = sniff(f.read(4)) != "none"
        opener: Callable[[], BinaryIO] = functools.partial(self.files.open, member)
        size = self.files.members[member].size
        if compressed:
            opener = functools.partial(self._open_decompressed, member)
            size = _measure(opener)
        self._blobs[diff_id] = opener
        return Descriptor(media_type=mediatype.DOCKER_LAYER_GZIP, digest=diff_id, size=size)

    def _open_decompressed(self, member: str) -> BinaryIO:
        raw = self.files.open(member)
        stream, _ = open_decompressed(raw, what=f"{self.what}: {member}")
        return closing_reader(stream, [stream, raw])  # type: ignore[arg-type]

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """The config or (uncompressed) layer ``desc`` names."""
        opener = self._blobs.get(desc.digest)
        if opener is None:
            raise NotFound(f"{self.what}: no blob {desc.digest}")
        return opener()


def docker_manifest_bytes(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """The schema 2 manifest for an archived image, byte-identical to the one containers/image
    (skopeo, podman) generates for the same archive, so both report the same digest.

    That is Go's ``json.Marshal`` of its struct: fields in declaration order, compact.
    """

    def desc(d: Descriptor) -> dict[str, Any]:
        return {"mediaType": d.media_type, "size": d.size, "digest": str(d.digest)}

    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.DOCKER_MANIFEST,
        "config": desc(config),
        "layers": [desc(d) for d in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _measure(opener: Callable[[], BinaryIO]) -> int:
    total = 0
    with opener() as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total


class DockerArchiveDestination(ArchiveDestination):
    """Writes a Docker 25 style ``docker save`` archive; see the module docstring."""

    format: ClassVar[Format] = Format(
        media_types="oci", uncompressed_layers=True, serial_blobs=True
    )

    def __init__(self, target: Path, name: reference.Reference | None, what: str) -> None:
        super().__init__(target, what)
        self.name = name
        self._manifest_json: list[dict[str, Any]] = []
        self._index: list[Descriptor] = []

    def _put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...]) -> None:
        manifest = Manifest.from_json(data)
        refs = [reference.parse(n) for n in names] or ([self.name] if self.name else [])
        if any(r.digest is not None or r.tag is None for r in refs):
            raise InvalidReference("docker-archive names must be NAME:TAG, without a digest")
        for d in (manifest.config, *manifest.layers):
            if self.blob_size(d.digest) != d.size:
                raise NotFound(f"blob {d.digest} was not written before the manifest")
        config = ImageConfig.from_json(
            self.read_blob(manifest.config.digest, canonical.MAX_DOCUMENT)
        )
        if list(config.diff_ids) != [d.digest for d in manifest.layers]:
            raise InvalidManifest("docker-archive layers must be uncompressed (digest == diff_id)")
        self.put_verified_bytes(data, desc.digest)
        tags = [r.familiar() for r in refs]
        for e in self._manifest_json:
            e["RepoTags"] = [t for t in e["RepoTags"] if t not in tags]
        self._manifest_json.append(
            {
                "Config": blob_name(manifest.config.digest),
                "RepoTags": tags,
                "Layers": [blob_name(d.digest) for d in manifest.layers],
            }
        )
        entries = index_entries(desc, [r.tag or "" for r in refs])
        self._index.extend(
            _annotate(e, {CONTAINERD_NAME: str(r)}) for e, r in zip(entries, refs, strict=False)
        )
        if not refs:
            self._index.extend(entries)

    def _metadata(self) -> list[tuple[str, bytes]]:
        if not self._manifest_json:
            raise InvalidManifest(f"{self.what}: nothing to write (no image was put)")
        return [
            (INDEX_FILE, merge_index(None, self._index).to_json()),
            (MANIFEST_FILE, canonical.dumps(self._manifest_json)),
            (LAYOUT_FILE, LAYOUT_BYTES),
        ]


def _annotate(desc: Descriptor, extra: dict[str, str]) -> Descriptor:
    ann = {**(desc.annotations or {}), **extra}
    return Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        annotations=ann,
        platform=desc.platform,
    )


__all__ = ["REF_NAME", "DockerArchiveDestination", "DockerArchiveRef", "DockerArchiveSource"]
