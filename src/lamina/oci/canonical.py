"""Strict JSON in, deterministic JSON out.

``loads_strict`` rejects what a lenient parser would silently accept and an attacker could use
to make two tools see two different documents: duplicate object keys, NaN/Infinity, non-UTF-8
bytes and oversized documents. ``dumps`` is deterministic: the same value always gives the same
bytes (sorted keys, no whitespace), so digests of generated manifests and configs are stable.
"""

from __future__ import annotations

import json
from typing import Any

from lamina.errors import InvalidManifest

#: Upper bound for manifests, indexes and configs read into memory (the distribution spec
#: lets registries refuse manifests over 4 MiB; configs with long histories can be larger).
MAX_DOCUMENT = 16 * 1024 * 1024


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidManifest(f"duplicate key {key!r} in JSON document")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise InvalidManifest(f"invalid JSON constant {name}")


def loads_strict(data: bytes, what: str = "document") -> Any:
    """Parse ``data`` as strict JSON; raise InvalidManifest naming ``what`` on any problem."""
    if len(data) > MAX_DOCUMENT:
        raise InvalidManifest(f"{what} is too large ({len(data)} bytes)")
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except InvalidManifest as exc:
        raise exc.with_context(f"parsing {what}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidManifest(f"parsing {what}: invalid JSON: {exc}") from None


def loads_object(data: bytes, what: str = "document") -> dict[str, Any]:
    """Like :func:`loads_strict` but the top level must be a JSON object."""
    value = loads_strict(data, what)
    if not isinstance(value, dict):
        raise InvalidManifest(f"parsing {what}: expected a JSON object")
    return value


def dumps(value: Any) -> bytes:
    """Deterministic compact JSON bytes (sorted keys, UTF-8, no trailing newline)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def get_str(obj: dict[str, Any], key: str, what: str, *, required: bool = True) -> str | None:
    """``obj[key]`` as a string, or None when absent and not required."""
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidManifest(f"{what}: missing {key!r}")
        return None
    if not isinstance(value, str):
        raise InvalidManifest(f"{what}: {key!r} must be a string")
    return value


def get_int(obj: dict[str, Any], key: str, what: str) -> int:
    """``obj[key]`` as a non-negative int (bools rejected)."""
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidManifest(f"{what}: {key!r} must be a non-negative integer")
    return value


def get_str_map(obj: dict[str, Any], key: str, what: str) -> dict[str, str] | None:
    """``obj[key]`` as a string->string map, or None."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidManifest(f"{what}: {key!r} must be a map of strings")
    return dict(value)
