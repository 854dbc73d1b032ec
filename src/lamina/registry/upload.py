"""Blob uploads (distribution-spec "Pushing blobs"): monolithic or chunked, and mounts.

A session starts with ``POST /v2/NAME/blobs/uploads/`` (or a cross-repository mount request that
the registry may answer with a session, ``202``, instead of ``201 Created``). Blobs up to
``chunk_size`` go in one ``PUT ?digest=``; bigger ones in ``PATCH`` chunks with
``Content-Range`` and a final empty ``PUT``.

Invariants: the source stream is read once, in order, through a VerifyingReader, so a stream
that does not match its descriptor fails before the upload is committed (and the session is
cancelled); at most one chunk (``chunk_size``, at least the registry's ``OCI-Chunk-Min-Length``,
at most 64 MiB) is held in memory; a failed ``PATCH`` is resumed from the offset the registry
reports (``GET`` on the session, ``Range: 0-N``) a bounded number of times.
"""

from __future__ import annotations

import contextlib
import re

import httpx

from lamina._internal.log import get_logger
from lamina._internal.verify import Readable, VerifyingReader
from lamina.errors import RegistryError
from lamina.oci.descriptor import Descriptor
from lamina.registry.auth import Scope
from lamina.registry.transport import Transport

log = get_logger(__name__)
DEFAULT_CHUNK = 8 << 20
MAX_CHUNK = 64 << 20
_RANGE = re.compile(r"(?:bytes=)?0-(\d+)")
_OCTETS = "application/octet-stream"


def _release(resp: httpx.Response) -> None:
    """Close ``resp`` and break httpx's response <-> stream reference cycle, so the response,
    and the request body it holds (a whole chunk), are freed now rather than at the next
    cyclic garbage collection (which would let dozens of chunks pile up)."""
    resp.close()
    resp.stream = httpx.ByteStream(b"")


def _location(transport: Transport, resp: httpx.Response, context: str) -> str:
    location = resp.headers.get("Location")
    _release(resp)
    if not location:
        raise RegistryError(
            f"{context}: upload response without a Location", status=resp.status_code
        )
    return str(resp.request.url.join(location))


def start_upload(
    transport: Transport, repo: str, context: str, *, mount: tuple[Descriptor, str] | None = None
) -> str | None:
    """Open an upload session and return its URL; None if a mount completed the upload."""
    scopes = [Scope.repository(repo, "pull", "push")]
    path = f"/v2/{repo}/blobs/uploads/"
    if mount is not None:
        desc, source = mount
        scopes.append(Scope.repository(source, "pull"))
        path += "?" + str(httpx.QueryParams({"mount": str(desc.digest), "from": source}))
    resp = transport.request("POST", path, scopes=scopes, context=context, content=b"")
    if resp.status_code == 201 and mount is not None:
        resp.close()
        return None
    if resp.status_code != 202:
        raise transport.error(resp, context)
    return _location(transport, resp, context)


def cancel_upload(transport: Transport, repo: str, location: str, context: str) -> None:
    """Best-effort ``DELETE`` of an upload session (errors are logged, not raised)."""
    with contextlib.suppress(RegistryError):
        scopes = [Scope.repository(repo, "pull", "push")]
        resp = transport.request("DELETE", location, scopes=scopes, context=context, retry=False)
        resp.close()
        log.debug("cancelled upload session: %d", resp.status_code)


def _chunk_size(transport: Transport, wanted: int, min_length: str | None) -> int:
    size = max(wanted, int(min_length) if min_length and min_length.isdigit() else 0)
    return max(1, min(size, MAX_CHUNK))


def _session_offset(
    transport: Transport, repo: str, location: str, context: str
) -> tuple[int, str]:
    """How many bytes the registry holds for the session, and the session's fresh URL."""
    scopes = [Scope.repository(repo, "pull", "push")]
    resp = transport.request("GET", location, scopes=scopes, context=context)
    if resp.status_code != 204:
        raise transport.error(resp, context)
    match = _RANGE.fullmatch(resp.headers.get("Range", "").strip())
    fresh = (
        str(resp.request.url.join(resp.headers["Location"]))
        if "Location" in resp.headers
        else location
    )
    resp.close()
    # "0-0" is ambiguous (docker-registry sends it for an empty session too): read it as 0.
    end = int(match.group(1)) if match else 0
    return (end + 1 if end > 0 else 0), fresh


def _patch(
    transport: Transport, repo: str, location: str, data: bytes, offset: int, context: str
) -> str:
    """Send one chunk starting at ``offset``; resume from the registry's offset on failure."""
    scopes = [Scope.repository(repo, "pull", "push")]
    sent_from = offset
    for attempt in range(transport.options.retry.attempts):
        part = data[sent_from - offset :]
        headers = {"Content-Type": _OCTETS}
        headers["Content-Range"] = f"{sent_from}-{sent_from + len(part) - 1}"
        try:
            resp = transport.request(
                "PATCH", location, scopes=scopes, context=context, headers=headers,
                content=part, retry=False,
            )  # fmt: skip
            if resp.status_code == 202:
                return _location(transport, resp, context)
            error = transport.error(resp, context)
        except RegistryError as exc:
            error = exc
        if not error.retryable or attempt + 1 == transport.options.retry.attempts:
            raise error
        transport.sleep(transport.options.retry.delay(attempt + 1))
        sent_from, location = _session_offset(transport, repo, location, context)
        if not offset <= sent_from <= offset + len(data):
            raise error
        if sent_from == offset + len(data):
            return location
    raise AssertionError("unreachable")


def _read_full(reader: VerifyingReader, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end of the stream."""
    parts: list[bytes] = []
    while n > 0:
        data = reader.read(n)
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def upload(
    transport: Transport,
    repo: str,
    location: str,
    stream: Readable,
    desc: Descriptor,
    context: str,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    min_chunk: str | None = None,
) -> None:
    """Upload ``stream`` (which must match ``desc``) into the session at ``location``."""
    reader = VerifyingReader(stream, desc.digest, desc.size, what=context)
    chunk = _chunk_size(transport, chunk_size, min_chunk)
    scopes = [Scope.repository(repo, "pull", "push")]
    try:
        data = _read_full(reader, chunk)
        body = b""
        if len(data) == desc.size:
            reader.drain()  # verifies, and fails if the stream is longer than declared
            body = data
        else:
            offset = 0
            while data:
                location = _patch(transport, repo, location, data, offset, context)
                offset += len(data)
                data = _read_full(reader, chunk)
    except BaseException:
        cancel_upload(transport, repo, location, context)
        raise
    url = httpx.URL(location).copy_merge_params({"digest": str(desc.digest)})
    headers = {"Content-Type": _OCTETS}
    resp = transport.request(
        "PUT", str(url), scopes=scopes, context=context, headers=headers, content=body
    )
    if resp.status_code != 201:
        raise transport.error(resp, context)
    _release(resp)
