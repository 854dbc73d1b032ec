"""Content descriptors (OCI image-spec "Descriptors")."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ImageError, InvalidManifest
from lamina.oci import canonical
from lamina.oci.digest import Digest
from lamina.oci.platform import Platform


@lazy_dataclass(frozen=True, kw_only=True)
class Descriptor:
    """Points at content by media type, digest and size.

    Invariant: ``size`` is non-negative and ``digest`` well formed; readers of the content must
    verify both (see :mod:`lamina._internal.verify`).
    """

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] | None = field(default=None, compare=False)
    platform: Platform | None = None
    urls: tuple[str, ...] | None = None
    artifact_type: str | None = None

    @classmethod
    def from_dict(cls, obj: Any, what: str = "descriptor") -> Descriptor:
        """Parse a descriptor object; raise InvalidManifest when malformed."""
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{what}: must be an object")
        media_type = canonical.get_str(obj, "mediaType", what)
        digest_text = canonical.get_str(obj, "digest", what)
        assert media_type is not None and digest_text is not None
        try:
            digest = Digest.parse(digest_text)
        except ImageError as exc:
            raise InvalidManifest(f"{what}: {exc.message}") from None
        urls = obj.get("urls")
        if urls is not None and (
            not isinstance(urls, list) or not all(isinstance(u, str) for u in urls)
        ):
            raise InvalidManifest(f"{what}: 'urls' must be a list of strings")
        platform = obj.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=canonical.get_int(obj, "size", what),
            annotations=canonical.get_str_map(obj, "annotations", what),
            platform=Platform.from_dict(platform) if platform is not None else None,
            urls=tuple(urls) if urls else None,
            artifact_type=canonical.get_str(obj, "artifactType", what, required=False),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form (only set fields)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def of_bytes(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        """A descriptor for ``data``."""
        return cls(media_type=media_type, digest=Digest.of_bytes(data), size=len(data), **kw)
