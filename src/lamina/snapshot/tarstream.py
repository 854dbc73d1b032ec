"""A strict, streaming tar reader for untrusted layers (no extraction; headers and data only).

Header blocks are decoded with :meth:`tarfile.TarInfo.frombuf` (ustar, GNU and base-256
numbers, checksums); PAX extended headers (``x``/``g``, incl. ``SCHILY.xattr.*``) and GNU long
names (``L``/``K``) are handled here, so that, unlike :mod:`tarfile`, the reader can tell the end
of an archive from a corrupt header in the middle of one.

Invariants:
- Member names are cleaned relative to the root: ``./`` and empty components are dropped, a
  leading ``/`` is ignored (Docker takes absolute names relative to the root), and a ``..`` that
  would climb above the root raises :class:`~lamina.errors.UnsafeArchive`. Hard link targets are
  cleaned the same way; symlink targets are kept verbatim (they are data, never followed here).
- A bad checksum, a truncated header or data, an unknown member type, sparse files, oversized
  extended headers, or anything but zero bytes after the end-of-archive marker raise
  ``UnsafeArchive``. The stream is read to EOF before iteration ends.
- File data is never held in memory: it flows through one reusable 1 MiB buffer.
  :attr:`TarReader.consumed` counts every byte read from the stream.
- The caller owns (and closes) ``stream``.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from lamina._internal.rootpath import split_path
from lamina.errors import UnsafeArchive

BLOCK = 512
BUFSIZE = 1 << 20
#: Largest PAX or GNU long-name header accepted (xattrs and ACLs are far smaller).
MAX_EXTENDED = 1 << 20
#: Deepest member path accepted, in components.
MAX_DEPTH = 512

REG, AREG, CONT = b"0", b"\0", b"7"
LINK, SYMLINK, CHR, BLK, DIR, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
FILE_TYPES = frozenset({REG, AREG, CONT})
_KNOWN = frozenset({REG, AREG, CONT, LINK, SYMLINK, CHR, BLK, DIR, FIFO})


@dataclass(slots=True)
class Member:
    """One tar member, names already cleaned (``path`` is ``""`` for the root directory)."""

    path: str
    type: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        """A regular file (types ``0``, ``\\0`` and contiguous ``7``)."""
        return self.type in FILE_TYPES


def clean_name(name: str, what: str) -> str:
    """Clean a member name as described in the module docstring; raise UnsafeArchive.

    Names deeper than :data:`MAX_DEPTH` components are refused too (no real image comes close;
    Docker cannot extract them either, as they exceed ``PATH_MAX``).
    """
    try:
        parts = split_path(name, strict=True)
    except ValueError as exc:
        raise UnsafeArchive(f"{what}: unsafe member name {name[:200]!r}: {exc}") from None
    if len(parts) > MAX_DEPTH:
        raise UnsafeArchive(f"{what}: member name nested {len(parts)} deep (limit {MAX_DEPTH})")
    return "/".join(parts)


def _parse_pax(data: bytes, what: str) -> dict[str, bytes]:
    """Parse ``"<len> <key>=<value>\\n"`` records; values stay bytes."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            break
        sp = data.find(b" ", pos)
        if sp < 0:
            raise UnsafeArchive(f"{what}: corrupt pax header")
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise UnsafeArchive(f"{what}: corrupt pax header") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise UnsafeArchive(f"{what}: corrupt pax header")
        key, eq, value = data[sp + 1 : end - 1].partition(b"=")
        if not eq:
            raise UnsafeArchive(f"{what}: corrupt pax record")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return out


def _pax_time_ns(value: bytes, what: str) -> int:
    """A PAX time (``"-?\\d+(\\.\\d+)?"``) as integer nanoseconds, without float rounding."""
    text = value.decode("ascii", "replace")
    sign = -1 if text.startswith("-") else 1
    secs, _dot, frac = text.lstrip("-").partition(".")
    if not secs.isdigit() or (frac and not frac.isdigit()):
        raise UnsafeArchive(f"{what}: invalid pax time {text[:40]!r}")
    return sign * (int(secs) * 10**9 + int((frac + "000000000")[:9]))


