"""Content keys for ``COPY``/``ADD`` sources that cost metadata, not content, when unchanged.

:func:`hash_sources` returns one sha256 over what a copy of the sources would produce: for
every entry, in walk order (depth-first, byte order, ``.dockerignore`` and ``--exclude``
applied exactly as the copier applies them): its path relative to the source, its type, its
permission bits (with setuid/setgid/sticky), its ownership when it is kept (``COPY --from``
roots; context files always become 0:0, so host ownership does not split the cache), and the
symlink target or the sha256 of the file content. Each source contributes its matched name
and its own type first, so renaming a source or a file below it changes the key; times do
not enter the key, so ``touch`` does not change it.

File digests come from a :class:`~lamina.build.statcache.StatCache`. On top of its rows, its
:class:`~lamina.build.walkcache.WalkStore` remembers each call's last walk: an unchanged
source then costs the ``lstat`` walk and one hash over the remembered key lines (no row
lookups, no database); after a ``touch`` or an edit only the changed entries are looked at
(read directly: their rows could not match either). Within one cache object the same
sources are walked once: a cache object belongs to one build, during which the context is
taken as unchanging (BuildKit reads it once per build too).

Invariant: same inputs, same key, with or without a cache, whatever the times.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from lamina.build.context import BuildContext, SourcePath, special_kind
from lamina.build.copytree import iter_source
from lamina.build.statcache import StatCache, file_sha256
from lamina.build.walkcache import (
    Signature,
    Walk,
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

__all__ = ["hash_sources"]

_KEY_VERSION = b"lamina-copy-key-v1\n"

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


def _key_of(lines: bytes) -> str:
    """The key (``sha256:<hex>``) of the joined key lines of every source."""
    return "sha256:" + hashlib.sha256(_KEY_VERSION + lines).hexdigest()


def _remembered(
    hasher: _Hasher, sources: Sequence[SourcePath], cache: StatCache, excludes: Sequence[str]
) -> str:
    """The key of ``sources``, through ``cache``'s remembered walks."""
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
        cache.hits += old.files  # nothing changed: the remembered lines (and key) hold
        cache.walked[identity] = (old.key, old.files)
        return old.key
    walk = _patched(hasher, sources, cache, sigs, old, started) if old is not None else None
    if walk is None:
        walk = _rewalk(hasher, sources, cache, identity, sigs, old, started)
    if old is None or (walk.signatures, walk.lines) != (old.signatures, old.lines):
        cache.walks.save(walk)
    cache.walked[identity] = (walk.key, walk.files)
    return walk.key


def _patched(
    hasher: _Hasher, sources: Sequence[SourcePath], cache: StatCache, sigs: list[Signature],
    old: Walk, started: int,
) -> Walk | None:  # fmt: skip
    """:meth:`Walk.patch` (a touch or an edit: the same entries), changed files read directly."""
    fulls = [str(src.full_path) for src in sources]

    def line_for(sig: Signature) -> bytes:
        i, sub = cast(tuple[int, str], sig[:2])
        full = f"{fulls[i]}/{sub}" if sub else fulls[i]
        return hasher.line(sig, sources[i], full, lambda path, _sig: cache.read(path))

    misses = cache.misses
    walk = old.patch(sigs, line_for, started, _key_of)
    if walk is not None:
        cache.hits += walk.files - (cache.misses - misses)
    return walk


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
    return Walk.of(identity, files, stored, lines, _key_of)


def _digester(cache: StatCache, source: SourcePath, *, use_rows: bool) -> _Digester:
    """Digests through the rows (a first walk), or read directly without storing a row (a
    re-walk: a file whose remembered signature changed has no matching row either, and not
    storing one keeps the database closed)."""
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
    if cache is not None:
        key = _remembered(hasher, found, cache, excludes)
        cache.flush()
        return Digest.parse(key)
    sha = hashlib.sha256(_KEY_VERSION)
    sigs: list[Signature] = []
    for i, src in enumerate(found):
        hasher.signatures(i, src, sigs)
    plain: _Digester = lambda full, sig: file_sha256(full)[0]  # noqa: E731
    for line in hasher.lines(found, sigs, [plain] * len(found)):
        sha.update(line)
    return Digest.from_hasher(sha)
