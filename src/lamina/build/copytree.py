"""Copying a directory source's contents, and the byte-level copy primitives.

This is the recursive half of :mod:`lamina.build.copy`; :func:`copy_data` copies file data with
``copy_file_range``, then ``sendfile``, then 1 MiB reads (never a whole file in memory).

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

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from lamina.build.context import SourcePath
from lamina.dockerfile.dockerignore import ContextFilter
from lamina.errors import BuildError

if TYPE_CHECKING:
    from lamina.build.copy import _Copier
    from lamina.build.reuse import Fallback

__all__ = [
    "copy_data", "copy_parents", "copy_tree", "copy_xattrs", "fd_path", "iter_source",
    "source_filter",
]  # fmt: skip
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_CHUNK = 1 << 20
_SMALL = 1 << 16
_SKIP_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")

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


def _sorted_entries(top: str) -> list[os.DirEntry[str]]:
    """The entries of directory ``top`` sorted bytewise by name.

    ASCII names sort the same as str and as bytes (so does UTF-8 in general, but not the
    surrogate escapes of undecodable names), so only other names pay for ``fsencode``.
    """
    with os.scandir(top) as it:
        entries = list(it)
    if all(e.name.isascii() for e in entries):
        entries.sort(key=_entry_name)
    else:
        entries.sort(key=lambda e: os.fsencode(e.name))
    return entries


def _entry_name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _plain_walk(top: str, prefix: str) -> Iterator[tuple[str, os.stat_result, bool]]:
    """Unfiltered depth-first walk of ``top`` in byte order: (path, lstat, is_dir).

    Iterative (one generator frame however deep the tree); a directory is listed only after
    its own entry was yielded, as a recursive walk would.
    """
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [(prefix, iter(_sorted_entries(top)))]
    while stack:
        base, entries = stack[-1]
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            path = base + entry.name
            is_dir = stat.S_ISDIR(st.st_mode)
            yield path, st, is_dir
            if is_dir:
                stack.append((path + "/", iter(_sorted_entries(entry.path))))
                break
        else:
            stack.pop()


def iter_source(
    source: SourcePath, excluded: Callable[[str, bool], bool] | None
) -> Iterator[tuple[str, os.stat_result, bool]]:
    """(path relative to the source, lstat, is_dir) below directory ``source``, in walk order.

    ``.dockerignore`` is applied through :func:`source_filter` (a plain, faster walk when the
    source has no ignore patterns); ``excluded(rel, is_dir)`` (``--exclude``) prunes (None:
    nothing is excluded).
    """
    flt = source.filter
    walk: Iterator[tuple[str, os.stat_result, bool]]
    if flt is None or flt.excludes is None or not flt.excludes.patterns:
        walk = _plain_walk(str(source.full_path), "")
    else:
        prefix = f"{source.path}/" if source.path else ""
        walk = (
            (e.path[len(prefix) :], e.stat, e.is_dir)
            for e in source_filter(source).walk(source.root)
            if e.path.startswith(prefix)
        )
    if excluded is None:
        return walk
    return _pruned(walk, excluded)


def _pruned(
    walk: Iterator[tuple[str, os.stat_result, bool]], excluded: Callable[[str, bool], bool]
) -> Iterator[tuple[str, os.stat_result, bool]]:
    skip: str | None = None
    for sub, st, is_dir in walk:
        if skip is not None and sub.startswith(skip):
            continue
        if excluded(sub, is_dir):
            skip = f"{sub}/" if is_dir else skip
            continue
        yield sub, st, is_dir


def _enter(copier: _Copier, pfd: int, name: str, sub: str) -> int:
    """Open (creating it 0700 for now) the destination directory ``name`` in ``pfd``
    (``sub``: its path below the source)."""
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
        if copier.reuse is not None:
            copier.reuse.fresh.add(sub)
    return fd


def copy_tree(copier: _Copier, source: SourcePath, top_fd: int) -> None:
    """Copy everything below directory ``source`` into the open directory ``top_fd``.

    With ``copier.reuse``, files are offered to it first (path below the source given).
    """
    stack: list[tuple[str, int, os.stat_result]] = []
    base = f"{source.full_path}/"
    reuse = copier.reuse
    if reuse is not None:
        fallback = _late_copy(copier, source)
        if not reuse.begin(str(source.full_path), fd_path(top_fd), fallback):
            reuse = None
    try:
        excluded = copier.excluded if copier.excludes is not None else None
        for sub, st, is_dir in iter_source(source, excluded):
            parent, _, name = sub.rpartition("/")
            while stack and stack[-1][0] != parent:
                _leave(copier, stack.pop(), source)
            pfd = stack[-1][1] if stack else top_fd
            if is_dir:
                stack.append((sub, _enter(copier, pfd, name, sub), st))
            else:
                copier.copy_entry(base + sub, st, pfd, name, source, sub if reuse else None)
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


def _late_copy(copier: _Copier, source: SourcePath) -> Fallback:
    """Copy a file the reuse could not link after all (it was counted when offered)."""

    def copy(src: str, dfd: int, name: str, sub: str) -> None:
        st = os.lstat(src)
        copier.copy_file(src, st, dfd, name, source, sub)
        copier.result.files -= 1
        copier.result.bytes -= st.st_size

    return copy


def copy_parents(copier: _Copier, source: SourcePath, full: str) -> None:
    """``--parents``: copy ``source`` to ``full/<its matched path>``."""
    parts = source.name.split("/")
    fd = copier.open_dir(copier.resolve(full))
    try:
        for i, comp in enumerate(parts[:-1]):
            src_dir = source.root.joinpath(*parts[: i + 1])
            st = os.lstat(src_dir)
            is_dir = stat.S_ISDIR(st.st_mode)
            new_fd = _child_dir(copier, fd, comp, st if is_dir else None, source.preserve_owner)
            os.close(fd)
            fd = new_fd
        if source.is_dir:
            sub = _child_dir(copier, fd, parts[-1], source.stat, source.preserve_owner)
            try:
                copy_tree(copier, source, sub)
            finally:
                os.close(sub)
        else:
            copier.copy_entry(str(source.full_path), source.stat, fd, parts[-1], source)
    finally:
        os.close(fd)


def _child_dir(
    copier: _Copier, pfd: int, name: str, st: os.stat_result | None, preserve_owner: bool
) -> int:
    """Open (or create, with ``st``'s metadata or the created-parent rule) ``name``."""
    try:
        os.mkdir(name, 0o755, dir_fd=pfd)
    except FileExistsError:
        with contextlib.suppress(OSError):
            return os.open(name, _DIR_FLAGS, dir_fd=pfd)
        raise BuildError(f"cannot copy to non-directory: {name}") from None
    fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
    copier.result.dirs += 1
    if st is not None:
        copier.apply_meta(fd, st, preserve_owner=preserve_owner)
    else:
        copier.created_dir_meta(fd)
    return fd


def fd_path(fd: int) -> str:
    """The path of an open directory fd (via /proc)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def copy_data(in_fd: int, out_fd: int, size_hint: int | None = None) -> int:
    """Copy ``in_fd`` to ``out_fd`` from their current offsets to EOF; returns bytes copied.

    A file whose ``size_hint`` (its fstat size) is below 64 KiB is read with one ``read`` of
    one byte more and written; when that read returns exactly ``size_hint`` bytes the file is
    done. Otherwise (larger files, or one that grew or gave a short read) the rest goes through
    ``copy_file_range`` (reflink/in-kernel), then ``sendfile``, then 1 MiB reads.
    """
    total = 0
    if size_hint is not None and size_hint < _SMALL:
        data = os.read(in_fd, size_hint + 1)
        view = memoryview(data)
        while view:
            view = view[os.write(out_fd, view) :]
        total = len(data)
        if total == size_hint:
            return total
    for method in (os.copy_file_range, os.sendfile):
        moved = 0
        try:
            while True:
                if method is os.sendfile:
                    n = os.sendfile(out_fd, in_fd, None, 1 << 30)
                else:
                    n = os.copy_file_range(in_fd, out_fd, 1 << 30)
                if n == 0:
                    return total
                total += n
                moved += n
        except OSError as exc:
            if moved or exc.errno not in (
                errno.EXDEV,
                errno.ENOSYS,
                errno.EINVAL,
                errno.EOPNOTSUPP,
            ):
                raise
    while chunk := os.read(in_fd, _CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(out_fd, view) :]
        total += len(chunk)
    return total


def copy_xattrs(in_fd: int, out_fd: int) -> bool:
    """Copy extended attributes (not overlay or SELinux ones); failures are ignored, as BuildKit.
    True when the source has (or may have: unlistable) any to copy."""
    try:
        names = os.listxattr(in_fd)
    except OSError as exc:
        return exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP)
    found = False
    for key in names:
        if key.startswith(_SKIP_XATTRS):
            continue
        found = True
        with contextlib.suppress(OSError):
            os.setxattr(out_fd, key, os.getxattr(in_fd, key))
    return found
