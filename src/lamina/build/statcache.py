"""Content keys for ``COPY``/``ADD`` sources that cost metadata, not content, when unchanged.

:func:`hash_sources` returns one sha256 over what a copy of the sources would produce: for
every entry, in walk order (depth-first, byte order, ``.dockerignore`` and ``--exclude``
applied exactly as the copier applies them): its path relative to the source, its type, its
permission bits (with setuid/setgid/sticky), its ownership when it is kept (``COPY --from``
roots; context files always become 0:0, so host ownership does not split the cache), and the
symlink target or the sha256 of the file content. Each source contributes its matched name
and its own type first, so renaming a source or a file below it changes the key; times do
not enter the key, so ``touch`` does not change it.

File content hashes come from a persistent :class:`StatCache`: a row per absolute path with
``(dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid)`` and the content digest. A row is used
only when all of these still match the file's ``lstat`` (BuildKit's content-hash cache keeps
the same idea); anything else is re-read (1 MiB chunks) and the row replaced. Why sqlite3
rather than JSON: it is stdlib, updates touch only changed rows instead of rewriting a file of
every path, readers and writers in several processes are serialised by sqlite's own locking
(WAL mode), and a crash mid-write leaves the previous state (journal). Rows for one source
root are loaded with one range query, so an unchanged 20,000-file context costs one walk and
one query. A row whose mtime or ctime is not older than the read minus the clock granularity
is not stored (:func:`lamina.build.walkcache.is_racy`: a same-tick rewrite could keep its
signature), so it is read again next time. The database is opened (and sqlite3 imported) only
when a row is needed.

On top of the rows, a :class:`~lamina.build.walkcache.WalkStore` (``<db stem>-walks/`` beside
the database) remembers each ``hash_sources`` call's last walk: an unchanged source then costs
the ``lstat`` walk and one hash over the remembered key lines (no row lookups at all); after a
``touch`` or an edit only the changed entries are looked at (read directly: their rows could
not match either). Within one :class:`StatCache` the same sources are walked once: a cache
object belongs to one build, during which the context is taken as unchanging (BuildKit reads
it once per build too).

Invariants: the cache is an optimisation only; deleting the database or the walks changes no
key. A cache object is used from one thread, for one build; close it (or use ``with``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, cast

from lamina.build.context import BuildContext, SourcePath, special_kind
from lamina.build.copytree import iter_source
from lamina.build.walkcache import (
    Signature,
    Walk,
    WalkStore,
    dump_signatures,
    is_racy,
    plain_signatures,
    signature,
    unmatchable,
    walk_identity,
)  # fmt: skip
from lamina.dockerfile.dockerignore import PatternMatcher
from lamina.errors import BuildError
from lamina.oci.digest import Digest

if TYPE_CHECKING:
    import sqlite3

__all__ = ["StatCache", "file_sha256", "hash_sources"]

_KEY_VERSION = b"lamina-copy-key-v1\n"
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER,
    ctime_ns INTEGER, mode INTEGER, uid INTEGER, gid INTEGER, digest TEXT
) WITHOUT ROWID
"""

_Row = tuple[int, int, int, int, int, int, int, int]


def _signature(st: os.stat_result) -> _Row:
    return (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_mode,
        st.st_uid,
        st.st_gid,
    )


def file_sha256(path: str) -> tuple[str, os.stat_result]:
    """(hex sha256, fstat) of regular file ``path``, read in 1 MiB chunks; never a FIFO."""
    try:
        fd = os.open(path, _READ)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise BuildError(f"reading {os.path.basename(path)}: {reason}") from exc
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BuildError(f"cannot copy {os.path.basename(path)}: not a regular file")
        hasher = hashlib.sha256()
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            hasher.update(view[:n])
    return hasher.hexdigest(), st


