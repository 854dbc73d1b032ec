"""``lamina build -``: telling a tar context on stdin from a bare Dockerfile, as the docker CLI
does (``DetectArchiveReader``): stdin is an archive when it starts with a compression magic
(gzip, bzip2, xz, zstd) or with a valid 512-byte tar header block; otherwise it
is the Dockerfile and the context is empty. The sniffed bytes are handed on (:class:`Prefixed`),
so nothing is read twice and stdin need not be seekable.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO


def read_head(stream: BinaryIO, size: int) -> bytes:
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


def is_archive_head(head: bytes) -> bool:
    """The docker CLI's test for ``build -``: compressed (any codec ADD knows), or a first
    512-byte block that is a tar header (tarfile's header parser checks its checksum)."""
    import tarfile

    from lamina._internal.compression import sniff

    if sniff(head, extended=True) != "none":
        return True
    try:
        tarfile.TarInfo.frombuf(head[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class Prefixed(io.RawIOBase):
    """``head`` then the rest of ``stream``: the bytes sniffed are not lost."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buf))
        buf[: len(data)] = data
        return len(data)
