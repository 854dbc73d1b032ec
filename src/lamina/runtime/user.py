"""Resolve a Dockerfile/``docker run`` ``USER`` string against the rootfs's passwd and group.

Accepted forms, as Docker: ``""`` (root), ``name``, ``uid``, ``name:group``, ``uid:gid``,
``name:gid``, ``uid:group``. Rules (those of Docker's user lookup):

- a numeric user need not exist in ``/etc/passwd`` (then gid 0 and home ``/`` unless a group
  is given); a name must exist, else ``unable to find user NAME: no matching entries in passwd
  file``;
- an explicit group replaces the primary gid and no supplementary groups are added; a group
  name must exist in ``/etc/group``; a numeric gid need not;
- without an explicit group, a user found *by name or uid in passwd* gets as supplementary
  groups every group that lists that user name as a member (in file order, no duplicates);
- ``home`` is the passwd home directory, ``/`` when the user is not in passwd.

Security: both files are opened inside the rootfs with :func:`lamina._internal.rootpath.
open_in_root` (symlinks resolved as if the rootfs were ``/``; never outside it), must be regular
files, and are read up to :data:`MAX_FILE` bytes. This module never writes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.rootpath import open_in_root
from lamina.errors import ContainerError

#: passwd/group files larger than this are refused
MAX_FILE = 4 << 20


@lazy_dataclass(frozen=True, kw_only=True)
class ExecUser:
    """The credentials a process runs with."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"
    name: str | None = None


@lazy_dataclass(frozen=True, kw_only=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@lazy_dataclass(frozen=True, kw_only=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def read_root_file(rootfs: Path, name: str, *, limit: int = MAX_FILE) -> bytes | None:
    """A small regular file inside ``rootfs`` (resolved safely), or None when it is missing.

    Raises ContainerError when it is not a regular file or is larger than ``limit``.
    """
    try:
        fd = open_in_root(rootfs, name, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ContainerError(f"reading {name} in {rootfs}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ContainerError(f"reading {name} in {rootfs}: not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ContainerError(f"reading {name} in {rootfs}: larger than {limit} bytes")
    return data


def _int_id(text: str) -> int | None:
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value <= 2**31 - 1 else None


def _parse_passwd(data: bytes) -> list[_Passwd]:
    entries = []
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) < 7 or line.startswith("#"):
            continue
        uid, gid = _int_id(fields[2]), _int_id(fields[3])
        if uid is None or gid is None:
            continue
        entries.append(_Passwd(name=fields[0], uid=uid, gid=gid, home=fields[5] or "/"))
    return entries


def _parse_group(data: bytes) -> list[_Group]:
    entries = []
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) < 4 or line.startswith("#"):
            continue
        gid = _int_id(fields[2])
        if gid is None:
            continue
        members = tuple(m for m in fields[3].split(",") if m)
        entries.append(_Group(name=fields[0], gid=gid, members=members))
    return entries


def _find_user(entries: list[_Passwd], user: str) -> _Passwd | None:
    uid = _int_id(user)
    for e in entries:
        if e.name == user or (uid is not None and e.uid == uid):
            return e
    return None


def resolve_user(rootfs: Path, user: str) -> ExecUser:
    """Resolve ``user`` (see the module docstring for forms and rules) inside ``rootfs``.

    Raises ContainerError with Docker's wording when a named user or group is missing.
    """
    user_part, sep, group_part = user.partition(":")
    if sep and not group_part:
        raise ContainerError(f"invalid user {user!r}: empty group")
    user_part = user_part or "0"
    passwd_data = read_root_file(rootfs, "/etc/passwd")
    entry = _find_user(_parse_passwd(passwd_data or b""), user_part)
    if entry is None:
        uid = _int_id(user_part)
        if uid is None:
            raise ContainerError(
                f"unable to find user {user_part}: no matching entries in passwd file"
            )
        base = ExecUser(uid=uid, gid=0, home="/")
    else:
        base = ExecUser(uid=entry.uid, gid=entry.gid, home=entry.home, name=entry.name)
    if not group_part and entry is None:
        return base
    groups = _parse_group(read_root_file(rootfs, "/etc/group") or b"")
    if group_part:
        return ExecUser(
            uid=base.uid, gid=_resolve_group(groups, group_part), home=base.home, name=base.name
        )
    extra: list[int] = []
    for g in groups:
        if base.name in g.members and g.gid not in extra:
            extra.append(g.gid)
    return ExecUser(
        uid=base.uid, gid=base.gid, additional_gids=tuple(extra), home=base.home, name=base.name
    )


def _resolve_group(groups: list[_Group], group: str) -> int:
    gid = _int_id(group)
    for g in groups:
        if g.name == group or (gid is not None and g.gid == gid):
            return g.gid
    if gid is None:
        raise ContainerError(f"unable to find group {group}: no matching entries in group file")
    return gid


def resolve_groups(rootfs: Path, groups: tuple[str, ...]) -> tuple[int, ...]:
    """gids for ``--group-add`` style names or numbers, resolved in the rootfs's group file."""
    if not groups:
        return ()
    entries = _parse_group(read_root_file(rootfs, "/etc/group") or b"")
    return tuple(_resolve_group(entries, g) for g in groups)