class TarReader:
    """Iterate members of an uncompressed tar ``stream``; see the module invariants.

    Use ``for m in reader:``; for a regular file, call :meth:`copy_data` (or nothing: unread
    data is skipped before the next header is read).
    """

    def __init__(self, stream: BinaryIO, what: str = "layer") -> None:
        self._stream = stream
        self._what = what
        self._buf = bytearray(BUFSIZE)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = 0
        self._remaining = 0  # data bytes (incl. padding) of the current member not yet read
        self._pad = 0
        self.consumed = 0
        self._globals: dict[str, bytes] = {}

    # -- low level -------------------------------------------------------------------------
    def _fill(self) -> int:
        """Refill the buffer (only when empty); return bytes available."""
        if self._pos < self._end:
            return self._end - self._pos
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            n = readinto(self._view) or 0
        else:
            data = self._stream.read(BUFSIZE)
            n = len(data)
            self._buf[:n] = data
        self._pos, self._end = 0, n
        self.consumed += n
        return n

    def _take(self, n: int) -> memoryview:
        """Up to ``n`` bytes from the buffer (fewer at a buffer edge; empty only at EOF)."""
        if self._fill() == 0:
            return self._view[0:0]
        k = min(n, self._end - self._pos)
        out = self._view[self._pos : self._pos + k]
        self._pos += k
        return out

    def _read_exact(self, n: int) -> bytes:
        parts = []
        left = n
        while left:
            chunk = self._take(left)
            if not chunk:
                raise UnsafeArchive(f"{self._what}: truncated tar (unexpected end of stream)")
            parts.append(bytes(chunk))
            left -= len(chunk)
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n:
            chunk = self._take(n)
            if not chunk:
                raise UnsafeArchive(f"{self._what}: truncated tar (unexpected end of stream)")
            n -= len(chunk)

    def copy_data(self, sink: Callable[[memoryview], object]) -> int:
        """Pass the current member's data to ``sink`` in chunks (views valid only in the call)."""
        total = 0
        while self._remaining:
            chunk = self._take(self._remaining)
            if not chunk:
                raise UnsafeArchive(f"{self._what}: truncated tar (file data cut short)")
            self._remaining -= len(chunk)
            total += len(chunk)
            sink(chunk)
        self._skip(self._pad)
        self._pad = 0
        return total

    def copy_to_fd(self, fd: int) -> int:
        """Write the current member's data to ``fd`` (handles short writes)."""

        def write_all(chunk: memoryview) -> None:
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]

        return self.copy_data(write_all)

    # -- headers ---------------------------------------------------------------------------
    def _finish_archive(self) -> None:
        """After the first zero block: only zero bytes may follow, up to EOF."""
        while True:
            chunk = self._take(BUFSIZE)
            if not chunk:
                return
            if any(chunk):
                raise UnsafeArchive(
                    f"{self._what}: corrupt tar: data after the end-of-archive marker "
                    f"at offset {self.consumed - (self._end - self._pos) - len(chunk)}",
                    hint="the layer may be corrupt, or a header in the middle is damaged",
                )

    def _header(self) -> tarfile.TarInfo | None:
        offset = self.consumed - (self._end - self._pos)
        first = self._take(BLOCK)
        if not first:
            raise UnsafeArchive(f"{self._what}: truncated tar (no end-of-archive marker)")
        block = bytes(first) + (self._read_exact(BLOCK - len(first)) if len(first) < BLOCK else b"")
        if not any(block):
            self._finish_archive()
            return None
        try:
            return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise UnsafeArchive(
                f"{self._what}: corrupt tar header at offset {offset}: {exc}"
            ) from None

    def _extended(self, info: tarfile.TarInfo) -> bytes:
        if not 0 <= info.size <= MAX_EXTENDED:
            raise UnsafeArchive(
                f"{self._what}: extended header of {info.size} bytes (limit {MAX_EXTENDED})"
            )
        data = self._read_exact(info.size)
        self._skip(-info.size % BLOCK)
        return data

    def __iter__(self) -> Iterator[Member]:
        pax: dict[str, bytes] = {}
        longname: str | None = None
        longlink: str | None = None
        while True:
            if self._remaining or self._pad:
                self._skip(self._remaining + self._pad)
                self._remaining = self._pad = 0
            info = self._header()
            if info is None:
                return
            kind = info.type
            if kind in (b"x", b"X"):
                pax.update(_parse_pax(self._extended(info), self._what))
                continue
            if kind == b"g":
                self._globals.update(_parse_pax(self._extended(info), self._what))
                continue
            if kind == b"L":
                longname = (
                    self._extended(info).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                )
                continue
            if kind == b"K":
                longlink = (
                    self._extended(info).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                )
                continue
            member = self._member(info, {**self._globals, **pax}, longname, longlink)
            pax, longname, longlink = {}, None, None
            # Header-only types carry no data whatever their size field says (as Go's reader).
            size = member.size if member.is_file else 0
            self._remaining, self._pad = size, -size % BLOCK
            yield member

    def _member(
        self,
        info: tarfile.TarInfo,
        pax: dict[str, bytes],
        longname: str | None,
        longlink: str | None,
    ) -> Member:
        what = self._what
        if any(k.startswith("GNU.sparse.") for k in pax) or info.type == b"S":
            raise UnsafeArchive(f"{what}: sparse tar members are not supported")
        if info.type not in _KNOWN:
            raise UnsafeArchive(f"{what}: unsupported tar member type {info.type!r}")

        def text(key: str, default: str) -> str:
            return pax[key].decode("utf-8", "surrogateescape") if key in pax else default

        def number(key: str, default: int) -> int:
            try:
                value = int(pax[key]) if key in pax else default
            except ValueError:
                raise UnsafeArchive(f"{what}: invalid pax {key} field") from None
            if value < 0:
                raise UnsafeArchive(f"{what}: negative {key} in tar header")
            return value

        name = text("path", longname if longname is not None else info.name)
        link = text("linkpath", longlink if longlink is not None else info.linkname)
        mtime_ns = _pax_time_ns(pax["mtime"], what) if "mtime" in pax else int(info.mtime) * 10**9
        xattrs = {
            k[len("SCHILY.xattr.") :]: v for k, v in pax.items() if k.startswith("SCHILY.xattr.")
        }
        path = clean_name(name, what)
        if info.type == LINK:
            link = clean_name(link, what)
            if not link:
                raise UnsafeArchive(f"{what}: hard link {name!r} to the root directory")
        return Member(
            path=path,
            type=info.type,
            size=number("size", info.size),
            mode=info.mode & 0o7777,
            uid=number("uid", info.uid),
            gid=number("gid", info.gid),
            mtime_ns=mtime_ns,
            linkname=link,
            devmajor=info.devmajor,
            devminor=info.devminor,
            xattrs=xattrs,
        )