class StatCache:
    """A persistent map from file stat signatures to content sha256 (see the module docstring).

    ``path`` is the database file (its directory must exist), typically under the store root.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.walks = WalkStore(path.parent / f"{path.stem}-walks")
        #: walk identity -> (joined key lines, regular files): each source walked once
        self.walked: dict[str, tuple[bytes, int]] = {}
        self._db: sqlite3.Connection | None = None
        self._rows: dict[str, tuple[_Row, str]] = {}
        self._loaded: set[str] = set()
        self._dirty: dict[str, tuple[_Row, str]] = {}
        self.hits = 0
        self.misses = 0
        self.walked_count = 0  # walks done (hashing the same sources again walks nothing)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            import sqlite3  # only when a row is needed: a remembered walk needs none

            db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def _load(self, root: str) -> None:
        if root in self._loaded:
            return
        self._loaded.add(root)
        cursor = self._connect().execute(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid, digest"
            " FROM files WHERE path >= ? AND path < ?",
            (root + "/", root + "0"),
        )
        rows = self._rows
        for row in cursor:  # (path, 8 signature fields, digest); slices are tuples already
            rows[row[0]] = (row[1:9], row[9])

    def digest(self, path: str, st: os.stat_result, *, root: str) -> str:
        """The content sha256 (hex) of ``path`` whose ``lstat`` is ``st``; reads only on a miss.

        ``root`` bounds the rows loaded at once (one range query per root). A row read now is
        stored only if it is not racy (see the module docstring).
        """
        return self.digest_row(path, _signature(st), root=root)

    def digest_row(self, path: str, row: Sequence[object], *, root: str) -> str:
        """:meth:`digest` for a file whose row signature (see ``_signature``) is ``row``."""
        if root not in self._loaded:
            self._load(root)
        cached = self._rows.get(path)
        if cached is not None and cached[0] == row:
            self.hits += 1
            return cached[1]
        return self.read(path, path)

    def read(self, path: str, key: str | None = None) -> str:
        """Read ``path``'s content sha256 (a miss); remembered under ``key`` unless racy."""
        self.misses += 1
        started = time.time_ns()
        digest, now = file_sha256(path)
        if key is not None and not is_racy(now.st_mtime_ns, now.st_ctime_ns, started):
            self._rows[key] = self._dirty[key] = (_signature(now), digest)
        return digest

    def flush(self) -> None:
        """Write changed rows in one transaction; idempotent."""
        if not self._dirty:
            return
        db = self._connect()
        rows = [(path, *sig, digest) for path, (sig, digest) in self._dirty.items()]
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        self._dirty.clear()

    def close(self) -> None:
        """Flush and close the database (if it was opened); idempotent."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None

    def __enter__(self) -> StatCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_Digester = Callable[[str, Signature], str]


class _Hasher:
    """Turns sources into key lines: a header per source, then one line per entry."""

    def __init__(self, excludes: Sequence[str]) -> None:
        self.excludes = PatternMatcher(excludes, source="--exclude") if excludes else None

    def line(self, sig: Signature, source: SourcePath, full: str, digest: _Digester) -> bytes:
        """The key line of entry ``sig`` (see :mod:`lamina.build.walkcache`), path ``full``."""
        sub, mode, uid, gid = cast(tuple[str, int, int, int], (sig[1], *sig[7:10]))
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFREG:  # the common case first: one test per file
            payload, tag = digest(full, sig), "f"
        elif fmt == stat.S_IFDIR:
            payload, tag = "", "d"
        elif fmt == stat.S_IFLNK:
            payload, tag = os.readlink(full), "l"
        else:
            kind = special_kind(mode) or "not a regular file, directory or symlink"
            raise BuildError(f"cannot copy {sub or source.name}: it is {kind}")
        owner = f"{uid}:{gid}" if source.preserve_owner else "-"
        line = f"{sub}\0{tag}\0{stat.S_IMODE(mode):o}\0{owner}\0{payload}\n"
        return line.encode("utf-8", "surrogateescape")

    @staticmethod
    def header(source: SourcePath) -> bytes:
        """The line that opens ``source``'s entries."""
        return f"source\0{source.name}\n".encode("utf-8", "surrogateescape")

    def excluded(self, rel: str, is_dir: bool) -> bool:
        if self.excludes is None or not self.excludes.matches(rel):
            return False
        if is_dir and self.excludes.exclusions:
            below = rel + "/"
            return not any(
                p.exclusion and (p.text + "/").startswith(below) for p in self.excludes.patterns
            )
        return True

    def signatures(self, index: int, source: SourcePath, out: list[Signature]) -> None:
        """Append the header and the signatures of ``source``'s entries (itself first, path
        ``""``) to ``out``, in walk order."""
        out.append((index, None))
        out.append(signature(index, "", source.stat))
        if not source.is_dir:
            return
        flt = source.filter
        if self.excludes is None and (
            flt is None or flt.excludes is None or not flt.excludes.patterns
        ):
            plain_signatures(index, str(source.full_path), out)  # the common case, fast
            return
        excluded = self.excluded if self.excludes is not None else None
        out += [signature(index, sub, st) for sub, st, _ in iter_source(source, excluded)]

    def lines(
        self, sources: Sequence[SourcePath], sigs: list[Signature], digests: list[_Digester]
    ) -> Iterator[bytes]:
        """The key line of each of ``sigs`` (from :meth:`signatures` over ``sources``)."""
        fulls = [str(src.full_path) for src in sources]
        for sig in sigs:
            i, sub = cast(tuple[int, str | None], sig[:2])
            if sub is None:
                yield self.header(sources[i])
            else:
                full = f"{fulls[i]}/{sub}" if sub else fulls[i]
                yield self.line(sig, sources[i], full, digests[i])


