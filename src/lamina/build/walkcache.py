"""Remembered walks of COPY/ADD sources, so an unchanged source costs one stat walk.

:func:`lamina.build.sourcekey.hash_sources` feeds one sha256 with a header line per source
and one key line per entry below it. A :class:`WalkStore` remembers, per *walk identity*
(the sources' roots, paths, matched names, kept ownership, ``.dockerignore`` and
``--exclude`` patterns: everything that decides which entries a walk yields and how their
lines are written), the last walk's entries: each one's stat signature
``(source index, path, dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid)`` (a source's
header is ``(index, None)``) and its key line. When a new walk yields exactly the same
signatures, in the same order, the stored lines *are* the lines the walk would produce (a
line is a function of the path, the signature and the content digest, which the stat cache
ties to the same signature), so the key is one hash over the stored bytes: no per-entry
formatting, no digest lookups, no sqlite. The comparison is one ``memcmp`` of the
signatures' ``marshal`` (version 2: no back-references, so equal lists give equal bytes; if
they ever did not, a reuse would be missed, never a change). When some differ, only the
entries whose signatures changed are looked at again. :func:`plain_signatures` is the walk
of a source without ignore or ``--exclude`` patterns, written for speed (one tuple per entry,
no generator chain); it yields exactly :func:`lamina.build.copytree.iter_source`'s order.

Racy entries (git's "racy clean" problem): timestamps come from a coarse clock, so a file
rewritten in the same clock tick right after it was read can keep its size, mtime and
ctime. An entry whose mtime or ctime is not older than the walk's start minus the clock
granularity (:data:`COARSE_NS`; 2 s for whole-second timestamps, as on FAT, ext3 or some
network filesystems) is therefore stored with a signature that never matches
(:func:`unmatchable`), and is read again by the next walk. A timestamp in the future (a
``touch -d`` ahead of the clock) is always racy. Known limit, as in git: clocks that disagree
(a network filesystem whose server clock runs behind) defeat the check.

The record also holds the key the lines give, so an unchanged walk does not even hash them.
File format: ``MAGIC`` + CRC-32 of body (4 bytes, big-endian) + body, where body is
``marshal`` of ``(identity, files, key, signatures, lines, lengths)``: the signatures'
marshal, the key lines joined, and their lengths (``array('Q')``). CRC-32 detects damage
(a torn or truncated write, a flipped bit) at a fraction of a cryptographic hash's cost;
it is not meant to stop someone who can write the store, who could rewrite any cache.
Written atomically (temp file + rename, not fsynced: losing it costs a walk); a missing,
truncated, corrupt or foreign file is treated as absent. Concurrent builds may each write
the same identity; the last rename wins and either content is valid. The directory is
bounded: past :data:`MAX_WALKS` files or :data:`MAX_BYTES`, the least recently used are
removed down to half (a record's mtime is moved to "now" when it is loaded and an hour old;
a removed walk costs speed, never correctness).

Invariants: a walk record is an optimisation only; deleting the directory changes no key.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from operator import attrgetter
from pathlib import Path
from typing import cast

from lamina._internal.fileio import TMP_PREFIX, write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import BuildError

__all__ = [
    "COARSE_NS", "MAX_BYTES", "MAX_WALKS", "Walk", "WalkStore", "is_racy", "plain_signatures",
    "unmatchable",
]  # fmt: skip

MAGIC = b"lamina-walk-v3\n\0"
#: the coarsest clock tick a nanosecond timestamp may lag real time by (HZ=100 is 10 ms)
COARSE_NS = 50_000_000
_WHOLE_SECOND_NS = 2_000_000_000
MAX_WALKS = 512
MAX_BYTES = 256 << 20
_USED = 3600.0  # a record's mtime marks its last use to within this many seconds

#: see the module docstring; ``sig[2:]`` is the stat cache's row signature
Signature = tuple[object, ...]


def signature(index: int, sub: str, st: os.stat_result) -> Signature:
    """The signature of entry ``sub`` of source ``index`` whose ``lstat`` is ``st``."""
    return (
        index, sub, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
        st.st_mode, st.st_uid, st.st_gid,
    )  # fmt: skip


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _listing(fd: int) -> list[os.DirEntry[str]]:
    """The entries of open directory ``fd`` sorted bytewise by name (the copier's order:
    ASCII names sort the same as str and as bytes; others pay for ``fsencode``)."""
    with os.scandir(fd) as it:
        entries = list(it)
    if all(e.name.isascii() for e in entries):
        entries.sort(key=attrgetter("name"))
    else:
        entries.sort(key=lambda e: os.fsencode(e.name))
    return entries


def plain_signatures(
    index: int, top: str, out: list[Signature], prune: Callable[[str], bool] | None = None
) -> None:
    """Append the signatures of everything below directory ``top`` to ``out``.

    Depth-first, names in byte order, a directory before its children, links not followed:
    the order of :func:`lamina.build.copytree.iter_source` for a source without patterns.
    Directories are opened (``O_NOFOLLOW``) and listed by fd, so each ``lstat`` resolves one
    name rather than a whole path. A directory that vanishes or turns into something else
    meanwhile raises BuildError. A directory for which ``prune(path)`` is true is listed
    (its own signature) but not entered.
    """
    add = out.append
    isdir = stat.S_ISDIR
    stack: list[tuple[str, int, Iterator[os.DirEntry[str]]]] = []
    sub = ""
    try:
        fd = os.open(top, _DIR_FLAGS)
        stack.append(("", fd, iter(_listing(fd))))
        while stack:
            prefix, fd, entries = stack[-1]
            for e in entries:
                st = e.stat(follow_symlinks=False)  # fstatat(fd, name)
                sub = prefix + e.name
                mode = st.st_mode
                add((
                    index, sub, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                    st.st_ctime_ns, mode, st.st_uid, st.st_gid,
                ))  # fmt: skip
                if isdir(mode) and (prune is None or not prune(sub)):
                    child = os.open(e.name, _DIR_FLAGS, dir_fd=fd)
                    stack.append((sub + "/", child, iter(_listing(child))))
                    break
            else:
                stack.pop()
                os.close(fd)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise BuildError(f"reading build context: {sub or top}: {reason}") from exc
    finally:
        for _prefix, fd, _entries in stack:
            os.close(fd)


def is_racy(mtime_ns: int, ctime_ns: int, started_ns: int) -> bool:
    """Whether a change right after these times were read could keep them (see above).

    ``started_ns`` is ``time.time_ns()`` taken before the walk began (before any ``lstat``
    and any read).
    """
    for t in (mtime_ns, ctime_ns):
        slack = COARSE_NS if t % 1_000_000_000 else _WHOLE_SECOND_NS
        if t > started_ns - slack:
            return True
    return False


def unmatchable(sig: Signature) -> Signature:
    """``sig`` with a ctime no ``lstat`` returns (-1), so the next walk re-reads the entry."""
    return (*sig[:6], -1, *sig[7:])


def _is_file(sig: Signature) -> bool:
    return len(sig) > 2 and stat.S_ISREG(cast(int, sig[7]))


def _may_be_racy(sig: Signature, started_ns: int) -> bool:
    """Whether entry ``sig`` has content (a file or a link target) that may be racy."""
    if len(sig) <= 2 or stat.S_ISDIR(cast(int, sig[7])):
        return False
    return is_racy(cast(int, sig[5]), cast(int, sig[6]), started_ns)


def dump_signatures(sigs: list[Signature]) -> bytes:
    """The bytes two walks compare (marshal version 2: no back-references)."""
    return marshal.dumps(sigs, 2)


@lazy_dataclass(frozen=True)
class Walk:
    """One remembered walk: ``signatures`` (:func:`dump_signatures`) produced the key lines
    ``lines`` (joined; ``lengths`` splits them), whose key is ``key``; ``files`` counts the
    regular files among them (reported as stat-cache hits when the walk is reused)."""

    identity: str
    files: int
    key: str
    signatures: bytes
    lines: bytes
    lengths: bytes

    @classmethod
    def of(
        cls, identity: str, files: int, sigs: list[Signature], lines: list[bytes],
        key_of: Callable[[bytes], str],
    ) -> Walk:  # fmt: skip
        """A record from lists (as a walk computes them); ``key_of(joined lines)`` its key."""
        lengths = array("Q", [len(line) for line in lines]).tobytes()
        joined = b"".join(lines)
        return cls(identity, files, key_of(joined), dump_signatures(sigs), joined, lengths)

    def patch(
        self, sigs: list[Signature], line_for: Callable[[Signature], bytes], started_ns: int,
        key_of: Callable[[bytes], str],
    ) -> Walk | None:  # fmt: skip
        """The record of ``sigs`` if they name the same entries in the same order as this
        walk (a touch, an edit, a mode change: only signatures differ), else None.

        Only the differing entries are looked at: ``line_for(sig)`` computes such an entry's
        line (an entry with an empty line, one ``.dockerignore`` hides, keeps it). The entries
        that still match were stored clean (an unmatchable signature equals no ``lstat``), so
        they stay clean. A racy changed entry keeps its *old* signature
        rather than an unmatchable one: that one cannot match again either (the entry's ctime
        has moved past it; ctime is set from the clock on every change and cannot be set by
        users), and a build that only re-reads racy entries (a fresh ``touch``) then leaves
        the record as it was: nothing to write.
        """
        old: list[Signature] = marshal.loads(self.signatures)
        if len(old) != len(sigs):
            return None
        changed = [k for k, (new, was) in enumerate(zip(sigs, old, strict=True)) if new != was]
        if any(sigs[k][:2] != old[k][:2] for k in changed):
            return None
        sizes = array("Q")
        sizes.frombytes(self.lengths)
        starts = list(accumulate(sizes, initial=0))
        stored, files, pieces, pos = list(sigs), self.files, [], 0
        for k in changed:
            sig = sigs[k]
            if starts[k] == starts[k + 1]:
                continue  # an ignored entry (no line): its path is unchanged, so it still is
            line = line_for(sig)
            if line != self.lines[starts[k] : starts[k + 1]]:
                pieces += [self.lines[pos : starts[k]], line]
                pos, sizes[k] = starts[k + 1], len(line)
            files += _is_file(sig) - _is_file(old[k])
            if _may_be_racy(sig, started_ns):
                stored[k] = old[k]
        lines, key = self.lines, self.key
        if pieces:
            lines = b"".join([*pieces, self.lines[pos:]])
            key = key_of(lines)
        dumped = self.signatures if stored == old else dump_signatures(stored)
        return Walk(self.identity, files, key, dumped, lines, sizes.tobytes())

    def by_entry(self) -> dict[Signature, tuple[Signature, bytes]]:
        """(source index, path) -> (signature, line), for a partial re-walk."""
        sigs = marshal.loads(self.signatures)
        sizes = array("Q")
        sizes.frombytes(self.lengths)
        found: dict[Signature, tuple[Signature, bytes]] = {}
        pos = 0
        for sig, size in zip(sigs, sizes, strict=True):
            found[sig[:2]] = (sig, self.lines[pos : pos + size])
            pos += size
        return found


def walk_identity(parts: Sequence[object]) -> str:
    """The hex sha256 naming a walk record (``parts``: marshal-able values)."""
    return hashlib.sha256(MAGIC + marshal.dumps(list(parts), 4)).hexdigest()


class WalkStore:
    """Walk records under ``directory`` (created on first save); see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self, identity: str) -> Walk | None:
        """The record of ``identity``, or None when it is missing or unusable."""
        try:
            with open(self.directory / identity, "rb") as f:
                data = f.read()
                if os.fstat(f.fileno()).st_mtime < time.time() - _USED:
                    os.utime(f.fileno())  # used: keep it from eviction (see _bound)
        except OSError:
            return None
        head = len(MAGIC) + 4
        if (
            data[: len(MAGIC)] != MAGIC
            or zlib.crc32(data[head:]).to_bytes(4) != data[len(MAGIC) : head]
        ):
            return None
        try:
            fields = marshal.loads(data[head:])
            walk = Walk(*fields)
        except (ValueError, EOFError, TypeError):
            return None
        if walk.identity != identity or not isinstance(walk.files, int):
            return None
        if not isinstance(walk.key, str):
            return None
        if not all(isinstance(b, bytes) for b in (walk.signatures, walk.lines, walk.lengths)):
            return None
        return walk

    def save(self, walk: Walk) -> None:
        """Replace the record of ``walk.identity`` (atomic); errors only cost speed."""
        fields = (walk.identity, walk.files, walk.key, walk.signatures, walk.lines, walk.lengths)
        body = marshal.dumps(fields, 4)
        try:
            write_atomic(
                self.directory / walk.identity,
                MAGIC + zlib.crc32(body).to_bytes(4) + body,
                durable=False,
            )
        except OSError:
            return
        self._bound()

    def _bound(self) -> None:
        """Past MAX_WALKS records or MAX_BYTES, drop the least recently used down to half."""
        try:
            with os.scandir(self.directory) as it:
                entries = [
                    (st.st_mtime_ns, st.st_size, e.path)
                    for e in it
                    if not e.name.startswith(TMP_PREFIX)
                    for st in (e.stat(follow_symlinks=False),)
                ]
        except OSError:
            return
        count, total = len(entries), sum(size for _t, size, _p in entries)
        if count <= MAX_WALKS and total <= MAX_BYTES:
            return
        for _mtime, size, path in sorted(entries)[:-1]:  # never the newest (just written)
            if count <= MAX_WALKS // 2 and total <= MAX_BYTES // 2:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
            count, total = count - 1, total - size
