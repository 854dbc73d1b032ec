"""Copying a directory source's contents (the recursive half of :mod:`lamina.build.copy`).

The walk is :class:`~lamina.dockerfile.contextwalk.ContextFilter`'s: depth-first, names in byte
order, never following links, with the context's ``.dockerignore`` applied and an include
pattern that confines it to the source (so ignored paths are never seen, and directories that
are excluded but hold re-included paths are created when their first child is copied, exactly
as BuildKit transfers them). ``--exclude`` patterns are matched relative to the source.

Destination directories are opened with ``O_NOFOLLOW`` relative to their parent's fd: an
existing symlink or file where a directory goes raises BuildError ("cannot copy to
non-directory"). A directory's metadata (owner, mode, times) is applied when the walk leaves
it, so its mtime is not disturbed by its children. Every fd opened here is closed here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lamina.build.context import SourcePath
from lamina.dockerfile.dockerignore import ContextFilter
from lamina.errors import BuildError

if TYPE_CHECKING:
    from lamina.build.copy import _Copier

__all__ = ["copy_tree", "source_filter"]

_GLOB_SPECIALS = frozenset("*?[]\\^")


def _escape(path: str) -> str:
    """``path`` as a pattern that matches only itself."""
    return "".join(f"\\{c}" if c in _GLOB_SPECIALS else c for c in path)


def source_filter(source: SourcePath) -> ContextFilter:
    """A filter over ``source.root`` that yields only ``source`` and what lies below it."""
    excludes: list[str] | None = None
    if source.filter is not None and source.filter.excludes is not None:
        excludes = [("!" if p.exclusion else "") + p.text for p in source.filter.excludes.patterns]
    includes = [_escape(source.path)] if source.path else None
    return ContextFilter(excludes=excludes, includes=includes)


def _enter(copier: _Copier, pfd: int, name: str) -> int:
    """Open (creating it 0700 for now) the destination directory ``name`` in ``pfd``."""
    created = False
    try:
        os.mkdir(name, 0o700, dir_fd=pfd)
        created = True
    except FileExistsError:
        pass
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    except OSError as exc:
        raise BuildError(f"cannot copy to non-directory: {name}") from exc
    if created:
        copier.result.dirs += 1
    return fd


def copy_tree(copier: _Copier, source: SourcePath, top_fd: int) -> None:
    """Copy everything below directory ``source`` into the open directory ``top_fd``."""
    prefix = f"{source.path}/" if source.path else ""
    stack: list[tuple[str, int, os.stat_result]] = []
    skip: str | None = None
    try:
        for entry in source_filter(source).walk(source.root):
            if not entry.path.startswith(prefix):
                continue  # the source itself or one of its ancestors
            sub = entry.path[len(prefix) :]
            if skip is not None and sub.startswith(skip):
                continue
            if copier.excluded(sub, entry.is_dir):
                skip = f"{sub}/" if entry.is_dir else skip
                continue
            parent, _, name = sub.rpartition("/")
            while stack and stack[-1][0] != parent:
                _leave(copier, stack.pop(), source)
            pfd = stack[-1][1] if stack else top_fd
            if entry.is_dir:
                stack.append((sub, _enter(copier, pfd, name), entry.stat))
            else:
                copier.copy_entry(source.root / entry.path, entry.stat, pfd, name, source)
        while stack:
            _leave(copier, stack.pop(), source)
    finally:
        for _sub, fd, _st in stack:
            os.close(fd)


def _leave(copier: _Copier, frame: tuple[str, int, os.stat_result], source: SourcePath) -> None:
    _sub, fd, st = frame
    try:
        copier.apply_meta(fd, st, preserve_owner=source.preserve_owner)
    finally:
        os.close(fd)
