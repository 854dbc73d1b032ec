"""Walking a build context through include/exclude patterns, as BuildKit's fsutil does.

The walk is depth-first with each directory's entries sorted by name (byte order). For every
entry the include patterns (if any) and then the exclude patterns decide:

* excluded (or not included) and a directory that no exception (no include) could reach:
  pruned — never read, so unreadable excluded directories cause no error;
* excluded but possibly holding a re-included path: not sent, but entered; an unreadable one
  is then silently dropped;
* otherwise sent, after any of its not-yet-sent ancestor directories (so ``foo*`` +
  ``!foo/bar2`` sends ``foo`` then ``foo/bar2``, and nothing else from ``foo``).

"Could reach" is fsutil's conservative test: when every exception (include) pattern is a plain
path (no ``* ? [ ] ^ \\`` apart from a trailing ``/*`` or ``/**``), a directory is pruned unless
one of them lies under it; otherwise it is always entered.

Invariants: nothing is followed through a symlink (entries are ``lstat``-ed; a symlink to a
directory is yielded as a symlink and not entered); paths are relative, ``/``-separated, without
``./``. Errors: DockerfileError for bad patterns (when the filter is built), BuildError for an
unreadable path that is not excluded. Deviation: an unreadable context root is an error, where
Go's ``filepath.Walk`` would silently yield nothing.
"""

from __future__ import annotations

import errno
import os
import stat as statmod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.dockerfile.patternmatch import MatchInfo, PatternMatcher, go_clean
from lamina.errors import BuildError

__all__ = ["ContextEntry", "ContextFilter", "walk_context"]

_PATTERN_CHARS = frozenset("*[]?^\\")
_PERMISSION = (errno.EACCES, errno.EPERM)


class ContextEntry(NamedTuple):
    """One path sent from the context: relative ``/`` path and its ``lstat`` result."""

    path: str
    stat: os.stat_result

    @property
    def is_dir(self) -> bool:
        """Whether the entry is a directory (never true for a symlink)."""
        return statmod.S_ISDIR(self.stat.st_mode)


@lazy_dataclass
class _Dir:
    """A directory on the walk stack, with the match results its children reuse."""

    path: str
    stat: os.stat_result
    include: MatchInfo | None
    exclude: MatchInfo | None
    sent: bool


def _plain(pattern_text: str) -> str:
    return pattern_text.removesuffix("/**").removesuffix("/*")


def _only_plain(matcher: PatternMatcher | None, exclusions: bool) -> bool:
    if matcher is None:
        return True
    return not any(
        _PATTERN_CHARS.intersection(_plain(p.text))
        for p in matcher.patterns
        if p.exclusion == exclusions
    )


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


