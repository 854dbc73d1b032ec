"""``COPY`` into a rootfs directory, with Docker's (BuildKit's) rules.

:func:`copy_into` takes sources already resolved by :mod:`lamina.build.context` (the build
context or a ``COPY --from`` root) and writes them under ``rootfs``:

- ``dest`` is relative to ``workdir`` unless absolute; it names a directory when it ends in
  ``/`` (or is ``.``/``..``); with more than one source it must (or already be a directory);
- a directory source copies its *contents*; a file source goes to ``dest`` itself, or to
  ``dest/<base name>`` when ``dest`` names or already is a directory;
- ``dest`` is resolved inside ``rootfs`` as if it were ``/`` (all links, also the last, are
  followed *within* rootfs, as BuildKit's ``fs.RootPath``), so an image symlink such as
  ``/dest -> /etc`` means ``<rootfs>/etc``. Below that point nothing is followed: entries are
  created with ``dir_fd`` + ``O_NOFOLLOW``, an existing symlink where a directory is needed is
  an error ("cannot copy to non-directory") and one where a file goes is replaced;
- missing parent directories are created 0755, owned by the ``--chown`` owner (else 0:0),
  dated ``timestamp`` when given (fsutil ``MkdirAll`` with the copy's chowner);
- permissions, setuid/setgid bits and atime/mtime are kept from the source (``timestamp``
  overrides times, ``--chmod`` the permissions); ownership is 0:0 for context sources and
  kept for ``--from`` roots, unless ``--chown``. A directory that already exists at the top of
  the destination keeps its metadata; existing directories below it take the source's;
- symlinks are copied as symlinks (never followed); regular files that are hard links of each
  other inside one copy stay hard links; FIFOs, sockets and devices are refused;
- ``--exclude`` patterns (dockerignore syntax) are matched against paths relative to each
  source; ``.dockerignore``-excluded paths are never seen;
- ``--parents`` keeps each source's path (as matched) below ``dest``; intermediate
  directories take the source directories' metadata. The ``/./`` pivot is not supported.
- ``link`` (``COPY --link``) changes nothing here: the step executor passes an empty layer
  directory as ``rootfs``, so image symlinks and existing directories play no part.

Ownership is only changed when running as root (rootless builds own everything). Data is copied
with ``copy_file_range`` (falling back to ``sendfile`` and then 1 MiB reads); never whole files
in memory. Not atomic: on error ``rootfs`` holds what was written so far.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.rootpath import split_path
from lamina.build.chown import ModeSpec, Owner, parse_chmod
from lamina.build.context import SourcePath, special_kind
from lamina.build.copytree import copy_data, copy_parents, copy_tree, copy_xattrs, fd_path
from lamina.dockerfile.dockerignore import PatternMatcher
from lamina.errors import BuildError

if TYPE_CHECKING:
    from lamina.build.reuse import LayerReuse, Wanted

__all__ = ["MULTI_SOURCE_ERROR", "CopyResult", "copy_into", "ensure_dir", "target_path"]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MULTI_SOURCE_ERROR = (
    "when using COPY with more than one source file, the destination must be a directory "
    "and end with a /"
)


@lazy_dataclass
class CopyResult:
    """Counts of what :func:`copy_into` wrote."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0


def target_path(dest: str, workdir: str) -> tuple[str, bool]:
    """(absolute clean destination, names-a-directory) for ``dest`` relative to ``workdir``."""
    full = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
    last = dest.rstrip("/").rsplit("/", 1)[-1]
    is_dir = dest.endswith("/") or last in (".", "..") or not dest
    return "/" + "/".join(split_path(full)), is_dir


@lazy_dataclass
class _Meta:
    """How copied nodes get their metadata."""

    owner: Owner | None
    chmod: ModeSpec | None
    timestamp_ns: int | None
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)


