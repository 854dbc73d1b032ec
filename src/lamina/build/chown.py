"""``COPY``/``ADD`` ``--chown`` and ``--chmod``: owner lookup in the image and mode specs.

``--chown=user[:group]`` follows BuildKit (``solver/llbsolver/file/user_linux.go`` and the
Dockerfile frontend):

- a numeric user is used as is and, without a group, also as the gid (``--chown=55`` is
  ``55:55``; Docker documents "a UID without GID will use the same numeric UID as the GID");
- a user name is looked up in the image's ``/etc/passwd`` and gives that entry's uid *and
  primary gid*; a group (name or number) then replaces the gid, names from ``/etc/group``;
- deviation, on purpose: BuildKit silently falls back to 0 for a name it cannot find; we raise
  ``BuildError("unable to find user NAME: no matching entries in passwd file")`` like the
  classic builder, since a silent root-owned file is a security surprise.

Both files are read inside the rootfs with :func:`lamina.runtime.user.read_root_file`, which
resolves symlinks as if the rootfs were ``/`` (never reading a host file) and only reads small
regular files.

``--chmod`` accepts octal (``755``, ``0644``, ``4755``; at most ``0o7777``) or symbolic modes
as in chmod(1): comma-separated clauses ``[ugoa]*([-+=]([rwxXst]*|[ugo]))+``. A clause without
``ugoa`` means ``a`` and, unlike chmod(1), ignores the umask (BuildKit has no umask here).
``X`` adds execute only to directories and to files that already have some execute bit.
Modes apply to every copied file and directory (not to parent directories that are created).
"""

from __future__ import annotations

import stat
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.regex import LazyPattern
from lamina.errors import BuildError, ContainerError
from lamina.runtime.user import read_root_file

__all__ = ["ModeSpec", "Owner", "parse_chmod", "resolve_chown"]

_MAX_ID = 2**32 - 2
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_CLAUSE = LazyPattern(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)\Z")
_ACTION = LazyPattern(r"([-+=])([ugo]|[rwxXst]*)")


@lazy_dataclass(frozen=True)
class Owner:
    """A numeric owner for copied files."""

    uid: int
    gid: int


def _numeric(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value > _MAX_ID:
        raise BuildError(f"invalid --chown id {text}: out of range")
    return value


def _lookup(data: bytes | None, name: str, min_fields: int) -> list[str] | None:
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= min_fields and fields[0] == name and not line.startswith("#"):
            return fields
    return None


def _read(rootfs: Path, name: str) -> bytes | None:
    try:
        return read_root_file(rootfs, name)
    except ContainerError as exc:
        raise BuildError(f"resolving --chown: {exc.message}") from exc


def resolve_chown(rootfs: Path, spec: str) -> Owner:
    """Resolve a ``--chown`` value against ``rootfs``'s passwd and group files.

    See the module docstring for the rules. Raises BuildError for an empty spec, an unknown
    user or group name, or an unparsable id. Reads at most the two files; never writes.
    """
    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise BuildError(f"invalid --chown value {spec!r}")
    uid = _numeric(user)
    gid: int | None = uid
    if uid is None:
        fields = _lookup(_read(rootfs, "/etc/passwd"), user, 7)
        if fields is None or _numeric(fields[2]) is None or _numeric(fields[3]) is None:
            raise BuildError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = _numeric(fields[2]), _numeric(fields[3])
    if group:
        gid = _numeric(group)
        if gid is None:
            fields = _lookup(_read(rootfs, "/etc/group"), group, 3)
            if fields is None or _numeric(fields[2]) is None:
                raise BuildError(f"unable to find group {group}: no matching entries in group file")
            gid = _numeric(fields[2])
    assert uid is not None and gid is not None
    return Owner(uid, gid)


@lazy_dataclass(frozen=True)
class ModeSpec:
    """A parsed ``--chmod``: ``octal`` (replaces the permission bits) or symbolic ``clauses``.

    ``text`` is the value as written (it goes into cache keys and history).
    """

    text: str
    octal: int | None = None
    clauses: tuple[tuple[int, tuple[tuple[str, str], ...]], ...] = ()

    def apply(self, mode: int, *, is_dir: bool) -> int:
        """The new mode for a node whose current ``st_mode`` is ``mode`` (type bits kept)."""
        kind = stat.S_IFMT(mode)
        if self.octal is not None:
            return kind | self.octal
        perm = stat.S_IMODE(mode)
        for who, actions in self.clauses:
            for op, what in actions:
                bits = _bits(what, who, perm, is_dir)
                if op == "+":
                    perm |= bits
                elif op == "-":
                    perm &= ~bits
                else:
                    perm = (perm & ~who) | bits
        return kind | perm


def _bits(what: str, who: int, perm: int, is_dir: bool) -> int:
    """Bits selected by ``what`` (``rwxXst`` letters or a copied class ``u``/``g``/``o``)."""
    if what in ("u", "g", "o"):
        shift = {"u": 6, "g": 3, "o": 0}[what]
        triple = (perm >> shift) & 0o7
        return (triple << 6 | triple << 3 | triple) & who & 0o777
    bits = 0
    for letter in what:
        if letter == "r":
            bits |= 0o444
        elif letter == "w":
            bits |= 0o222
        elif letter == "x" or (letter == "X" and (is_dir or perm & 0o111)):
            bits |= 0o111
        elif letter == "s":
            bits |= 0o6000
        elif letter == "t":
            bits |= 0o1000
    return bits & who


def parse_chmod(spec: str) -> ModeSpec:
    """Parse a ``--chmod`` value (octal or symbolic); raise BuildError if it is invalid."""
    if spec and all(c in "01234567" for c in spec):
        value = int(spec, 8)
        if value > 0o7777:
            raise BuildError(f"invalid --chmod value {spec!r}: mode out of range")
        return ModeSpec(spec, octal=value)
    clauses = []
    for clause in spec.split(","):
        match = _CLAUSE.match(clause)
        if match is None:
            raise BuildError(
                f"invalid --chmod value {spec!r}",
                hint="use an octal mode (0755) or symbolic clauses like u+x,g-w,o=r",
            )
        who = 0
        for letter in match.group(1) or "a":
            who |= 0o7777 if letter == "a" else _WHO[letter]
        actions = tuple((m.group(1), m.group(2)) for m in _ACTION.finditer(match.group(2)))
        clauses.append((who, actions))
    return ModeSpec(spec, clauses=tuple(clauses))
