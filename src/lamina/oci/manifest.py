"""Image manifests and indexes, OCI and Docker schema 2 (both media-type families).

Invariants: ``from_json`` rejects a document whose ``mediaType`` says it is the other kind
(manifest vs index confusion), wrong ``schemaVersion``, duplicate keys and malformed
descriptors. ``to_json`` is deterministic. Manifests read from elsewhere are kept as raw bytes
by their holders and never re-serialised, so their digests never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import InvalidManifest
from lamina.oci import canonical, mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.platform import Platform


def _check_schema(obj: dict[str, Any], what: str) -> None:
    if obj.get("schemaVersion") != 2 or isinstance(obj.get("schemaVersion"), bool):
        raise InvalidManifest(f"{what}: unsupported schemaVersion {obj.get('schemaVersion')!r}")


def _descriptors(obj: dict[str, Any], key: str, what: str) -> tuple[Descriptor, ...]:
    items = obj.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        raise InvalidManifest(f"{what}: {key!r} must be a list")
    return tuple(Descriptor.from_dict(d, f"{what} {key}[{i}]") for i, d in enumerate(items))


@lazy_dataclass(frozen=True, kw_only=True)
class Manifest:
    """A single-image manifest; ``layers`` are base first."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str | None = mediatype.OCI_MANIFEST
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse manifest bytes; raise InvalidManifest on anything wrong."""
        obj = canonical.loads_object(data, "manifest")
        _check_schema(obj, "manifest")
        media_type = canonical.get_str(obj, "mediaType", "manifest", required=False)
        if media_type is not None and not mediatype.is_manifest(media_type):
            raise InvalidManifest(f"manifest: unexpected mediaType {media_type!r}")
        if "manifests" in obj:
            raise InvalidManifest("manifest: has 'manifests' (is it an index?)")
        if "config" not in obj:
            raise InvalidManifest("manifest: missing 'config'")
        subject = obj.get("subject")
        return cls(
            media_type=media_type,
            config=Descriptor.from_dict(obj["config"], "manifest config"),
            layers=_descriptors(obj, "layers", "manifest"),
            annotations=canonical.get_str_map(obj, "annotations", "manifest"),
            subject=Descriptor.from_dict(subject, "manifest subject") if subject else None,
            artifact_type=canonical.get_str(obj, "artifactType", "manifest", required=False),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form."""
        out: dict[str, Any] = {"schemaVersion": 2}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_dict()
        out["layers"] = [d.to_dict() for d in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_json(self) -> bytes:
        """Deterministic bytes."""
        return canonical.dumps(self.to_dict())

    @property
    def is_docker(self) -> bool:
        """True for Docker schema 2 manifests."""
        return self.media_type == mediatype.DOCKER_MANIFEST


@lazy_dataclass(frozen=True, kw_only=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    manifests: tuple[Descriptor, ...]
    media_type: str | None = mediatype.OCI_INDEX
    annotations: dict[str, str] | None = None

    @classmethod
    def from_json(cls, data: bytes) -> Index:
        """Parse index bytes; raise InvalidManifest on anything wrong."""
        obj = canonical.loads_object(data, "index")
        _check_schema(obj, "index")
        media_type = canonical.get_str(obj, "mediaType", "index", required=False)
        if media_type is not None and not mediatype.is_index(media_type):
            raise InvalidManifest(f"index: unexpected mediaType {media_type!r}")
        if "layers" in obj or "config" in obj:
            raise InvalidManifest("index: has 'layers' or 'config' (is it a manifest?)")
        return cls(
            media_type=media_type,
            manifests=_descriptors(obj, "manifests", "index"),
            annotations=canonical.get_str_map(obj, "annotations", "index"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form."""
        out: dict[str, Any] = {"schemaVersion": 2}
        if self.media_type:
            out["mediaType"] = self.media_type
        out["manifests"] = [d.to_dict() for d in self.manifests]
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_json(self) -> bytes:
        """Deterministic bytes."""
        return canonical.dumps(self.to_dict())

    def select(self, platform: Platform) -> Descriptor | None:
        """The first image manifest for ``platform`` (or the only manifest if none has one)."""
        images = [d for d in self.manifests if mediatype.is_manifest(d.media_type)]
        for d in images:
            if d.platform is not None and platform.matches(d.platform):
                return d
        if len(images) == 1 and images[0].platform is None:
            return images[0]
        return None


def sniff_media_type(data: bytes) -> str:
    """The media type a manifest-ish document declares or implies (manifest vs index)."""
    obj = canonical.loads_object(data, "manifest")
    mt = obj.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in obj:
        return mediatype.OCI_INDEX
    if "config" in obj:
        return mediatype.OCI_MANIFEST
    raise InvalidManifest("document is neither a manifest nor an index")


def manifest_list(descs: Sequence[Descriptor]) -> Index:
    """An OCI index of ``descs``."""
    return Index(manifests=tuple(descs))
