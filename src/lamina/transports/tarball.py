"""An append-only, deterministic tar written in one pass (the archive destinations' output).

Each member's data goes from its source straight into the output file, once. (Staging blobs in
a directory and then copying the directory into a tar wrote every byte twice.)

Invariants:

- **Deterministic**: headers carry only the name, size, type and mode (0644 files, 0755
  directories); uid/gid 0, no user names, mtime 0. The same members in the same order give
  the same bytes.
- **Rolled back on failure**: when a member's stream fails (a digest mismatch found at its
  end, an I/O error), the file is truncated back to where that member's header began, so the
  tar never holds a partial or unverified member and appending can go on.
- **Sizes found while writing**: a member whose size is not known up front (a layer being
  decompressed) gets a placeholder header, rewritten in place once its data is complete. A
  header is always one 512-byte block: sizes up to 8 GiB - 1 use the ustar octal field
  (as ``tarfile``'s PAX writer does for such members), larger ones GNU's base-256 field,
  which GNU tar, Go's archive/tar (Docker, containers/image) and Python's tarfile all read.
- Not thread-safe: the caller serialises appends. The caller owns (and closes) the file,
  which must be a seekable regular file opened for reading and writing.
"""

from __future__ import annotations

import os
import tarfile
from typing import BinaryIO

from lamina._internal.verify import Readable

BLOCK = 512
#: tar output is padded to a multiple of this (tar's default blocking factor of 20).
RECORD = 20 * BLOCK
USTAR_MAX_SIZE = 8**11 - 1
CHUNK = 1 << 20


def member_header(name: str, size: int, *, directory: bool = False) -> bytes:
    """The single 512-byte header block of member ``name`` (see the module docstring)."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if size <= USTAR_MAX_SIZE:
        block = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    else:
        block = info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")
    if len(block) != BLOCK:  # a name that needs an extension header: never a layout name
        raise ValueError(f"tar member name {name[:120]!r} does not fit one header block")
    return block


class TarAppender:
    """Appends members to ``out`` from its current position; see the module docstring."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._fd = out.fileno()
        self.offset = out.tell()

    def add_dir(self, name: str) -> None:
        """A directory member ``name``."""
        self._write(member_header(name, 0, directory=True))

    def add_bytes(self, name: str, data: bytes) -> int:
        """A regular member holding ``data``; returns the offset of its data."""
        self._write(member_header(name, len(data)))
        start = self.offset
        self._write(data)
        self._pad()
        return start

    def add_stream(self, name: str, stream: Readable, size: int | None) -> tuple[int, int]:
        """A regular member with ``stream``'s bytes, read to EOF; returns (data offset, size).

        ``size`` None: found while copying (the header is rewritten). Any exception rolls the
        member back (the file is truncated to its header) and is re-raised.
        """
        start = self.offset
        try:
            self._write(member_header(name, size or 0))
            data_start = self.offset
            while chunk := stream.read(CHUNK):  # the empty read at EOF lets verifiers check
                self._write(chunk)
            written = self.offset - data_start
            if size is not None and written != size:
                raise OSError(5, f"{name}: wrote {written} bytes, expected {size}")
            if size is None:
                self._out.flush()
                os.pwrite(self._fd, member_header(name, written), start)
            self._pad()
        except BaseException:
            self.rollback(start)
            raise
        return data_start, written

    def rollback(self, offset: int) -> None:
        """Drop everything from ``offset`` on (a member that failed)."""
        self._out.flush()
        os.ftruncate(self._fd, offset)
        self._out.seek(offset)
        self.offset = offset

    def finish(self) -> None:
        """The end-of-archive marker (two zero blocks), padded to a whole record."""
        end = self.offset + 2 * BLOCK
        self._write(bytes(end - self.offset + (-end % RECORD)))
        self._out.flush()

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes already written at ``offset`` (to re-read a small member)."""
        self._out.flush()
        return os.pread(self._fd, size, offset)

    def _pad(self) -> None:
        if self.offset % BLOCK:
            self._write(bytes(-self.offset % BLOCK))

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.offset += len(data)
