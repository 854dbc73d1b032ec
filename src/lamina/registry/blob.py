"""Streaming blob downloads: verified while read, resumed with ``Range`` after a dropped link.

:class:`BlobStream` reads a blob through an ``opener(offset)`` that returns a streamed response
starting at ``offset`` (a ``206`` whose ``Content-Range`` starts there, or a ``200`` whose first
``offset`` bytes are skipped). Invariants: bytes are verified by digest and size through
:class:`~lamina._internal.verify.VerifyingReader` — more than ``size`` bytes fail at once, a
wrong digest or short blob fails at EOF with DigestMismatch; a dropped connection is resumed at
most ``resumes`` times; memory use is one network chunk; ``close()`` releases the connection
and is idempotent. The caller (who called ``open_blob``) closes the stream.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator

import httpx

from lamina._internal.verify import VerifyingReader
from lamina.errors import RegistryError
from lamina.oci.descriptor import Descriptor
from lamina.registry.redaction import redact_url
from lamina.registry.response import connection_error

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")

Opener = Callable[[int], httpx.Response]


def range_start(resp: httpx.Response, offset: int, context: str) -> int:
    """How many leading bytes of ``resp`` to skip so the stream starts at ``offset``."""
    if resp.status_code == 206:
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            resp.close()
            raise RegistryError(
                f"{context}: server answered range request at {offset} with a different range",
                status=206,
                url=redact_url(str(resp.request.url)),
            )
        return 0
    return offset


class _ResumingSource:
    """Raw blob bytes from ``opener``, reopened at the current offset when the link drops.

    A body that ends cleanly before ``size`` bytes also counts as a drop.
    """

    def __init__(self, opener: Opener, size: int, context: str, resumes: int) -> None:
        self._opener = opener
        self._size = size
        self._context = context
        self._resumes_left = resumes
        self.offset = 0
        self._resp: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._pending = b""
        self._skip = 0
        self._closed = False
        self._open()

    def _open(self) -> None:
        resp = self._opener(self.offset)
        self._skip = range_start(resp, self.offset, self._context)
        self._resp = resp
        self._chunks = resp.iter_raw()

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._resp = None
        self._chunks = None

    def close(self) -> None:
        """Release the connection; later reads return EOF."""
        self._drop()
        self._closed = True

    def _next_chunk(self) -> bytes:
        while not self._closed:
            if self._chunks is None:
                self._open()
            assert self._chunks is not None and self._resp is not None
            url = str(self._resp.request.url)
            try:
                chunk = next(self._chunks, b"")
            except httpx.TransportError as exc:
                self._drop()
                if self._resumes_left <= 0:
                    raise connection_error(exc, self._context, url) from None
                self._resumes_left -= 1
                continue
            if not chunk:
                if self.offset >= self._size or self._resumes_left <= 0:
                    return b""
                self._drop()  # ended early without an error: resume like a drop
                self._resumes_left -= 1
                continue
            cut = min(self._skip, len(chunk))
            self._skip -= cut
            if chunk[cut:]:
                return chunk[cut:]
        return b""

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes (``b""`` at the end)."""
        if not self._pending:
            self._pending = self._next_chunk()
        if n < 0 or n >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:n], self._pending[n:]
        self.offset += len(data)
        return data


class BlobStream(io.RawIOBase):
    """A verified, resumable read-only stream of one blob (see the module docstring)."""

    def __init__(self, opener: Opener, desc: Descriptor, context: str, *, resumes: int) -> None:
        super().__init__()
        self._source = _ResumingSource(opener, desc.size, context, resumes)
        self._verifier = VerifyingReader(self._source, desc.digest, desc.size, what=context)

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buf`` with verified bytes; 0 at (verified) EOF; DigestMismatch if corrupt."""
        try:
            data = self._verifier.read(len(buf))
        except BaseException:
            self.close()
            raise
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Release the connection (idempotent)."""
        if not self.closed:
            self._source.close()
        super().close()