def copy_into(
    rootfs: Path,
    sources: Sequence[SourcePath],
    dest: str,
    *,
    workdir: str = "/",
    chown: Owner | tuple[int, int] | None = None,
    chmod: ModeSpec | str | int | None = None,
    parents: bool = False,
    excludes: Sequence[str] = (),
    link: bool = False,
    timestamp_ns: int | None = None,
    reuse: LayerReuse | None = None,
) -> CopyResult:
    """Copy ``sources`` to ``dest`` inside ``rootfs`` (see the module docstring for the rules).

    ``chown`` is numeric (resolve names with :func:`lamina.build.chown.resolve_chown` first);
    ``chmod`` an octal int, a spec string or a parsed ModeSpec. Raises BuildError for rule
    violations and unreadable sources. Sources are copied in order; later ones overwrite.
    ``reuse``: a directory source's files that a previous layer holds are left to it (see
    :mod:`lamina.build.reuse`; the caller applies it after unmounting, then every file is
    there). Counts include those files.
    """
    del link  # see the module docstring: the executor isolates --link copies
    if not rootfs.is_dir():
        raise BuildError(f"copying into {rootfs}: not a directory")
    owner = Owner(*chown) if isinstance(chown, tuple) else chown
    mode = parse_chmod(f"{chmod:o}") if isinstance(chmod, int) else chmod
    mode = parse_chmod(mode) if isinstance(mode, str) else mode
    copier = _Copier(Path(os.path.realpath(rootfs)), _Meta(owner, mode, timestamp_ns), excludes)
    copier.reuse = reuse
    full, names_dir = target_path(dest, workdir)
    if len(sources) > 1 and not names_dir and not copier.is_dir(full):
        raise BuildError(MULTI_SOURCE_ERROR)
    try:
        for source in sources:
            if parents and source.name:
                copy_parents(copier, source, full)
            else:
                copier.copy_source(source, full, names_dir)
    finally:
        copier.finish()
    return copier.result