def _identity(sources: Sequence[SourcePath], excludes: Sequence[str]) -> str:
    """What decides a walk's entries and lines (see :mod:`lamina.build.walkcache`)."""
    parts: list[object] = [_KEY_VERSION, tuple(excludes)]
    for src in sources:
        flt = src.filter
        pats = [
            tuple((p.exclusion, p.text) for p in m.patterns) if m is not None else None
            for m in ((flt.excludes, flt.includes) if flt is not None else ())
        ]
        parts.append((str(src.root), src.path, src.name, src.preserve_owner, tuple(pats)))
    return walk_identity(parts)


def _remembered(
    hasher: _Hasher, sources: Sequence[SourcePath], cache: StatCache, excludes: Sequence[str]
) -> bytes:
    """The joined key lines of ``sources``, through ``cache``'s remembered walks."""
    identity = _identity(sources, excludes)
    done = cache.walked.get(identity)
    if done is not None:
        cache.hits += done[1]
        return done[0]
    started = time.time_ns()
    cache.walked_count += 1
    sigs: list[Signature] = []
    for i, src in enumerate(sources):
        hasher.signatures(i, src, sigs)
    old = cache.walks.load(identity)
    if old is not None and old.signatures == dump_signatures(sigs):
        cache.hits += old.files  # nothing changed: the remembered lines hold
        cache.walked[identity] = (old.lines, old.files)
        return old.lines
    walk = _rewalk(hasher, sources, cache, identity, sigs, old, started)
    if old is None or (walk.signatures, walk.lines) != (old.signatures, old.lines):
        cache.walks.save(walk)
    cache.walked[identity] = (walk.lines, walk.files)
    return walk.lines


def _rewalk(
    hasher: _Hasher, sources: Sequence[SourcePath], cache: StatCache, identity: str,
    sigs: list[Signature], old: Walk | None, started: int,
) -> Walk:  # fmt: skip
    """The walk record of ``sigs``: lines remembered where the signature still matches,
    computed where not; racy entries are stored unmatchable. Without an old walk, file
    digests come from the rows; with one, a changed file is read without storing a row (its
    row could not match either, and the database stays closed)."""
    known = old.by_entry() if old is not None else {}
    changed: list[Signature] = []
    for sig in sigs:
        prev = known.get(sig[:2])
        if prev is None or prev[0] != sig:
            changed.append(sig)
    digests = [_digester(cache, src, use_rows=old is None) for src in sources]
    fresh = dict(
        zip((s[:2] for s in changed), hasher.lines(sources, changed, digests), strict=True)
    )
    lines: list[bytes] = []
    stored: list[Signature] = []
    files = 0
    for sig in sigs:
        line = fresh.get(sig[:2])
        mode = cast(int, sig[7]) if len(sig) > 2 else 0
        is_file = stat.S_ISREG(mode)
        files += is_file
        if line is None:
            line = known[sig[:2]][1]
            cache.hits += is_file
        lines.append(line)
        racy = (is_file or stat.S_ISLNK(mode)) and is_racy(
            cast(int, sig[5]), cast(int, sig[6]), started
        )
        stored.append(unmatchable(sig) if racy else sig)
    return Walk.of(identity, files, stored, lines)


def _digester(cache: StatCache, source: SourcePath, *, use_rows: bool) -> _Digester:
    if not use_rows:
        return lambda full, sig: cache.read(full)
    root = str(source.root)
    return lambda full, sig: cache.digest_row(full, sig[2:], root=root)


def hash_sources(
    context: BuildContext | None,
    sources: Sequence[SourcePath | str],
    *,
    cache: StatCache | None = None,
    excludes: Sequence[str] = (),
) -> Digest:
    """The content key of ``sources`` (resolved ``SourcePath``s, or names resolved in ``context``).

    Same inputs, same key, whatever the times and whether ``cache`` is given; see the module
    docstring for what counts. Flushes ``cache`` before returning. Raises BuildError as
    resolution and copying would.
    """
    hasher = _Hasher(excludes)
    names = [s for s in sources if isinstance(s, str)]
    if names and (context is None or len(names) != len(sources)):
        raise BuildError("hashing sources: names need a build context and cannot mix with paths")
    resolved = context.resolve(names) if names and context is not None else sources
    found = [item for item in resolved if isinstance(item, SourcePath)]
    sha = hashlib.sha256(_KEY_VERSION)
    if cache is None:
        sigs: list[Signature] = []
        for i, src in enumerate(found):
            hasher.signatures(i, src, sigs)
        plain: _Digester = lambda full, sig: file_sha256(full)[0]  # noqa: E731
        for line in hasher.lines(found, sigs, [plain] * len(found)):
            sha.update(line)
    else:
        sha.update(_remembered(hasher, found, cache, excludes))
        cache.flush()
    return Digest.from_hasher(sha)
