"""The stat cache: file content digests that cost an ``lstat``, not a read, when unchanged.

A persistent :class:`StatCache` keeps a row per absolute path with ``(dev, ino, size,
mtime_ns, ctime_ns, mode, uid, gid)`` and the content digest. A row is used only when all of
these still match the file's ``lstat`` (BuildKit's content-hash cache keeps the same idea);
anything else is re-read (1 MiB chunks) and the row replaced. Why sqlite3 rather than JSON: it
is stdlib, updates touch only changed rows instead of rewriting a file of every path, readers
and writers in several processes are serialised by sqlite's own locking (WAL mode), and a
crash mid-write leaves the previous state (journal). Rows for one source root are loaded with
one range query. A row whose mtime or ctime is not older than the read minus the clock
granularity is not stored (:func:`lamina.build.walkcache.is_racy`: a same-tick rewrite could
keep its signature), so it is read again next time. The database is opened (and sqlite3
imported) only when a row is needed.

The cache object also carries the remembered walks of :mod:`lamina.build.sourcekey`
(``<db stem>-walks/`` beside the database), which make most row lookups unnecessary, and
the walks already done in this build.

Invariants: the cache is an optimisation only; deleting the database or the walks changes no
key. A cache object is used from one thread, for one build; close it (or use ``with``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from lamina.build.walkcache import WalkStore, is_racy
from lamina.errors import BuildError

if TYPE_CHECKING:
    import sqlite3

__all__ = ["StatCache", "file_sha256"]

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
        #: walk identity -> (key, regular files): the same sources are walked once
        self.walked: dict[str, tuple[str, int]] = {}
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
