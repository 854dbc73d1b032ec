"""A fast path for the common tar header: what ``TarInfo.tobuf(PAX_FORMAT)`` writes, sooner.

Layer tars are written entry by entry; for 20,000 small files ``tarfile``'s generic header
code (a dict per entry, pax checks, ``struct`` packing, a checksum via ``unpack_from``) costs
more than reading and hashing the files. :func:`ustar_header` builds the same 512 bytes
directly for the entries that need no pax record: ASCII name and link target of at most 100
bytes, uid/gid below 8**7, size and mtime below 8**11 and not negative, empty uname/gname,
a regular file, directory, symlink or hard link. Anything else returns None and the caller
uses ``tarfile``.

Invariant: for every entry it accepts, the result is byte-identical to
``info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")`` of this interpreter's
``tarfile`` (layer digests must not depend on which path wrote them). :data:`ENABLED` is
that check, run once at import on sample entries; if this interpreter's ``tarfile`` writes
something else, the fast path is off and every header goes through ``tarfile``.
"""

from __future__ import annotations

import tarfile

__all__ = ["ENABLED", "ustar_header"]

_TYPES = frozenset((tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE))
_MAX_ID = 8**7
_MAX_NUM = 8**11
# uname, gname (32 + 32), devmajor, devminor (8 + 8, empty for non-devices), prefix (155)
_TAIL = b"ustar\x0000" + bytes(32 + 32 + 8 + 8 + 155 + 12)


def _build(info: tarfile.TarInfo) -> bytes | None:
    if info.type not in _TYPES or info.uname or info.gname or info.pax_headers:
        return None
    name = info.name
    if info.type == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    try:
        bname = name.encode("ascii")
        blink = info.linkname.encode("ascii")
    except UnicodeEncodeError:
        return None
    uid, gid, size, mtime = info.uid, info.gid, info.size, info.mtime
    if (
        len(bname) > 100
        or len(blink) > 100
        or type(mtime) is not int
        or not (0 <= uid < _MAX_ID and 0 <= gid < _MAX_ID)
        or not (0 <= size < _MAX_NUM and 0 <= mtime < _MAX_NUM)
    ):
        return None
    head = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0        %s%s" % (
        bname.ljust(100, b"\0"),
        info.mode & 0o7777,
        uid,
        gid,
        size,
        mtime,
        info.type,
        blink.ljust(100, b"\0"),
    )
    block = head + _TAIL
    # the checksum field holds 8 spaces while summing, as tarfile's calc_chksums assumes
    return b"%s%06o\0%s" % (block[:148], sum(block), block[155:])


def _self_check() -> bool:
    samples = []
    for kind, name, link in (
        (tarfile.REGTYPE, "etc/passwd", ""),
        (tarfile.DIRTYPE, "usr/share", ""),
        (tarfile.SYMTYPE, "bin/sh", "busybox"),
        (tarfile.LNKTYPE, "bin/ls", "bin/busybox"),
    ):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        info.mode, info.uid, info.gid = 0o4755, 1000, 65534
        info.size = 1234 if kind == tarfile.REGTYPE else 0
        info.mtime, info.uname, info.gname = 1_700_000_000, "", ""
        samples.append(info)
    return all(
        _build(i) == i.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") for i in samples
    )


ENABLED = _self_check()


def ustar_header(info: tarfile.TarInfo) -> bytes | None:
    """The PAX-format header of ``info`` when it needs no pax record (see the module doc),
    else None. ``info.uname``/``gname`` must be empty and ``pax_headers`` unset to qualify."""
    return _build(info) if ENABLED else None
