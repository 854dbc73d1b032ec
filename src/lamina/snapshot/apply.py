"""Apply an (uncompressed) OCI layer tar to a directory, safely (image-spec "Applying Changesets").

Three targets:

- ``mode="overlay"``: ``target`` is the empty overlay2 ``diff`` dir of this layer alone. OCI
  whiteouts become overlay whiteouts: ``.wh.name`` -> a 0/0 character device ``name`` (or, for
  rootless when ``mknod`` is refused, an empty file with ``user.overlay.whiteout`` and its
  parent marked ``user.overlay.opaque=x``, the kernel's "xwhiteout" form); ``.wh..wh..opq`` ->
  ``trusted.overlay.opaque=y`` on the directory (``user.overlay.opaque`` when rootless, for
  mounts with ``userxattr``).
- ``mode="merged"``: ``target`` is a full rootfs (lower layers already applied). ``.wh.name``
  deletes ``name``; an opaque marker deletes the directory's lower children. Whiteouts apply to
  lower layers only: entries this layer writes are never deleted by its own whiteouts, in
  whatever order they appear in the tar (``.wh.d`` next to a directory ``d`` of this layer
  makes ``d`` opaque, before or after it).
- ``mode="plain"``: ``target`` is any existing directory receiving an ordinary tar (``docker cp
  - CTR:DIR``). ``.wh.`` names are ordinary files (nothing is ever deleted), a directory is never
  replaced by a non-directory nor the reverse (Docker's ``NoOverwriteDirNonDir``, which ``docker
  cp`` sets), and a parent component that is a symlink or a file is refused, whoever wrote it.

Safety invariants (every operation stays inside ``target``):

- Parents are walked one component at a time with ``openat(O_NOFOLLOW|O_DIRECTORY)``. A parent
  component that is a symlink or a non-directory written *by this layer* raises
  :class:`~lamina.errors.UnsafeArchive` (a well-formed layer never has entries under its own
  symlinks). One left by a *lower* layer (merged mode) is replaced by a directory — exactly what
  the overlay mount of the same layers shows (an upper directory hides a lower non-directory) —
  so both modes give identical trees.
- The final component is never followed: an entry over an existing symlink replaces the link.
  Existing entries are replaced, except directory over directory (merged, keeping children).
- Hard links must point at a path this layer wrote (as overlay2, whose ``diff`` holds only this
  layer); they link the entry itself, never what a symlink points to.
- ``trusted.overlay.*``/``user.overlay.*`` xattrs in the tar are dropped (they would let a
  layer forge overlay redirects); xattrs the kernel refuses are skipped and reported (the
  metadata policy is :mod:`lamina.snapshot.metadata`'s).
- Devices need root (and not ``rootless``) and are skipped (and reported) otherwise; a 0/0
  character device in a tar is skipped in both modes (it would silently act as a whiteout in
  overlay mode). FIFOs are created for everyone.
- Setuid/setgid bits are kept. The store keeps ``overlay2/`` at 0700/0710 so nobody else can
  reach such files through a layer's ``diff`` dir.

Directories a member implies (missing parents) are created 0755, owned by the caller, with
the member's mtime (deterministic), as Docker does (except the time). Ownership is set when
running as root (not rootless) or in a user namespace that maps sub-ids (then the owners
are sub-ids on the host); other rootless files belong to the caller.
Directory modes and mtimes are applied at the end (deepest first), so read-only directories
and children do not disturb them. Not atomic: on error the target is left partly written, and
the caller (the store) discards it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import BinaryIO, Literal

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.log import get_logger
from lamina.errors import UnsafeArchive
from lamina.oci import whiteout
from lamina.snapshot.metadata import MetadataWriter
from lamina.snapshot.overlayfmt import make_whiteout
from lamina.snapshot.tarstream import BLK, CHR, DIR, FIFO, LINK, SYMLINK, Member, TarReader

log = get_logger(__name__)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHE_MAX = 256


def _short(path: str) -> str:
    """``path`` for messages: long (hostile) names are cut in the middle."""
    return path if len(path) <= 160 else f"{path[:60]}...{path[-60:]}"


@lazy_dataclass(frozen=True, kw_only=True)
class ApplyResult:
    """What :func:`apply_layer` did: tar bytes consumed, members seen, members skipped."""

    size: int
    entries: int
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def skipped_devices(self) -> int:
        """How many device nodes were skipped (not root)."""
        return sum(1 for _p, reason in self.skipped if reason.startswith("device"))


def apply_layer(
    stream: BinaryIO,
    target: Path | int,
    *,
    mode: Literal["overlay", "merged", "plain"],
    rootless: bool | None = None,
    what: str | None = None,
) -> ApplyResult:
    """Apply the uncompressed layer tar ``stream`` to ``target`` (see the module docstring).

    ``rootless=None`` means "rootless unless euid is 0". Reads ``stream`` to EOF; the caller
    closes it. Raises UnsafeArchive for hostile or corrupt layers. ``what`` starts error
    messages (default ``applying layer to TARGET``). ``target`` may be an open directory fd
    (used through a duplicate; the caller keeps and closes it).
    """
    if mode not in ("overlay", "merged", "plain"):
        raise ValueError(f"unknown apply mode {mode!r}")
    what = what or f"applying layer to {target}"
    applier = _Applier(target, mode, os.geteuid() != 0 if rootless is None else rootless, what)
    try:
        reader = TarReader(stream, what)
        entries = 0
        for member in reader:
            entries += 1
            applier.apply(member, reader)
        applier.finish()
        if applier.skipped:
            log.warning("%s: skipped %d entries", what, len(applier.skipped))
        return ApplyResult(size=reader.consumed, entries=entries, skipped=applier.skipped)
    finally:
        applier.close()


class _Applier:
    def __init__(self, target: Path | int, mode: str, rootless: bool, what: str) -> None:
        self.mode = mode
        self.rootless = rootless
        self.skipped: list[tuple[str, str]] = []
        self.meta = MetadataWriter(rootless=rootless, skipped=self.skipped)
        self.devices = os.geteuid() == 0 and not rootless
        self.opaque_key = ("user" if rootless else "trusted") + ".overlay.opaque"
        self.root_fd = os.dup(target) if isinstance(target, int) else os.open(target, DIR_FLAGS)
        self.cache: dict[str, int] = {"": self.root_fd}
        self.written: set[str] = set()
        self.dirs: dict[str, tuple[int, int]] = {}  # path -> (mode, mtime_ns), applied last
        self.whited: set[str] = set()  # overlay mode: whiteouts this layer created
        self.mtime_ns = 0  # of the current member; given to directories it implies
        self.what = what

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache = {}

    # -- parents ---------------------------------------------------------------------------
    def _forget_dirs(self, under: str) -> None:
        """Drop cached dir fds and pending dir metadata for ``under`` and everything below."""
        prefix = f"{under}/"
        for key in [k for k in self.cache if k and (k == under or k.startswith(prefix))]:
            os.close(self.cache.pop(key))
        for key in [k for k in self.dirs if k == under or k.startswith(prefix)]:
            del self.dirs[key]

    def _mark(self, path: str) -> None:
        """Record ``path`` and its ancestors as written by this layer."""
        while path and path not in self.written:
            self.written.add(path)
            path = path.rpartition("/")[0]

    def dir_fd(self, path: str) -> int:
        """An fd for directory ``path``, creating missing dirs (0755); never follows a link.

        Iterative: starts from the deepest cached ancestor and opens one component at a time.
        """
        fd = self.cache.get(path)
        if fd is not None:
            return fd
        comps = path.split("/")
        k = len(comps) - 1
        while k and "/".join(comps[:k]) not in self.cache:
            k -= 1
        fd = self.cache["/".join(comps[:k])]
        for i in range(k, len(comps)):
            sub = "/".join(comps[: i + 1])
            fd = self._open_child(fd, comps[i], sub)
            self.cache[sub] = fd
        return fd

    def _open_child(self, pfd: int, name: str, path: str) -> int:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if path in self.whited:  # "delete x, then write x/y": a fresh, opaque x
                os.unlink(name, dir_fd=pfd)
                os.mkdir(name, 0o755, dir_fd=pfd)
                self._mark(path)
                self.dirs[path] = (0o755, self.mtime_ns)
                fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
                os.setxattr(fd, self.opaque_key, b"y")
                return fd
            if self.mode != "merged" or path in self.written:
                raise UnsafeArchive(
                    f"{self.what}: {_short(path)!r} is not a directory in this layer "
                    "(a symlink or file); refusing to write beneath it"
                ) from None
            # A lower layer's symlink/file: an upper directory hides it (overlay semantics).
            os.unlink(name, dir_fd=pfd)
            self.skipped.append((path, "replaced a lower-layer non-directory by a directory"))
        os.mkdir(name, 0o755, dir_fd=pfd)
        self._mark(path)
        self.dirs[path] = (0o755, self.mtime_ns)  # implied: deterministic, not "now"
        return os.open(name, DIR_FLAGS, dir_fd=pfd)

    def remove(self, pfd: int, name: str, path: str) -> None:
        """Remove ``name`` (any type, recursively, never following links) if it exists."""
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if self.mode == "plain":
                raise UnsafeArchive(
                    f"{self.what}: cannot overwrite directory {_short(path)!r} with a non-directory"
                )
            self._forget_dirs(path)
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)

    # -- entries ---------------------------------------------------------------------------
    def apply(self, m: Member, reader: TarReader) -> None:
        """Apply one member (its data is read from ``reader``)."""
        if len(self.cache) > _CACHE_MAX:  # only here: fds held below stay valid per entry
            for key in [k for k in self.cache if k and not m.path.startswith(f"{k}/")]:
                os.close(self.cache.pop(key))
        self.mtime_ns = m.mtime_ns
        parent, _, base = m.path.rpartition("/")
        if not m.path:
            if m.type != DIR:
                raise UnsafeArchive(f"{self.what}: root entry is not a directory")
            self._dir_meta(self.root_fd, m, "")
            return
        if self.mode != "plain" and whiteout.is_whiteout(base):
            self._whiteout(parent, base, m)
            return
        if m.type == CHR and m.devmajor == 0 and m.devminor == 0:
            self.skipped.append((m.path, "character device 0/0 (an overlay whiteout) in a tar"))
            return
        if m.type in (CHR, BLK) and not self.devices:
            self.skipped.append((m.path, "device node needs root"))
            return
        pfd = self.dir_fd(parent)
        if m.type == DIR:
            self._mkdir(pfd, base, m)
        elif m.type == LINK:
            self._hardlink(pfd, base, m)
        elif m.type == SYMLINK:
            self._create(pfd, base, m, lambda: os.symlink(m.linkname, base, dir_fd=pfd))
            self.meta.apply_path(pfd, base, m, symlink=True)
        elif m.type in (CHR, BLK, FIFO):
            kind = {CHR: stat.S_IFCHR, BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}[m.type]
            dev = os.makedev(m.devmajor, m.devminor)
            self._create(pfd, base, m, lambda: os.mknod(base, kind | 0o600, dev, dir_fd=pfd))
            self.meta.apply_path(pfd, base, m, symlink=False)
        else:
            self._file(pfd, base, m, reader)
        self._mark(m.path)

    def _create(self, pfd: int, base: str, m: Member, make: Callable[[], object]) -> None:
        """Run ``make()``; if the name exists, remove it (never following it) and retry."""
        try:
            make()
        except FileExistsError:
            self.remove(pfd, base, m.path)
            make()

    def _file(self, pfd: int, base: str, m: Member, reader: TarReader) -> None:
        try:
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        except FileExistsError:
            self.remove(pfd, base, m.path)
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            reader.copy_to_fd(fd)
            self.meta.apply_fd(fd, m)
        finally:
            os.close(fd)

    def _mkdir(self, pfd: int, base: str, m: Member) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(base, dir_fd=pfd).st_mode):
                if self.mode == "plain":
                    raise UnsafeArchive(
                        f"{self.what}: cannot overwrite non-directory {_short(m.path)!r} "
                        "with a directory"
                    ) from None
                self.remove(pfd, base, m.path)
                os.mkdir(base, 0o700, dir_fd=pfd)
        fd = self.dir_fd(m.path)
        if m.path in self.whited:  # the whiteout deleted the lower dir: hide its children
            os.setxattr(fd, self.opaque_key, b"y")
        self._dir_meta(fd, m, m.path)

    def _dir_meta(self, fd: int, m: Member, path: str) -> None:
        self.meta.owner_fd(fd, m)
        self.dirs[path] = (m.mode, m.mtime_ns)

    def _hardlink(self, pfd: int, base: str, m: Member) -> None:
        if m.linkname not in self.written or m.linkname == m.path:
            link = f"hard link {_short(m.path)!r} -> {_short(m.linkname)!r}"
            raise UnsafeArchive(
                f"{self.what}: {link}: the target is not an earlier entry of this layer"
            )
        tparent, _, tbase = m.linkname.rpartition("/")
        tfd = self.dir_fd(tparent)
        try:
            self._create(
                pfd,
                base,
                m,
                lambda: os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False),
            )
        except OSError as exc:  # EPERM for a directory, ENOENT if it was whited out
            link = f"hard link {_short(m.path)!r} -> {_short(m.linkname)!r}"
            raise UnsafeArchive(f"{self.what}: {link}: {exc.strerror}") from None

    # -- whiteouts -------------------------------------------------------------------------
    def _whiteout(self, parent: str, base: str, m: Member) -> None:
        path = m.path
        if whiteout.is_opaque(base):
            self._opaque(parent)
            return
        if base.startswith(whiteout.META_PREFIX):
            self.skipped.append((path, "unsupported .wh..wh. meta entry"))
            return
        name = whiteout.whiteout_target(base)
        if name is None:
            raise UnsafeArchive(f"{self.what}: invalid whiteout name {_short(path)!r}")
        victim = f"{parent}/{name}" if parent else name
        if victim in self.written:
            # Whiteouts hide lower layers only: what this layer wrote stays, but a directory it
            # wrote must no longer show lower children (the same as an opaque marker).
            if stat.S_ISDIR(os.lstat(name, dir_fd=self.dir_fd(parent)).st_mode):
                self._opaque(victim)
            return
        pfd = self.dir_fd(parent)
        if self.mode == "merged":
            self.remove(pfd, name, victim)
            return
        self.remove(pfd, name, victim)
        self.whited.add(victim)
        make_whiteout(pfd, name, rootless=self.rootless, opaque_key=self.opaque_key)
        # Owner and time of the .wh. member, so committing this diff reproduces the same tar.
        if self.meta.chown:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, ns=(m.mtime_ns, m.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _opaque(self, parent: str) -> None:
        fd = self.dir_fd(parent)
        if parent:
            self._mark(parent)
        if self.mode == "overlay":
            if not parent:
                raise UnsafeArchive(f"{self.what}: opaque marker on the root directory")
            os.setxattr(fd, self.opaque_key, b"y")
        else:
            self._purge(fd, parent)

    def _purge(self, fd: int, path: str) -> None:
        """Delete everything under ``path`` that this layer did not write."""
        for name in sorted(os.listdir(fd)):
            child = f"{path}/{name}" if path else name
            if child not in self.written:
                self.remove(fd, name, child)
            elif stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                self._purge(self.dir_fd(child), child)

    # -- end -------------------------------------------------------------------------------
    def finish(self) -> None:
        """Set directory modes and times, deepest first (children do not touch them after)."""
        for path in sorted(self.dirs, key=lambda p: (-p.count("/") - bool(p), p)):
            mode, mtime_ns = self.dirs[path]
            fd = self.dir_fd(path)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
