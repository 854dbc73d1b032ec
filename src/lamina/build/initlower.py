"""The mount points a RUN step's ``init`` lower must hold, found before the overlay is mounted.

A RUN needs ``/proc``, ``/dev``, ``/sys``, ``/etc/hosts``, ``/etc/resolv.conf`` and
``/etc/hostname`` to exist in its rootfs; those the image lacks are created in the step's
``init`` lower (see :mod:`lamina.build.workspace`), never in the layer. Looking for them in the
mounted tree means mounting twice when one is missing (Debian minbase has no ``/etc/hosts``):
:func:`plan_init` answers the same question from the chain's diff dirs, so the overlay is
mounted once with a complete ``init``.

Invariant (why this is safe): a path is planned only when the diff dirs settle its absence
beyond doubt — no layer holds an entry there, or the topmost entry is a 0/0 character device
(a whiteout every overlay implementation honours) — and every directory on the way is a plain
directory: no symlink, no opaque or redirect marker in any layer it merges. Anything else
(a symlink such as ``/etc/resolv.conf -> ../run/...``, an opaque dir, a file in the middle)
is left alone here; :meth:`StepFS.provide_mountpoints` still checks the mounted tree after the
bundle is written and adds what remains (then remounting). A wrong "missing" would hide an
image file under an empty placeholder, so doubt always means "not planned".
Parent directories created in ``init`` get the metadata of the topmost layer's directory:
that is what the merged tree shows, so a later copy-up keeps the image's modes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

#: overlay markers that change what a directory merges (either xattr namespace)
_MARKERS = ("overlay.opaque", "overlay.redirect")

#: (path relative to the rootfs, is a directory, lstat of each leading component or None)
InitEntry = tuple[str, bool, list[os.stat_result | None]]


class _Unsettled(Exception):
    """The diff dirs alone do not settle a path: leave it to the mounted-tree check."""


def _marked(path: str) -> bool:
    """Whether directory ``path`` carries an opaque or redirect marker (unreadable: assume so)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return True
    return any(name.endswith(_MARKERS) for name in names)


def _step(
    layers: list[str], comp: str, last: bool
) -> tuple[bool, list[str], os.stat_result | None]:
    """Look ``comp`` up in the directories ``layers`` (one merged dir, top first).

    Returns (exists, the directories it merges when it is a directory, its topmost lstat).
    """
    below: list[str] = []
    top: os.stat_result | None = None
    for layer in layers:
        path = os.path.join(layer, comp)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _Unsettled(path) from exc
        if stat.S_ISDIR(st.st_mode):
            if _marked(path):
                raise _Unsettled(path)
            below.append(path)
            top = top or st
            continue
        if top is not None:
            break  # a non-directory under a directory ends the merge
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return False, [], None  # a whiteout: absent in the merged tree
        if stat.S_ISLNK(st.st_mode) or not last:
            raise _Unsettled(path)  # resolution (or ENOTDIR) is the mounted check's business
        return True, [], st
    return top is not None, below, top


def _lookup(roots: list[str], rel: str) -> tuple[bool, list[os.stat_result | None]]:
    """(exists in the merged tree, lstat of each leading component or None)."""
    parts = rel.split("/")
    layers = roots
    metas: list[os.stat_result | None] = []
    for i, comp in enumerate(parts):
        last = i == len(parts) - 1
        exists, layers, st = _step(layers, comp, last)
        if not exists:
            return False, metas + [None] * (len(parts) - 1 - len(metas))
        if not last:
            if not layers:
                raise _Unsettled(rel)  # a file in the middle: ENOTDIR, reported when mounted
            metas.append(st)
    return True, metas


def plan_init(lowers: Sequence[Path], points: Sequence[tuple[str, bool]]) -> list[InitEntry]:
    """The (path, is_dir, parent metadata) entries of ``points`` that ``init`` must provide.

    ``lowers``: the chain's diff dirs, top first; ``points``: absolute mount points with
    whether each is a directory. Only paths known to be missing are returned (module doc);
    the order of ``points`` is kept. Reads only; nothing is created.
    """
    roots = [str(p) for p in lowers]
    if any(_marked(root) for root in roots):
        return []
    plan: list[InitEntry] = []
    for dest, is_dir in points:
        parts = [c for c in dest.split("/") if c and c != "."]
        if not parts or ".." in parts:
            continue
        rel = "/".join(parts)
        try:
            exists, metas = _lookup(roots, rel)
        except _Unsettled:
            continue
        if not exists:
            plan.append((rel, is_dir, metas))
    return plan