class ContextFilter:
    """Include/exclude patterns over a context (fsutil ``FilterOpt``); immutable once built.

    ``excludes`` is what a ``.dockerignore`` produces; ``includes`` selects paths (COPY sources,
    follow-paths), where ``!`` removes again. ``None`` or empty means no such filter.
    """

    def __init__(
        self,
        *,
        excludes: Iterable[str] | None = None,
        includes: Iterable[str] | None = None,
        source: str = ".dockerignore",
    ) -> None:
        include_list = list(includes) if includes is not None else []
        self.includes = (
            PatternMatcher(include_list, source="include patterns") if include_list else None
        )
        self.excludes = PatternMatcher(excludes, source=source) if excludes is not None else None
        self._plain_includes = _only_plain(self.includes, exclusions=False)
        self._plain_exceptions = _only_plain(self.excludes, exclusions=True)

    def is_included(self, path: str) -> bool:
        """Whether ``path`` (relative to the context) passes the filter, ancestors included."""
        if self.includes is not None and not self.includes.matches(path):
            return False
        return not (self.excludes is not None and self.excludes.matches(path))

    def _may_hold(self, matcher: PatternMatcher, path: str, exclusions: bool) -> bool:
        below = path + "/"
        return any(
            (_plain(p.text) + "/").startswith(below)
            for p in matcher.patterns
            if p.exclusion == exclusions
        )

    def _decide(self, path: str, is_dir: bool, parent: _Dir | None) -> tuple[str, _Dir]:
        """Return ("prune" | "skip" | "send", a _Dir carrying this path's match info)."""
        node = _Dir(path, os.stat_result((0,) * 10), None, None, False)
        skip = False
        if self.includes is not None:
            hit, node.include = self.includes.matches_using_parent(
                path, parent.include if parent else None
            )
            if not hit:
                if (
                    is_dir
                    and self._plain_includes
                    and not self._may_hold(self.includes, path, exclusions=False)
                ):
                    return "prune", node
                skip = True
        if self.excludes is not None:
            hit, node.exclude = self.excludes.matches_using_parent(
                path, parent.exclude if parent else None
            )
            if hit:
                if (
                    is_dir
                    and self._plain_exceptions
                    and not (
                        self.excludes.exclusions
                        and self._may_hold(self.excludes, path, exclusions=True)
                    )
                ):
                    return "prune", node
                skip = True
        return ("skip" if skip else "send"), node

    def walk(self, root: Path | str) -> Iterator[ContextEntry]:
        """Yield the entries of ``root`` that pass the filter, depth-first, sorted by name."""
        base = os.path.realpath(root)
        try:
            top = _scandir(base)
        except OSError as exc:
            raise BuildError(f"reading build context {base}: {_reason(exc)}") from exc
        # frames[0] is the root (no _Dir); frames[k] for k >= 1 is an entered directory.
        frames: list[tuple[_Dir | None, Iterator[os.DirEntry[str]]]] = [(None, top)]
        while frames:
            parent, children = frames[-1]
            entry = next(children, None)
            if entry is None:
                frames.pop()
                continue
            rel = entry.name if parent is None else f"{parent.path}/{entry.name}"
            yield from self._visit(entry, rel, frames)

    def _visit(
        self,
        entry: os.DirEntry[str],
        rel: str,
        frames: list[tuple[_Dir | None, Iterator[os.DirEntry[str]]]],
    ) -> Iterator[ContextEntry]:
        """Decide one entry; yield what it sends and push a frame if it is to be entered."""
        error: OSError | None = None
        st: os.stat_result | None = None
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            error = exc
        is_dir = st is not None and statmod.S_ISDIR(st.st_mode)
        action, node = self._decide(rel, is_dir, frames[-1][0])
        if action == "prune":
            return
        children: Iterator[os.DirEntry[str]] = iter(())
        if st is not None and is_dir:
            try:
                children = _scandir(entry.path)
            except OSError as exc:
                error = exc
        if error is not None or st is None:
            assert error is not None
            if isinstance(error, FileNotFoundError) or (
                action == "skip" and error.errno in _PERMISSION
            ):
                return
            raise BuildError(f"reading build context: {rel}: {_reason(error)}") from error
        if action == "send":
            for ancestor, _ in frames[1:]:
                assert ancestor is not None
                if not ancestor.sent:
                    ancestor.sent = True
                    yield ContextEntry(ancestor.path, ancestor.stat)
            yield ContextEntry(rel, st)
        if is_dir:
            node.stat, node.sent = st, action == "send"
            frames.append((node, children))

    def open(self, root: Path | str, path: str) -> BinaryIO:
        """Open a context file for reading through the filter (fsutil's filtered ``Open``).

        A filtered-out path raises FileNotFoundError, as if it did not exist. ``..`` and
        symlinks anywhere on the path are refused (ENOENT / ELOOP); the caller closes the file.
        """
        rel = go_clean(path.lstrip("/"))
        parts = rel.split("/")
        if rel == "." or ".." in parts or not self.is_included(rel):
            raise FileNotFoundError(errno.ENOENT, "no such file in build context", path)
        current = os.path.realpath(root)
        for part in parts[:-1]:
            current = os.path.join(current, part)
            if statmod.S_ISLNK(os.lstat(current).st_mode):
                raise OSError(errno.ELOOP, "symlink in build context path", path)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(current, parts[-1]), flags)
        return os.fdopen(fd, "rb")


def _scandir(path: str) -> Iterator[os.DirEntry[str]]:
    """List a directory now (so errors surface here), sorted by name in byte order."""
    with os.scandir(path) as it:
        entries = list(it)
    entries.sort(key=lambda e: os.fsencode(e.name))
    return iter(entries)


def walk_context(
    root: Path | str, *, excludes: list[str], includes: list[str] | None = None
) -> Iterator[ContextEntry]:
    """Yield ``ContextEntry(path, lstat)`` for everything under ``root`` that BuildKit would send.

    Sorted depth-first by name; see the module docstring for the rules. The filter is built
    (and pattern errors raised) before the first entry is produced.
    """
    context_filter = ContextFilter(excludes=excludes, includes=includes)
    return context_filter.walk(root)
