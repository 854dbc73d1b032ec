"""A blob upload whose digest is known only at the end: bytes are sent while they are made.

Pushing a layer that must first be compressed would otherwise take two passes (compress into
the store, then upload). A :class:`StreamUpload` is written to like a file while the
compressor runs; full chunks are ``PATCH``\\ ed by a background thread (so compression and
the network overlap), and :meth:`StreamUpload.commit` sends the rest with the final
``PUT ?digest=`` once the caller knows the digest. A blob that fits in one chunk goes as one
monolithic ``PUT``.

Invariants: at most ``depth + 2`` chunks of about ``chunk_size`` are held in memory (the one
being filled, ``depth`` queued, the one being sent); each chunk is retried and resumed as in
:func:`lamina.registry.upload._patch`; the registry checks the digest on ``PUT`` (a stream
that does not match the digest given is refused, never stored); on any failure, or on
:meth:`StreamUpload.cancel`, the session is deleted and the thread stopped. Not thread-safe:
one writer.
"""

from __future__ import annotations

import queue
import threading

import httpx

from lamina.errors import RegistryError
from lamina.oci.digest import Digest
from lamina.registry import upload as _upload
from lamina.registry.auth import Scope
from lamina.registry.transport import Transport

#: chunk size of streamed uploads: up to ~4 of them are in memory (see the invariants)
STREAM_CHUNK = 4 << 20


class StreamUpload:
    """An open upload session in ``repo`` (see the module docstring); ``write`` then
    ``commit(digest, size)``, or ``cancel()``."""

    def __init__(
        self,
        transport: Transport,
        repo: str,
        location: str,
        context: str,
        *,
        chunk_size: int = STREAM_CHUNK,
        depth: int = 1,
    ) -> None:
        self.transport = transport
        self.repo = repo
        self.location = location
        self.context = context
        self.chunk_size = max(1, min(chunk_size, _upload.MAX_CHUNK))
        self._pieces: list[bytes] = []
        self._held = 0
        self._sent = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, data: bytes | memoryview) -> int:
        """Add bytes; full chunks are handed to the sender (blocks while it is behind)."""
        self._check()
        self._pieces.append(bytes(data))
        self._held += len(data)
        if self._held >= self.chunk_size:  # chunks need not be equal: send what is held
            chunk = b"".join(self._pieces)
            self._pieces, self._held = [], 0
            self._send(chunk)
        return len(data)

    def _send(self, chunk: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stream-upload", daemon=True)
            self._thread.start()
        while True:
            self._check()
            try:
                self._queue.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while (chunk := self._queue.get()) is not None:
                if self._closed:  # cancelled: drop what is queued
                    continue
                self.location = _upload._patch(
                    self.transport, self.repo, self.location, chunk, self._sent, self.context
                )
                self._sent += len(chunk)
        except BaseException as exc:
            self._error = exc
            while self._queue.get() is not None:  # let the writer notice, then stop
                pass

    def _check(self) -> None:
        if self._closed:
            raise ValueError("upload already committed or cancelled")
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        """Wait until the sender has sent everything queued (or failed)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def commit(self, digest: Digest, size: int) -> None:
        """Send the rest and finish the upload as ``digest``; RegistryError if refused."""
        try:
            self._check()
            self._drain()
            if self._sent + self._held != size:
                raise RegistryError(f"{self.context}: wrote {self._sent + self._held} bytes")
            body = b"".join(self._pieces)
            self._pieces, self._held = [], 0
            if body and self._sent:
                self.location = _upload._patch(
                    self.transport, self.repo, self.location, body, self._sent, self.context
                )
                body = b""
            url = httpx.URL(self.location).copy_merge_params({"digest": str(digest)})
            scopes = [Scope.repository(self.repo, "pull", "push")]
            headers = {"Content-Type": "application/octet-stream"}
            resp = self.transport.request(
                "PUT", str(url), scopes=scopes, context=self.context, headers=headers, content=body
            )
            if resp.status_code != 201:
                raise self.transport.error(resp, self.context)
            _upload._release(resp)
        except BaseException:
            self.cancel()
            raise
        self._closed = True

    def cancel(self) -> None:
        """Stop sending and delete the session (best effort; idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        _upload.cancel_upload(self.transport, self.repo, self.location, self.context)


__all__ = ["STREAM_CHUNK", "StreamUpload"]
