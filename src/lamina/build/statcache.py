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
one query. Known limit: a file rewritten with identical size, mtime_ns and ctime_ns (which
needs a clock reset) would keep its old digest, as in every stat cache.

Invariants: the cache is an optimisation only; deleting the database changes no key. A cache
object is used from one thread; close it (or use ``with``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from lamina.build.context import BuildContext, SourcePath, special_kind
from lamina.build.copytree import iter_source
from lamina.dockerfile.dockerignore import PatternMatcher
from lamina.errors import BuildError
from lamina.oci.digest import Digest

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
        self._db = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._rows: dict[str, tuple[_Row, str]] = {}
        self._loaded: set[str] = set()
        self._dirty: dict[str, tuple[_Row, str]] = {}
        self.hits = 0
        self.misses = 0

    def _load(self, root: str) -> None:
        if root in self._loaded:
            return
        self._loaded.add(root)
        cursor = self._db.execute(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid, digest"
            " FROM files WHERE path >= ? AND path < ?",
            (root + "/", root + "0"),
        )
        rows = self._rows
        for row in cursor:  # (path, 8 signature fields, digest); slices are tuples already
            rows[row[0]] = (row[1:9], row[9])

    def digest(self, path: str, st: os.stat_result, *, root: str) -> str:
        """The content sha256 (hex) of ``path`` whose ``lstat`` is ``st``; reads only on a miss.

        ``root`` bounds the rows loaded at once (one range query per root).
        """
        if root not in self._loaded:
            self._load(root)
        key = path
        cached = self._rows.get(key)
        sig = _signature(st)
        if cached is not None and cached[0] == sig:
            self.hits += 1
            return cached[1]
        self.misses += 1
        digest, now = file_sha256(path)
        entry = (_signature(now), digest)
        self._rows[key] = self._dirty[key] = entry
        return digest

    def flush(self) -> None:
        """Write changed rows in one transaction; idempotent."""
        if not self._dirty:
            return
        rows = [(path, *sig, digest) for path, (sig, digest) in self._dirty.items()]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        self._dirty.clear()

    def close(self) -> None:
        """Flush and close the database; idempotent."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> StatCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Hasher:
    """Feeds entry records into one sha256."""

    def __init__(self, cache: StatCache | None, excludes: Sequence[str]) -> None:
        self.sha = hashlib.sha256(_KEY_VERSION)
        self.cache = cache
        self.root = ""  # the current source's root (bounds the stat-cache rows loaded)
        self.excludes = PatternMatcher(excludes, source="--exclude") if excludes else None

    def record(self, sub: str, st: os.stat_result, source: SourcePath, full: str) -> None:
        mode = st.st_mode
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFREG:  # the common case first: one test per file
            tag = "f"
            if self.cache is not None:
                payload = self.cache.digest(full, st, root=self.root)
            else:
                payload = file_sha256(full)[0]
        elif fmt == stat.S_IFDIR:
            payload, tag = "", "d"
        elif fmt == stat.S_IFLNK:
            payload, tag = os.readlink(full), "l"
        else:
            kind = special_kind(mode) or "not a regular file, directory or symlink"
            raise BuildError(f"cannot copy {sub or source.name}: it is {kind}")
        owner = f"{st.st_uid}:{st.st_gid}" if source.preserve_owner else "-"
        line = f"{sub}\0{tag}\0{stat.S_IMODE(mode):o}\0{owner}\0{payload}\n"
        self.sha.update(line.encode("utf-8", "surrogateescape"))

    def excluded(self, rel: str, is_dir: bool) -> bool:
        if self.excludes is None or not self.excludes.matches(rel):
            return False
        if is_dir and self.excludes.exclusions:
            below = rel + "/"
            return not any(
                p.exclusion and (p.text + "/").startswith(below) for p in self.excludes.patterns
            )
        return True

    def source(self, source: SourcePath) -> None:
        self.root = str(source.root)
        self.sha.update(f"source\0{source.name}\n".encode("utf-8", "surrogateescape"))
        self.record("", source.stat, source, str(source.full_path))
        if not source.is_dir:
            return
        base = f"{source.full_path}/"
        excluded = self.excluded if self.excludes is not None else None
        for sub, st, _is_dir in iter_source(source, excluded):
            self.record(sub, st, source, base + sub)


def hash_sources(
    context: BuildContext | None,
    sources: Sequence[SourcePath | str],
    *,
    cache: StatCache | None = None,
    excludes: Sequence[str] = (),
) -> Digest:
    """The content key of ``sources`` (resolved ``SourcePath``s, or names resolved in ``context``).

    Same inputs, same key, whatever the times; see the module docstring for what counts.
    Flushes ``cache`` before returning. Raises BuildError as resolution and copying would.
    """
    hasher = _Hasher(cache, excludes)
    names = [s for s in sources if isinstance(s, str)]
    if names and (context is None or len(names) != len(sources)):
        raise BuildError("hashing sources: names need a build context and cannot mix with paths")
    resolved = context.resolve(names) if names and context is not None else sources
    for item in resolved:
        assert isinstance(item, SourcePath)
        hasher.source(item)
    if cache is not None:
        cache.flush()
    return Digest.from_hasher(hasher.sha)
