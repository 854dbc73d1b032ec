"""``docker diff`` for containers: A (added), C (changed), D (deleted), sorted by path.

Semantics (matching the captures of Docker's overlay2 driver):
- An upper entry is ``A`` if no lower layer shows that path, else ``C``; a directory present in
  both with the same mode, owner and mtime is not reported by itself.
- A whiteout (0/0 character device, or a file marked ``*.overlay.whiteout``) is ``D``.
- An opaque directory (``*.overlay.opaque=y``) reports every child the lower layers show there
  and the upper does not hold as ``D``.
- The parent directory of every ``A``/``D`` is reported as ``C`` (never ``/`` itself).
- Output is sorted by path (bytewise), one entry per path; ``kind`` uses the Engine API codes
  0 = C, 1 = A, 2 = D.

Lower layers are overlay ``diff`` dirs, top first (the order of overlay's ``lowerdir`` and of
``docker inspect``'s ``LowerDir``); their whiteouts and opaque markers are honoured, and they
are walked with ``O_NOFOLLOW`` so a symlink in a lower layer is never followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lamina.snapshot.diff import diff_trees
from lamina.snapshot.overlayfmt import is_overlay_whiteout, overlay_xattr
from lamina.snapshot.writer import iter_tree

CHANGED, ADDED, DELETED = 0, 1, 2
_LETTER = {CHANGED: "C", ADDED: "A", DELETED: "D"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True, order=True)
class Change:
    """One change: absolute ``path`` ("/etc/group") and ``kind`` (0 = C, 1 = A, 2 = D)."""

    path: str
    kind: int

    @property
    def letter(self) -> str:
        """``"C"``, ``"A"`` or ``"D"`` as ``docker diff`` prints."""
        return _LETTER[self.kind]

    def to_json(self) -> dict[str, object]:
        """The Engine API form ``{"Path": ..., "Kind": ...}``."""
        return {"Path": self.path, "Kind": self.kind}

    def __str__(self) -> str:
        return f"{self.letter} {self.path}"


def _finish(found: dict[str, int]) -> list[Change]:
    """Add parents of A/D as C and sort bytewise."""
    for path, kind in list(found.items()):
        if kind == CHANGED:
            continue
        parent = path.rpartition("/")[0]
        if parent and parent not in found:
            found[parent] = CHANGED
    return [Change(f"/{p}", k) for p, k in sorted(found.items(), key=lambda i: os.fsencode(i[0]))]


def changes_from_trees(
    lower_merged: Path, upper_merged: Path, *, since_ns: int | None = None
) -> list[Change]:
    """Changes between two full trees (the copying backend), by :func:`diff.diff_trees`."""
    codes = {"A": ADDED, "C": CHANGED, "D": DELETED}
    found: dict[str, int] = {}
    for change in diff_trees(lower_merged, upper_merged, since_ns=since_ns):
        found[change.path] = codes[change.kind]
    return _finish(found)


class _Lowers:
    """Lookups through a stack of overlay lower dirs (top first), honouring whiteouts."""

    def __init__(self, lowers: list[Path]) -> None:
        self.roots = [os.fspath(p) for p in lowers]

    def _walk(self, root: str, comps: list[str]) -> tuple[str, os.stat_result | None, bool]:
        """In one lower: ("found"|"hidden"|"absent", stat, opaque-ancestor-seen)."""
        fd = os.open(root, _DIR_FLAGS)
        opaque = False
        try:
            for i, comp in enumerate(comps):
                try:
                    st = os.lstat(comp, dir_fd=fd)
                except FileNotFoundError:
                    return "absent", None, opaque
                proc = f"/proc/self/fd/{fd}/{comp}"
                if is_overlay_whiteout(proc, st):
                    return "hidden", None, opaque
                if i == len(comps) - 1:
                    return "found", st, opaque
                if not stat.S_ISDIR(st.st_mode):
                    return "hidden", None, opaque
                opaque = opaque or overlay_xattr(proc, "opaque") == b"y"
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return "found", os.fstat(fd), opaque
        finally:
            os.close(fd)

    def lookup(self, rel: str) -> os.stat_result | None:
        """The lstat of ``rel`` as the lower stack shows it, or None."""
        comps = rel.split("/")
        for root in self.roots:
            state, st, opaque = self._walk(root, comps)
            if state == "found":
                return st
            if state == "hidden" or opaque:
                return None
        return None

    def children(self, rel: str) -> set[str]:
        """Names the lower stack shows in directory ``rel``."""
        shown: set[str] = set()
        hidden: set[str] = set()
        for root in self.roots:
            state, st, opaque = self._walk(root, rel.split("/"))
            if state == "hidden" or (st is not None and not stat.S_ISDIR(st.st_mode)):
                break
            if state == "found":
                base = os.path.join(root, rel)
                for name in os.listdir(base):
                    full = os.path.join(base, name)
                    if is_overlay_whiteout(full, os.lstat(full)):
                        hidden.add(name)
                    elif name not in hidden:
                        shown.add(name)
                if overlay_xattr(base, "opaque") == b"y":
                    break
            if opaque:
                break
        return shown


def changes_from_upper(upper: Path, lowers: list[Path]) -> list[Change]:
    """Changes recorded in an overlay ``upper`` dir over ``lowers`` (top first)."""
    stack = _Lowers(lowers)
    found: dict[str, int] = {}
    for full, rel, st in iter_tree(os.fspath(upper)):
        if is_overlay_whiteout(full, st):
            found[rel] = DELETED
            continue
        lst = stack.lookup(rel)
        if lst is None:
            found[rel] = ADDED
        elif not (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(lst.st_mode) and _same_dir(st, lst)):
            found[rel] = CHANGED
        if stat.S_ISDIR(st.st_mode) and overlay_xattr(full, "opaque") == b"y" and lst is not None:
            present = set(os.listdir(full))
            for name in stack.children(rel) - present:
                found[f"{rel}/{name}"] = DELETED
    return _finish(found)


def _same_dir(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) == (
        b.st_mode,
        b.st_uid,
        b.st_gid,
        b.st_mtime_ns,
    )


__all__ = ["ADDED", "CHANGED", "DELETED", "Change", "changes_from_trees", "changes_from_upper"]
