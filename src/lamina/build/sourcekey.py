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
source then costs the ``lstat`` walk and a comparison with the remembered signatures (no
row lookups, no database, no hashing: the record holds its key); after a ``touch`` or an
edit only the changed entries are looked at (read directly: their rows could not match
either). Within one cache object the same sources are walked once: a cache object belongs
to one build, during which the context is taken as unchanging (BuildKit reads it once per
build too).

With a ``.dockerignore`` (and no ``--exclude``), the remembered walk is the *whole* tree,
ignored entries included with empty lines, except directories that the patterns ignore with
everything below them (no ``!`` pattern at all). Whether an entry is ignored depends on its
path alone, and a directory's listing changes its signature, so an unchanged walk needs no
pattern matching; only a changed walk asks the filter (the copier's own walk), and checks
that the entries it sends come in the same order (:class:`_Unlike` otherwise: a race, and
the filter's walk is used alone). A directory the filter sends only because a re-included
file lies below it is re-decided whenever the entries change.

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


class _Unlike(Exception):
    """A whole walk and the filter's walk disagree (a race): use the filter's walk alone."""


class _Hasher:
    """Turns sources into key lines: a header per source, then one line per entry."""

    def __init__(self, excludes: Sequence[str]) -> None:
        self.excludes = PatternMatcher(excludes, source="--exclude") if excludes else None
        #: sources walked whole (``.dockerignore``d entries kept, with empty lines), see
        #: :meth:`signatures`; False after such a walk disagreed with the filter
        self.raw: set[int] = set()
        self.raw_ok = True

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
        """Whether ``--exclude`` drops ``rel``: the copier's rule, so key and copy agree."""
        return self.excludes is not None and self.excludes.drops(rel, is_dir)

    def signatures(self, index: int, source: SourcePath, out: list[Signature]) -> None:
        """Append the header and the signatures of ``source``'s entries (itself first, path
        ``""``) to ``out``, in walk order."""
        out.append((index, None))
        out.append(signature(index, "", source.stat))
        if not source.is_dir:
            return
        flt = source.filter
        ignore = flt.excludes if flt is not None else None
        if self.excludes is None and (ignore is None or not ignore.patterns):
            plain_signatures(index, str(source.full_path), out)  # the common case, fast
            return
        if self.excludes is None and ignore is not None and self.raw_ok:
            # The .dockerignore'd entries are walked too (their lines will be empty), so
            # an unchanged walk needs no pattern matching: which entries are ignored depends
            # on their paths only. A directory is not entered when it and so everything
            # below it is ignored (no "!" pattern can take anything back).
            base = f"{source.path}/" if source.path else ""
            gone = (lambda sub: ignore.matches(base + sub)) if not ignore.exclusions else None
            mark = len(out)
            try:
                plain_signatures(index, str(source.full_path), out, gone)
                self.raw.add(index)
                return
            except BuildError:  # e.g. an unreadable ignored directory: the filter skips it
                del out[mark:]
        excluded = self.excluded if self.excludes is not None else None
        out += [signature(index, sub, st) for sub, st, _ in iter_source(source, excluded)]

    def shown(self, sources: Sequence[SourcePath], sigs: list[Signature]) -> dict[int, set[str]]:
        """Per raw-walked source, the paths the filter lets through; raises _Unlike unless
        they come in ``sigs`` in the filter's own order (so the lines keep their order)."""
        found: dict[int, set[str]] = {}
        for index in sorted(self.raw):
            shown = [sub for sub, _st, _d in iter_source(sources[index], None)]
            kept = set(shown)
            if [s[1] for s in sigs if s[0] == index and s[1] in kept] != shown:
                raise _Unlike
            found[index] = kept
        return found

    def walk(self, sources: Sequence[SourcePath]) -> list[Signature]:
        """The signatures of every source, in order (see :meth:`signatures`)."""
        sigs: list[Signature] = []
        for i, src in enumerate(sources):
            self.signatures(i, src, sigs)
        return sigs

    def unlike(self, sources: Sequence[SourcePath]) -> list[Signature]:
        """After _Unlike: walk again through the filter alone."""
        self.raw_ok = False
        self.raw.clear()
        return self.walk(sources)

    def lines(
        self, sources: Sequence[SourcePath], sigs: list[Signature], digests: list[_Digester],
        shown: dict[int, set[str]],
    ) -> Iterator[bytes]:  # fmt: skip
        """The key line of each of ``sigs`` (from :meth:`signatures` over ``sources``; ``shown``
        from :meth:`shown`); an ignored entry's line is empty."""
        fulls = [str(src.full_path) for src in sources]
        for sig in sigs:
            i, sub = cast(tuple[int, str | None], sig[:2])
            if sub is None:
                yield self.header(sources[i])
            elif sub and i in shown and sub not in shown[i]:
                yield b""  # ignored: walked only so that an unchanged walk needs no filter
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
    hasher: _Hasher, sources: Sequence[SourcePath], cache: StatCache, excludes: Sequence[str],
    keep: bool,
) -> str:  # fmt: skip
    """The key of ``sources``, through ``cache``'s remembered walks (none read or written
    unless ``keep``)."""
    identity = _identity(sources, excludes)
    done = cache.walked.get(identity)
    if done is not None:
        cache.hits += done[1]
        return done[0]
    started = time.time_ns()
    cache.walked_count += 1
    sigs = hasher.walk(sources)
    old = cache.walks.load(identity) if keep else None
    if old is not None and old.signatures == dump_signatures(sigs):
        cache.hits += old.files  # nothing changed: the remembered lines (and key) hold
        cache.walked[identity] = (old.key, old.files)
        return old.key
    walk = _patched(hasher, sources, cache, sigs, old, started) if old is not None else None
    if walk is None:
        try:
            walk = _rewalk(hasher, sources, cache, identity, sigs, old, started)
        except _Unlike:
            sigs = hasher.unlike(sources)
            walk = _rewalk(hasher, sources, cache, identity, sigs, old, started)
    if keep and (old is None or (walk.signatures, walk.lines) != (old.signatures, old.lines)):
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
    shown = hasher.shown(sources, sigs)
    known = old.by_entry() if old is not None else {}
    changed: list[Signature] = []
    for sig in sigs:
        prev = known.get(sig[:2])
        if prev is None or prev[0] != sig:
            changed.append(sig)
        elif sig[0] in shown and sig[1] and (sig[1] in shown[sig[0]]) != bool(prev[1]):
            changed.append(sig)  # e.g. an ignored dir now sent for a re-included child
    digests = [_digester(cache, src, use_rows=old is None) for src in sources]
    fresh = dict(
        zip(
            (s[:2] for s in changed),
            hasher.lines(sources, changed, digests, shown),
            strict=True,
        )
    )
    lines: list[bytes] = []
    stored: list[Signature] = []
    files = 0
    for sig in sigs:
        line = fresh.get(sig[:2])
        mode = cast(int, sig[7]) if len(sig) > 2 else 0
        if line is None:
            line = known[sig[:2]][1]
            cache.hits += stat.S_ISREG(mode) and bool(line)
        is_file = stat.S_ISREG(mode) and bool(line)  # an ignored file is no file here
        files += is_file
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
        # an archive context is extracted anew, elsewhere, by every build: nothing to reuse
        keep = context is None or not context.is_temporary
        key = _remembered(hasher, found, cache, excludes, keep)
        cache.flush()
        return Digest.parse(key)
    sha = hashlib.sha256(_KEY_VERSION)
    sigs = hasher.walk(found)
    try:
        shown = hasher.shown(found, sigs)
    except _Unlike:
        sigs = hasher.unlike(found)
        shown = {}
    plain: _Digester = lambda full, sig: file_sha256(full)[0]  # noqa: E731
    for line in hasher.lines(found, sigs, [plain] * len(found), shown):
        sha.update(line)
    return Digest.from_hasher(sha)
