"""Two-tree diff for the copying backend: ``lower_merged`` vs ``upper_merged`` -> changes -> tar.

The copying backend has no overlay upper dir: a build step runs in a full copy of the lower
tree, and the layer is whatever differs. :func:`diff_trees` finds it by ``lstat``.

Equality rule (documented, like Docker's naive diff, plus one content check):
- Entries differ if their type, permission bits (incl. setuid/setgid/sticky), uid, gid or
  xattrs (overlay metadata excluded) differ; symlinks if their targets differ; devices if their
  numbers differ; regular files if their size or ``st_mtime_ns`` differ.
- Directories also differ if their ``st_mtime_ns`` differs (as Docker's ``ChangesDirs``: a
  directory whose listing changed is reported ``C`` and carried in the layer with its new time).
- When size and mtime agree, content is compared byte by byte only if ``since_ns`` is given and
  the upper file's ctime is later than it (``since_ns`` = when the upper copy was finished, so
  any later write, even one that restored the mtime with ``touch -r``, bumped the ctime). Without
  ``since_ns``, equal size and mtime mean "unchanged" (Docker's vfs rule).

Order: depth first, children sorted bytewise by name (the writer's order). A directory that
became a non-directory yields ``C`` with ``replaced=True``: the layer then carries ``.wh.name``
and the new entry. Trees are walked without following symlinks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from lamina.snapshot.overlayfmt import read_xattrs
from lamina.snapshot.writer import TarEmitter, WrittenLayer, iter_tree

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class TreeChange:
    """One difference: ``path`` relative to the roots (no leading ``/``) and A/C/D."""

    path: str
    kind: Literal["A", "C", "D"]
    replaced: bool = False


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _same_content(a: str, b: str) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fa, fb = os.open(a, flags), os.open(b, flags)
    try:
        while True:
            ca, cb = os.read(fa, _CHUNK), os.read(fb, _CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True
    finally:
        os.close(fa)
        os.close(fb)


def same_entry(
    lfull: str, lst: os.stat_result, ufull: str, ust: os.stat_result, since_ns: int | None
) -> bool:
    """True if two entries are equal under the module's rule."""
    if stat.S_IFMT(lst.st_mode) != stat.S_IFMT(ust.st_mode):
        return False
    if (stat.S_IMODE(lst.st_mode), lst.st_uid, lst.st_gid) != (
        stat.S_IMODE(ust.st_mode),
        ust.st_uid,
        ust.st_gid,
    ):
        return False
    fmt = stat.S_IFMT(ust.st_mode)
    if fmt == stat.S_IFLNK and os.readlink(lfull) != os.readlink(ufull):
        return False
    if fmt in (stat.S_IFCHR, stat.S_IFBLK) and lst.st_rdev != ust.st_rdev:
        return False
    if fmt == stat.S_IFDIR and lst.st_mtime_ns != ust.st_mtime_ns:
        return False
    if fmt == stat.S_IFREG:
        if (lst.st_size, lst.st_mtime_ns) != (ust.st_size, ust.st_mtime_ns):
            return False
        if since_ns is not None and ust.st_ctime_ns > since_ns and not _same_content(lfull, ufull):
            return False
    return read_xattrs(lfull) == read_xattrs(ufull)


def diff_trees(
    lower_merged: Path, upper_merged: Path, *, since_ns: int | None = None
) -> Iterator[TreeChange]:
    """Yield the changes from ``lower_merged`` to ``upper_merged`` (see the module docstring)."""
    yield from _walk(os.fspath(lower_merged), os.fspath(upper_merged), "", since_ns)


def _walk(lower: str, upper: str, rel: str, since_ns: int | None) -> Iterator[TreeChange]:
    ldir = os.path.join(lower, rel) if rel else lower
    udir = os.path.join(upper, rel) if rel else upper
    lnames, unames = set(_listdir(ldir)), set(_listdir(udir))
    for name in sorted(lnames | unames, key=os.fsencode):
        child = f"{rel}/{name}" if rel else name
        if name not in unames:
            yield TreeChange(child, "D")
            continue
        ufull = os.path.join(upper, child)
        ust = os.lstat(ufull)
        udir_entry = stat.S_ISDIR(ust.st_mode)
        if name not in lnames:
            yield TreeChange(child, "A")
            if udir_entry:
                yield from (TreeChange(r, "A") for _f, r, _s in iter_tree(upper, child))
            continue
        lfull = os.path.join(lower, child)
        lst = os.lstat(lfull)
        ldir_entry = stat.S_ISDIR(lst.st_mode)
        if ldir_entry and udir_entry:
            if not same_entry(lfull, lst, ufull, ust, since_ns):
                yield TreeChange(child, "C")
            yield from _walk(lower, upper, child, since_ns)
        elif ldir_entry != udir_entry:
            yield TreeChange(child, "C", replaced=ldir_entry)
            if udir_entry:
                yield from (TreeChange(r, "A") for _f, r, _s in iter_tree(upper, child))
        elif not same_entry(lfull, lst, ufull, ust, since_ns):
            yield TreeChange(child, "C")


def write_diff_layer(
    lower_merged: Path,
    upper_merged: Path,
    out: BinaryIO,
    *,
    epoch: int | None = None,
    since_ns: int | None = None,
) -> WrittenLayer:
    """Stream the layer tar turning ``lower_merged`` into ``upper_merged`` to ``out``.

    Every changed entry is preceded by its parent directories (taken from the upper tree, so the
    overlay view keeps their modes); deletions become ``.wh.<name>`` entries owned like their
    parent directory. Deterministic under the writer's invariants; ``out`` is not closed.
    """
    upper = os.fspath(upper_merged)
    emitter = TarEmitter(out, epoch)
    emitted: set[str] = {""}

    def ensure_parents(rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent in emitted:
            return
        ensure_parents(parent)
        full = os.path.join(upper, parent)
        emitter.entry(full, parent, os.lstat(full))
        emitted.add(parent)

    for change in diff_trees(lower_merged, upper_merged, since_ns=since_ns):
        ensure_parents(change.path)
        parent, _, name = change.path.rpartition("/")
        if change.kind == "D" or change.replaced:
            pst = os.lstat(os.path.join(upper, parent) if parent else upper)
            emitter.whiteout(parent, name, pst)
        if change.kind != "D":
            full = os.path.join(upper, change.path)
            st = os.lstat(full)
            emitter.entry(full, change.path, st)
            if stat.S_ISDIR(st.st_mode):
                emitted.add(change.path)
    return emitter.close()