class _Copier:
    """One ``COPY``: the rootfs, metadata rules, hard-link map and result counts."""

    def __init__(self, rootfs: Path, meta: _Meta, excludes: Sequence[str]) -> None:
        self.rootfs = rootfs
        self.meta = meta
        self.excludes = PatternMatcher(excludes, source="--exclude") if excludes else None
        self.inodes: dict[tuple[int, int], str] = {}
        self.result = CopyResult()
        self.dir_times: list[tuple[str, tuple[int, int]]] = []
        self.reuse: LayerReuse | None = None

    # -- destination -----------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """``path`` resolved inside rootfs (all links followed within it, as if it were ``/``).

        Missing components are allowed anywhere, also behind a symlink: once a component is
        missing, the rest is appended as is (it is created later).
        """
        from lamina.build.unpack import resolve_missing  # loads tarfile: not for cache hits

        try:
            return resolve_missing(self.rootfs, path)
        except OSError as exc:
            raise BuildError(f"resolving destination {path}: {_reason(exc)}") from exc

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` (resolved in rootfs) is an existing directory."""
        return self.resolve(path).is_dir()

    def open_dir(self, resolved: Path) -> int:
        """Open directory ``resolved`` (inside rootfs), creating missing components.

        Created components are 0755, owned and dated as the module docstring says (fsutil's
        ``MkdirAll``; this includes the top directory a directory source is copied into).
        The caller closes the fd.
        """
        parts = resolved.relative_to(self.rootfs).parts
        fd = os.open(self.rootfs, DIR_FLAGS)
        for i, comp in enumerate(parts):
            created = False
            try:
                os.mkdir(comp, 0o755, dir_fd=fd)
                created = True
            except FileExistsError:
                pass
            try:
                child = os.open(comp, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                where = "/" + "/".join(parts[: i + 1])
                raise BuildError(f"cannot copy to non-directory: {where}") from exc
            os.close(fd)
            fd = child
            if created:
                self.result.dirs += 1
                self.created_dir_meta(fd)
        return fd

    def created_dir_meta(self, fd: int) -> None:
        """Metadata of a parent directory that the copy had to create."""
        if self.meta.as_root:
            owner = self.meta.owner or Owner(0, 0)
            os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, 0o755)
        if self.meta.timestamp_ns is not None:
            stamp = self.meta.timestamp_ns
            self.dir_times.append((fd_path(fd), (stamp, stamp)))

    def owner(self, st: os.stat_result, preserve_owner: bool) -> Owner:
        """The owner a copy of ``st`` gets (as root: ``--chown``, kept, or 0:0)."""
        if self.meta.owner is not None:
            return self.meta.owner
        return Owner(st.st_uid, st.st_gid) if preserve_owner else Owner(0, 0)

    def wanted(self, st: os.stat_result, preserve_owner: bool) -> Wanted | None:
        """(permission bits, uid, gid, mtime_ns) a copied file of ``st`` gets; None when not
        root (the owner of a created file is then the filesystem's choice)."""
        if not self.meta.as_root:
            return None
        owner = self.owner(st, preserve_owner)
        mode = self.meta.chmod.apply(st.st_mode, is_dir=False) if self.meta.chmod else st.st_mode
        stamp = self.meta.timestamp_ns
        mtime = stamp if stamp is not None else st.st_mtime_ns
        return stat.S_IMODE(mode), owner.uid, owner.gid, mtime

    def apply_meta(self, fd: int, st: os.stat_result, *, preserve_owner: bool) -> None:
        """Owner, mode and times of a copied file or directory (open as ``fd``)."""
        if self.meta.as_root:
            owner = self.owner(st, preserve_owner)
            os.fchown(fd, owner.uid, owner.gid)
        is_dir = stat.S_ISDIR(st.st_mode)
        mode = self.meta.chmod.apply(st.st_mode, is_dir=is_dir) if self.meta.chmod else st.st_mode
        os.fchmod(fd, stat.S_IMODE(mode))
        stamp = self.meta.timestamp_ns
        times = (stamp, stamp) if stamp is not None else (st.st_atime_ns, st.st_mtime_ns)
        if is_dir:
            self.dir_times.append((fd_path(fd), times))
        else:
            os.utime(fd, ns=times)

    def finish(self) -> None:
        """Set directory times last, deepest first, once nothing more is written into them."""
        if self.reuse is not None:
            self.reuse.keep_dir_times(self.rootfs, self.dir_times)
        for path, times in sorted(self.dir_times, key=lambda e: -e[0].count("/")):
            fd = os.open(path, DIR_FLAGS)
            try:
                os.utime(fd, ns=times)
            finally:
                os.close(fd)
        self.dir_times.clear()

    # -- sources ---------------------------------------------------------------------------
    def copy_source(self, source: SourcePath, full: str, names_dir: bool) -> None:
        """Copy one source to ``full`` (a directory when ``names_dir``)."""
        target = self.resolve(full)
        if source.is_dir:
            fd = self.open_dir(target)
            try:
                copy_tree(self, source, fd)
            finally:
                os.close(fd)
            return
        if names_dir or target.is_dir():
            base = source.name.rsplit("/", 1)[-1] or os.path.basename(source.path)
            parent, name = target, base
        else:
            parent, name = target.parent, target.name
        fd = self.open_dir(parent)
        try:
            self.copy_entry(str(source.full_path), source.stat, fd, name, source)
        finally:
            os.close(fd)

    def excluded(self, rel: str, is_dir: bool) -> bool:
        """Whether ``--exclude`` drops ``rel`` (relative to the source), fsutil's rule."""
        return self.excludes is not None and self.excludes.drops(rel, is_dir)

    def copy_entry(
        self, src: str, st: os.stat_result, pfd: int, name: str, source: SourcePath,
        sub: str | None = None,
    ) -> None:  # fmt: skip
        """Copy one non-directory ``src`` (lstat ``st``) to ``name`` in directory ``pfd``;
        ``sub``: its path below a directory source (then ``reuse`` may take it)."""
        kind = special_kind(st.st_mode)
        if kind is not None:
            raise BuildError(
                f"cannot copy {_show(source, src)}: it is {kind}",
                hint="only regular files, directories and symlinks can be copied",
            )
        if not stat.S_ISREG(st.st_mode):  # files: O_EXCL finds an existing entry itself
            self._make_room(pfd, name)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), name, dir_fd=pfd)
            self._link_meta(pfd, name, st, source.preserve_owner)
            self.result.symlinks += 1
            return
        if (
            sub is not None
            and self.reuse is not None
            and self.reuse.linking
            and st.st_nlink == 1
            and stat.S_ISREG(st.st_mode)
            and self.reuse.offer(sub, st, pfd, name, self.wanted(st, source.preserve_owner))
        ):
            self.result.files += 1
            self.result.bytes += st.st_size
            return
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.inodes:
            first = self.inodes[key]
            self._make_room(pfd, name)
            os.link(first, name, dst_dir_fd=pfd, follow_symlinks=False)
            self.result.hardlinks += 1
            return
        self.copy_file(src, st, pfd, name, source, sub)
        if st.st_nlink > 1:
            self.inodes[key] = f"{fd_path(pfd)}/{name}"

    def _make_room(self, pfd: int, name: str) -> None:
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise BuildError(f"cannot replace directory {name!r} with a file")
        os.unlink(name, dir_fd=pfd)

    def _link_meta(self, pfd: int, name: str, st: os.stat_result, preserve_owner: bool) -> None:
        if self.meta.as_root:
            owner = self.owner(st, preserve_owner)
            os.chown(name, owner.uid, owner.gid, dir_fd=pfd, follow_symlinks=False)
        stamp = self.meta.timestamp_ns
        times = (stamp, stamp) if stamp is not None else (st.st_atime_ns, st.st_mtime_ns)
        os.utime(name, ns=times, dir_fd=pfd, follow_symlinks=False)

    def copy_file(
        self, src: str, st: os.stat_result, pfd: int, name: str, source: SourcePath,
        sub: str | None = None,
    ) -> None:  # fmt: skip
        """Copy regular file ``src`` to ``name`` in ``pfd`` (replacing a non-directory)."""
        try:
            in_fd = os.open(src, _READ)
        except OSError as exc:
            raise BuildError(f"reading {_show(source, src)}: {_reason(exc)}") from exc
        try:
            now = os.fstat(in_fd)
            if not stat.S_ISREG(now.st_mode):
                raise BuildError(f"cannot copy {_show(source, src)}: not a regular file")
            try:
                out_fd = os.open(name, _NEW_FILE, 0o600, dir_fd=pfd)
            except FileExistsError:  # replace what is there (never a directory)
                self._make_room(pfd, name)
                out_fd = os.open(name, _NEW_FILE, 0o600, dir_fd=pfd)
            try:
                self.result.bytes += copy_data(in_fd, out_fd, now.st_size)
                xattrs = copy_xattrs(in_fd, out_fd)
                self.apply_meta(out_fd, now, preserve_owner=source.preserve_owner)
            finally:
                os.close(out_fd)
            if sub is not None and self.reuse is not None and not xattrs:
                self.reuse.note(sub, now)
        finally:
            os.close(in_fd)
        self.result.files += 1


def _show(source: SourcePath, path: str) -> str:
    rel = os.path.relpath(path, source.root)
    return rel if rel != "." else "."


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def ensure_dir(
    rootfs: Path,
    path: str,
    *,
    chown: Owner | None = None,
    timestamp_ns: int | None = None,
) -> Path:
    """Create directory ``path`` inside ``rootfs`` as COPY creates parents; return its real path.

    ``path`` is resolved as if ``rootfs`` were ``/``; created components are 0755, owned by
    ``chown`` (else 0:0, as root) and dated ``timestamp_ns`` when given. Idempotent.
    """
    copier = _Copier(Path(os.path.realpath(rootfs)), _Meta(chown, None, timestamp_ns), ())
    target = copier.resolve(path)
    try:
        os.close(copier.open_dir(target))
    finally:
        copier.finish()
    return target
