"""``--cache-from``/``--cache-to``/``--cache-repo`` values: which registry cache, which mode.

BuildKit's syntax ``type=registry,ref=HOST/REPO[:TAG][,mode=min|max]`` (``ignore-error`` is
accepted and has no effect: cache errors are always warnings, see :mod:`.regcache`), a bare
``HOST/REPO[:TAG]``, and Kaniko's ``--cache-repo HOST/REPO`` (import and export, ``mode=max``,
merging). Pure parsing: no I/O; malformed values are UsageErrors naming the flag.
"""

from __future__ import annotations

from typing import Literal

from lamina import reference
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import InvalidReference, UsageError

DEFAULT_TAG = "buildcache"
Mode = Literal["min", "max"]


@lazy_dataclass(frozen=True, kw_only=True)
class CacheSpec:
    """One ``--cache-from``/``--cache-to``: the cache manifest's reference and export mode.

    ``mode`` ``min`` exports the steps whose results are in the final image; ``max`` every
    step of every stage. ``merge`` keeps imported records of the same ref (``--cache-repo``).
    """

    ref: reference.Reference
    mode: Mode = "min"
    merge: bool = False

    @property
    def host(self) -> str:
        """The registry (``127.0.0.1:5000``)."""
        return self.ref.domain

    @property
    def repository(self) -> str:
        """The repository path."""
        return self.ref.path

    @property
    def tag(self) -> str:
        """The cache manifest's tag."""
        return self.ref.tag or DEFAULT_TAG

    def __str__(self) -> str:
        return f"{self.ref.name}:{self.tag}"


def _parse_ref(text: str, flag: str) -> reference.Reference:
    try:
        ref = reference.parse(text, default_tag=False)
    except InvalidReference as exc:
        raise UsageError(f"invalid {flag} ref {text!r}: {exc.message}", hint=exc.hint) from exc
    if ref.digest is not None:
        raise UsageError(f"invalid {flag} ref {text!r}: a cache ref takes a tag, not a digest")
    return ref


def parse_cache_spec(text: str, *, flag: str = "--cache-from") -> CacheSpec:
    """Parse ``type=registry,ref=HOST/REPO[:TAG][,mode=min|max]`` (BuildKit's syntax); a
    bare ``HOST/REPO[:TAG]`` means ``type=registry,ref=`` it. UsageError when malformed."""
    if "=" not in text:
        return CacheSpec(ref=_parse_ref(text, flag))
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"invalid {flag} {text!r}: {item!r} is not key=value")
        fields[key.strip().lower()] = value.strip()
    kind = fields.pop("type", "registry")
    if kind != "registry":
        raise UsageError(
            f"invalid {flag} {text!r}: unsupported type {kind!r}", hint="use type=registry"
        )
    ref = fields.pop("ref", "")
    if not ref:
        raise UsageError(f"invalid {flag} {text!r}: ref=HOST/REPO[:TAG] is required")
    mode = fields.pop("mode", "min")
    if mode not in ("min", "max"):
        raise UsageError(f"invalid {flag} {text!r}: mode must be min or max")
    fields.pop("ignore-error", None)  # errors are always warnings here
    if fields:
        raise UsageError(f"invalid {flag} {text!r}: unknown attribute {sorted(fields)[0]!r}")
    return CacheSpec(ref=_parse_ref(ref, flag), mode="max" if mode == "max" else "min")


def cache_repo_specs(repo: str) -> tuple[CacheSpec, CacheSpec]:
    """``--cache-repo HOST/REPO``: (the import, the export: ``mode=max``, merging)."""
    ref = _parse_ref(repo, "--cache-repo")
    return CacheSpec(ref=ref), CacheSpec(ref=ref, mode="max", merge=True)
