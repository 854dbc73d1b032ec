"""Layer compression: gzip (via isal, ~4x faster than zlib) and zstd, sniffed by magic bytes.

Invariants:
- :func:`open_decompressed` streams; memory use is bounded by the codec's window, never by the
  layer size. It raises :class:`~lamina.errors.UnsafeArchive` for truncated/corrupt streams and
  for decompression bombs (see :data:`BOMB_RATIO`).
- :func:`open_compressor` writes gzip headers without a file name and with mtime 0, so the
  same tar always gives the same compressed bytes (reproducible digests).
"""

from __future__ import annotations

import io
import zlib
from typing import IO, Any, BinaryIO, cast

from lamina.errors import UnsafeArchive

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
#: Compressed layers whose output exceeds this many times their input are refused once the
#: output passes :data:`BOMB_FLOOR`. Deflate cannot exceed ~1032:1, so only crafted zstd
#: frames (or zero-filled multi-GiB files, which no real image carries) hit it.
BOMB_RATIO = 1100
BOMB_FLOOR = 1 << 30
GZIP_LEVEL = 1


def sniff(head: bytes, *, extended: bool = False) -> str:
    """``"gzip"``, ``"zstd"`` or ``"none"`` from a stream's first bytes; with ``extended``
    also ``"bzip2"`` and ``"xz"`` (what ADD accepts; layers are only gzip/zstd/plain)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if extended and head.startswith(BZIP2_MAGIC):
        return "bzip2"
    if extended and head.startswith(XZ_MAGIC):
        return "xz"
    return "none"


class _Counting(io.RawIOBase):
    """Counts bytes read from the compressed stream (for the bomb ratio)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.count += n
        return n


class _Decompressed(io.RawIOBase):
    """A decompressing reader with corruption and bomb checks."""

    def __init__(
        self, inner: Any, counter: _Counting, what: str, errors: tuple[type[BaseException], ...]
    ) -> None:
        self._inner = inner
        self._errors = errors
        self._counter = counter
        self._what = what
        self.out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            data = self._inner.read(len(buf))
        except self._errors as exc:
            raise UnsafeArchive(
                f"{self._what}: corrupt or truncated compressed data: {exc}"
            ) from None
        n = len(data)
        buf[:n] = data
        self.out += n
        if self.out > BOMB_FLOOR and self.out > BOMB_RATIO * max(self._counter.count, 1):
            raise UnsafeArchive(
                f"{self._what}: decompression ratio above {BOMB_RATIO}:1 (a compression bomb?)"
            )
        return n


def open_decompressed(
    raw: Any, what: str = "layer", *, extended: bool = False
) -> tuple[BinaryIO, str]:
    """Wrap ``raw`` (a readable binary stream) in a decompressor chosen by sniffing.

    Returns the uncompressed stream and the detected compression (see :func:`sniff` for
    ``extended``). The caller closes ``raw``.
    """
    buffered = io.BufferedReader(_Counting(raw), buffer_size=1 << 20)
    kind = sniff(buffered.peek(6)[:6], extended=extended)
    counter = buffered.raw
    assert isinstance(counter, _Counting)
    inner: Any
    errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)
    if kind == "gzip":
        from isal import igzip

        inner = igzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[no-untyped-call]
    elif kind == "zstd":
        import zstandard

        inner = _ZstdReader(buffered)
        errors = (*errors, zstandard.ZstdError)
    elif kind == "bzip2":
        import bz2

        inner = bz2.BZ2File(buffered)
    elif kind == "xz":
        import lzma

        inner = lzma.LZMAFile(buffered)  # noqa: SIM115 (lives as long as the stream)
        errors = (*errors, lzma.LZMAError)
    else:
        return cast(BinaryIO, buffered), "none"
    reader = _Decompressed(inner, counter, what, errors)
    return cast(BinaryIO, io.BufferedReader(reader, 1 << 20)), kind


class _ZstdReader:
    """Multi-frame zstd decoding that notices a truncated final frame.

    (zstandard's ``stream_reader`` returns a clean EOF for a frame cut short.) Input is fed
    in small pieces because ``decompress`` has no output limit: an RLE block of 4 bytes can
    expand to 128 KiB, so 1 KiB of input bounds one call's output to about 32 MiB.
    """

    def __init__(self, raw: Any) -> None:
        import zstandard

        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._d = self._new()
        self._fed = False
        self._pending = b""

    def read(self, n: int) -> bytes:
        while not self._pending:
            chunk = self._raw.read(1024)
            if not chunk:
                if self._fed and not self._d.eof:
                    raise EOFError("zstd stream ends inside a frame")
                return b""
            while chunk:
                if self._d.eof:
                    self._d = self._new()
                self._fed = True
                self._pending += self._d.decompress(chunk)
                chunk = self._d.unused_data if self._d.eof else b""
        out, self._pending = self._pending[:n], self._pending[n:]
        return out


class _GzipWriter:
    def __init__(self, out: IO[bytes], level: int) -> None:
        from isal import isal_zlib

        self._out = out
        self._c = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        self._crc = 0
        self._size = 0
        self._crc32 = isal_zlib.crc32
        # RFC 1952 header: no FNAME, MTIME 0, XFL 0, OS 255 (unknown): stable across hosts.
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def write(self, data: bytes | memoryview) -> int:
        self._crc = self._crc32(data, self._crc)
        self._size += len(data)
        self._out.write(self._c.compress(data))
        return len(data)

    def close(self) -> None:
        self._out.write(self._c.flush())
        self._out.write(self._crc.to_bytes(4, "little"))
        self._out.write((self._size & 0xFFFFFFFF).to_bytes(4, "little"))


class _ZstdWriter:
    def __init__(self, out: IO[bytes], level: int) -> None:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._w = cctx.stream_writer(out, closefd=False)

    def write(self, data: bytes | memoryview) -> int:
        return int(self._w.write(data))

    def close(self) -> None:
        self._w.close()  # type: ignore[no-untyped-call]


class _PlainWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, data: bytes | memoryview) -> int:
        self._out.write(data)
        return len(data)

    def close(self) -> None:
        pass


def open_compressor(out: IO[bytes], kind: str, level: int | None = None) -> Any:
    """A writer (``write``/``close``) compressing into ``out``; close() flushes, not closes out."""
    if kind == "gzip":
        return _GzipWriter(out, GZIP_LEVEL if level is None else level)
    if kind == "zstd":
        return _ZstdWriter(out, 3 if level is None else level)
    if kind == "none":
        return _PlainWriter(out)
    raise ValueError(f"unknown compression {kind!r}")
