"""Checks on what the registry sends back: bounded reads, manifest digests, media types, tag
lists and pagination links.

Invariants: a body is never read past ``limit`` bytes; a manifest's digest is checked against
the digest it was asked by and against ``Docker-Content-Digest`` (in that header's algorithm);
a pagination link never leaves the registry's origin.
"""

from __future__ import annotations

import json

import httpx

from lamina.errors import DigestMismatch, ImageError, InvalidManifest, RegistryError
from lamina.oci import mediatype
from lamina.oci.digest import Digest
from lamina.registry.redaction import redact_url


def read_bounded(resp: httpx.Response, limit: int, context: str) -> bytes:
    """The body of a streamed ``resp``; InvalidManifest once it exceeds ``limit`` bytes."""
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        raise InvalidManifest(f"{context}: response of {length} bytes exceeds {limit} bytes")
    data = bytearray()
    for chunk in resp.iter_bytes():
        data += chunk
        if len(data) > limit:
            raise InvalidManifest(f"{context}: response exceeds {limit} bytes")
    return bytes(data)


def parse_header_digest(header: str, context: str) -> Digest:
    """The digest in a ``Docker-Content-Digest`` header; RegistryError if malformed."""
    try:
        return Digest.parse(header.strip())
    except ImageError:
        raise RegistryError(f"{context}: invalid Docker-Content-Digest header") from None


def check_digest(data: bytes, ref: str | Digest, header: str | None, context: str) -> Digest:
    """The digest of ``data``, checked against a digest ``ref`` and the registry's header."""
    digest = Digest.of_bytes(data, ref.algorithm if isinstance(ref, Digest) else "sha256")
    if isinstance(ref, Digest) and digest != ref:
        raise DigestMismatch(f"{context}: content has digest {digest}")
    if header:
        claimed = parse_header_digest(header, context)
        if Digest.of_bytes(data, claimed.algorithm) != claimed:
            raise DigestMismatch(
                f"{context}: registry sent Docker-Content-Digest {claimed} "
                f"but the content has digest {digest}"
            )
    return digest


def media_type_of(resp: httpx.Response, data: bytes) -> str:
    """The manifest's media type: ``Content-Type``, else its ``mediaType`` field, else OCI."""
    media = str(resp.headers.get("Content-Type", "")).split(";")[0].strip()
    if media and media not in ("application/json", "text/plain", "application/octet-stream"):
        return media
    try:
        declared = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    return declared if isinstance(declared, str) and declared else mediatype.OCI_MANIFEST


def parse_tags(data: bytes, context: str) -> list[str]:
    """The ``tags`` of a tag-list page."""
    try:
        tags = json.loads(data).get("tags") or []
    except (ValueError, AttributeError):
        raise RegistryError(f"{context}: invalid tag list") from None
    if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
        raise RegistryError(f"{context}: invalid tag list")
    return list(tags)


def next_page(resp: httpx.Response, context: str) -> str | None:
    """The absolute URL of the next page (``Link: <...>; rel="next"``), same origin only."""
    link = resp.links.get("next", {}).get("url")
    if not isinstance(link, str) or not link:
        return None
    target = resp.request.url.join(link)
    base = resp.request.url
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise RegistryError(f"{context}: pagination link to another host {redact_url(str(target))}")
    return str(target)
