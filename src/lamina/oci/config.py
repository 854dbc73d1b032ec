"""Image configuration (OCI image-spec "Image Configuration", Docker's container config).

Invariant: ``rootfs.diff_ids`` has one entry per layer, base first. Unknown top-level keys are
kept in ``extra`` so a parsed config re-serialises without losing information; configs read
from elsewhere are still kept as raw bytes by their holders (their digest is the image id).
"""

from __future__ import annotations

from dataclasses import field, replace
from typing import Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ImageError, InvalidManifest
from lamina.oci import canonical
from lamina.oci.digest import Digest

_KNOWN = {
    "architecture",
    "os",
    "variant",
    "os.version",
    "created",
    "author",
    "config",
    "rootfs",
    "history",
}


@lazy_dataclass(frozen=True, kw_only=True)
class History:
    """One history entry; ``empty_layer`` entries have no layer of their own."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    @classmethod
    def from_dict(cls, obj: Any) -> History:
        """Parse one history object."""
        if not isinstance(obj, dict):
            raise InvalidManifest("config history entries must be objects")

        def s(key: str) -> str | None:
            v = obj.get(key)
            return v if isinstance(v, str) else None

        return cls(
            created=s("created"),
            created_by=s("created_by"),
            author=s("author"),
            comment=s("comment"),
            empty_layer=obj.get("empty_layer") is True,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form."""
        out: dict[str, Any] = {}
        for key in ("created", "created_by", "author", "comment"):
            v = getattr(self, key)
            if v is not None:
                out[key] = v
        if self.empty_layer:
            out["empty_layer"] = True
        return out


@lazy_dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """An image config. ``config`` is the container config (Env, Cmd, Entrypoint, ...)."""

    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    created: str | None = None
    author: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes) -> ImageConfig:
        """Parse config bytes; raise InvalidManifest when malformed."""
        obj = canonical.loads_object(data, "image config")
        rootfs = obj.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidManifest("image config: 'rootfs' must be {type: layers, diff_ids: [...]}")
        ids = rootfs.get("diff_ids") or []
        if not isinstance(ids, list):
            raise InvalidManifest("image config: 'rootfs.diff_ids' must be a list")
        try:
            diff_ids = tuple(Digest.parse(d) for d in ids)
        except ImageError as exc:
            raise InvalidManifest(f"image config: {exc.message}") from None
        cfg = obj.get("config") or {}
        if not isinstance(cfg, dict):
            raise InvalidManifest("image config: 'config' must be an object")
        hist = obj.get("history") or []
        if not isinstance(hist, list):
            raise InvalidManifest("image config: 'history' must be a list")
        variant = obj.get("variant")
        return cls(
            architecture=str(obj.get("architecture") or ""),
            os=str(obj.get("os") or ""),
            variant=variant if isinstance(variant, str) else None,
            created=canonical.get_str(obj, "created", "image config", required=False),
            author=canonical.get_str(obj, "author", "image config", required=False),
            config=cfg,
            diff_ids=diff_ids,
            history=tuple(History.from_dict(h) for h in hist),
            extra={k: v for k, v in obj.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form."""
        out: dict[str, Any] = dict(self.extra)
        out["architecture"] = self.architecture
        out["os"] = self.os
        if self.variant:
            out["variant"] = self.variant
        if self.created is not None:
            out["created"] = self.created
        if self.author is not None:
            out["author"] = self.author
        out["config"] = self.config
        out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_dict() for h in self.history]
        return out

    def to_json(self) -> bytes:
        """Deterministic bytes."""
        return canonical.dumps(self.to_dict())

    def with_layer(self, diff_id: Digest, history: History) -> ImageConfig:
        """A copy with one more layer on top and its history entry."""
        return replace(self, diff_ids=(*self.diff_ids, diff_id), history=(*self.history, history))

    def with_history(self, history: History) -> ImageConfig:
        """A copy with one more (usually empty_layer) history entry."""
        return replace(self, history=(*self.history, history))
