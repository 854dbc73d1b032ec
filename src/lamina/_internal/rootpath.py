"""Resolve paths inside a root directory as if that root were ``/`` (a "securejoin").

Untrusted names (tar members, Dockerfile ``COPY`` destinations, ``docker cp`` paths) must never
reach outside the directory they are meant for. Two tools live here:

- :func:`split_path` lexically cleans a name into components, with ``..`` clamped at the root
  (the way ``filepath.Clean("/" + name)`` treats it) or refused (``strict=True``).
- :func:`resolve_in_root` follows symlinks *as if* ``root`` were ``/``: absolute link targets
  restart at ``root``, ``..`` never climbs above it, and the number of hops is bounded (ELOOP).
  It walks with directory file descriptors (``openat`` with ``O_NOFOLLOW`` per component), so it
  works for paths longer than ``PATH_MAX`` and does not depend on ``realpath`` of a long string.
- :func:`open_in_root` does the same and returns an open fd to the result (no race between the
  check and the use of the path).

Invariants: every function returns a location inside ``root``; none of them creates anything.
Races with concurrent writers inside ``root`` can at worst produce a different location
*inside* ``root``, never one outside, because each step is relative to an fd already inside.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: Symlink hops allowed before giving up with ELOOP (Linux allows 40 per lookup).
MAX_HOPS = 255

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_path(name: str, *, strict: bool = False) -> list[str]:
    """Split ``name`` into clean components relative to the root.

    ``.`` and empty components are dropped; a leading ``/`` is ignored (absolute names are taken
    relative to the root). ``..`` pops the previous component, and at the root it is dropped —
    unless ``strict`` is true, in which case a ``..`` that would climb above the root raises
    ``ValueError``. A NUL byte always raises ``ValueError``.
    """
    if "\x00" in name:
        raise ValueError("name contains a NUL byte")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts:
                parts.pop()
            elif strict:
                raise ValueError("name climbs above the root with '..'")
            continue
        parts.append(comp)
    return parts


def _open_dir(fd: int, name: str) -> int:
    return os.open(name, _DIR_FLAGS, dir_fd=fd)


def _walk(root_fd: int, name: str, max_hops: int) -> tuple[int, list[str], str | None]:
    """Walk ``name`` from ``root_fd``; returns (parent fd, resolved parent comps, last name).

    The last component is not followed if it is a symlink *and* nothing follows it; the caller
    decides. The returned fd is owned by the caller. ``last`` is None when the result is the
    root itself.
    """
    pending = _raw_components(name)[::-1]  # a stack: next component on top; ".." kept
    stack: list[int] = [os.dup(root_fd)]
    comps: list[str] = []
    hops = 0
    try:
        while pending:
            comp = pending.pop()
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    comps.pop()
                continue
            if not pending:
                fd = stack.pop()
                for other in stack:
                    os.close(other)
                stack = []
                return fd, comps, comp
            try:
                st = os.lstat(comp, dir_fd=stack[-1])
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > max_hops:
                    raise OSError(errno.ELOOP, "too many symlinks", name)
                target = os.readlink(comp, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    comps.clear()
                pending.extend(_raw_components(target)[::-1])
                continue
            stack.append(_open_dir(stack[-1], comp))  # ENOENT/ENOTDIR propagate
            comps.append(comp)
        fd = stack.pop()
        for other in stack:
            os.close(other)
        stack = []
        return fd, comps, None
    finally:
        for other in stack:
            os.close(other)


def _raw_components(target: str) -> list[str]:
    """Components of a link target, keeping ``..`` (resolved against the walk, not lexically)."""
    if "\x00" in target:
        raise OSError(errno.EINVAL, "symlink target contains NUL")
    return [c for c in target.split("/") if c not in ("", ".")]


def resolve_in_root(root: Path, name: str, *, max_hops: int = MAX_HOPS) -> Path:
    """The path ``name`` denotes when ``root`` is ``/``, with every symlink resolved.

    ``..`` is applied to the path resolved so far (after symlinks), as the kernel does, and
    is clamped at ``root``. Missing trailing components are allowed (the result names where
    they *would* be); a missing or non-directory component in the middle raises the
    ``OSError`` from the walk. The final component is followed if it is a symlink. The result
    is always ``root`` or below it.
    """
    root_fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        parts: list[str] = []
        current = name
        for _ in range(max_hops + 1):
            fd, comps, last = _walk(root_fd, current, max_hops)
            try:
                if last is None:
                    parts = comps
                    break
                try:
                    st = os.lstat(last, dir_fd=fd)
                except FileNotFoundError:
                    parts = [*comps, last]
                    break
                if not stat.S_ISLNK(st.st_mode):
                    parts = [*comps, last]
                    break
                target = os.readlink(last, dir_fd=fd)
                base = "" if target.startswith("/") else "/".join(comps)
                current = f"{base}/{target}"
            finally:
                os.close(fd)
        else:
            raise OSError(errno.ELOOP, "too many symlinks", name)
        return root.joinpath(*parts) if parts else root
    finally:
        os.close(root_fd)


def open_in_root(root: Path, name: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``name`` resolved inside ``root`` (as :func:`resolve_in_root`); returns an fd.

    The final component is opened with ``O_NOFOLLOW`` after the walk has resolved every symlink,
    so the open itself never leaves the root. The caller closes the fd.
    """
    resolved = resolve_in_root(root, name)
    rel = resolved.relative_to(root).as_posix()
    root_fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        if rel == ".":
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=root_fd)
        fd, _comps, last = _walk(root_fd, rel, 0)
        try:
            assert last is not None
            return os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)
