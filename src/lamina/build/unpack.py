"""Archives for the builder: sniffing compressed tars and extracting them like ``ADD`` does.

Used by ``ADD`` (local archives are unpacked into the destination) and by tar build contexts.

Detection (:func:`is_archive`) follows BuildKit's ``isArchivePath``: a *regular* file whose
content, after undoing gzip, bzip2, xz or zstd (sniffed by magic bytes, never by name), starts
with a valid tar header. An empty tar (only zero blocks) is not an archive, as in Go.

Extraction (:func:`extract_tar`) follows BuildKit's ``applyRootArchive`` (the ADD unpacker):

- names are cleaned by the strict layer reader (:class:`~lamina.snapshot.tarstream.TarReader`):
  a leading ``/`` is dropped and a ``..`` that climbs out raises UnsafeArchive;
- the destination is the root: symlinks met on the way (in the archive or already in the
  destination) are resolved as if ``dest`` were ``/`` (:mod:`lamina._internal.rootpath`), so
  nothing is ever written outside ``dest``; a non-directory entry replaces what was there
  (never following a final symlink); a directory entry merges with an existing directory;
- whiteout names (``.wh.*``) are taken literally: ADD is not a layer apply, and BuildKit's
  unpacker has no whiteout handling either;
- hard links must name an existing non-directory inside ``dest``;
- devices and FIFOs are refused (BuildKit: "unsupported tar entry") or, with
  ``special="skip"`` (build contexts), skipped;
- ownership is the tar header's, or ``owner`` when given (``--chown``); missing parents are
  created 0755 and owned by root, as BuildKit; xattrs are not restored (BuildKit neither).
  Ownership is only changed when running as root. Directory times are set last.

Not atomic: on error ``dest`` holds what was written so far.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, Literal, cast

from lamina._internal.compression import open_decompressed
from lamina.build.chown import Owner
from lamina.errors import BuildError
from lamina.snapshot.tarstream import DIR, LINK, SYMLINK, Member, TarReader

__all__ = ["extract_tar", "is_archive", "open_archive", "resolve_missing"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_archive(raw: BinaryIO, what: str = "archive") -> tuple[BinaryIO, str]:
    """Wrap ``raw`` in a decompressor chosen by magic bytes; returns (stream, kind).

    ``kind`` is ``gzip``, ``bzip2``, ``xz``, ``zstd`` or ``none``; corruption and bomb checks
    are the layer codecs' own. The caller closes ``raw``.
    """
    return open_decompressed(raw, what, extended=True)


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a regular file holding a (compressed) tar; never follows a link.

    Reads at most the first decompressed tar block; never raises for unreadable content.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        import tarfile  # only for its header parser: the extractor below does not use it

        try:
            stream, _kind = open_archive(cast(BinaryIO, f), f"reading {path.name}")
            block = stream.read(tarfile.BLOCKSIZE)
            tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except Exception:  # any codec or header failure means "not an archive"
            return False
    return True


def extract_tar(
    stream: BinaryIO,
    dest: Path,
    *,
    owner: Owner | None = None,
    special: Literal["error", "skip"] = "error",
    what: str = "extracting archive",
) -> int:
    """Extract the uncompressed tar ``stream`` into the existing directory ``dest``.

    Returns the number of members written. See the module docstring for the rules. Raises
    UnsafeArchive for hostile or corrupt archives and BuildError for refused entries. The
    caller closes ``stream``.
    """
    reader = TarReader(stream, what)
    extractor = _Extractor(dest, owner, special, what)
    try:
        for member in reader:
            extractor.add(member, reader)
        extractor.finish()
    finally:
        extractor.close()
    return extractor.count


def resolve_missing(root: Path, path: str, *, max_hops: int = 255) -> Path:
    """Resolve ``path`` in ``root`` as if it were ``/``, allowing missing components anywhere.

    Like :func:`lamina._internal.rootpath.resolve_in_root` (which refuses a missing middle
    component), but once a component is missing the rest is appended lexically.

    Raises OSError(ENOTDIR) when a non-directory is met in the middle and ELOOP after
    ``max_hops`` symlinks. The result is always ``root`` or below it.
    """
    pending = [c for c in path.split("/") if c not in ("", ".")][::-1]
    done: list[str] = []
    hops = 0
    while pending:
        comp = pending.pop()
        if comp == "..":
            if done:
                done.pop()
            continue
        try:
            st = os.lstat(root.joinpath(*done, comp))
        except FileNotFoundError:
            done.append(comp)
            for rest in pending[::-1]:  # nothing exists below: ".." is lexical from here
                if rest != "..":
                    done.append(rest)
                elif done:
                    done.pop()
            break
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > max_hops:
                raise OSError(errno.ELOOP, "too many symlinks", path)
            target = os.readlink(root.joinpath(*done, comp))
            if target.startswith("/"):
                done.clear()
            pending.extend([c for c in target.split("/") if c not in ("", ".")][::-1])
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory", "/" + "/".join([*done, comp]))
        done.append(comp)
    return root.joinpath(*done)


def _resolve(dest: Path, name: str, what: str) -> Path:
    try:
        return resolve_missing(dest, name)
    except OSError as exc:
        raise BuildError(f"{what}: {name!r}: {(exc.strerror or str(exc)).lower()}") from exc


class _Extractor:
    """One extraction: parent fds are opened per member (after root-relative resolution)."""

    def __init__(self, dest: Path, owner: Owner | None, special: str, what: str) -> None:
        self.dest = dest
        self.owner = owner
        self.special = special
        self.what = what
        self.chown = os.geteuid() == 0
        self.dirs: list[tuple[Path, int]] = []
        self.count = 0
        self.root_fd = os.open(dest, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self.root_fd)

    def _parent_fd(self, rel: str) -> int:
        """Open (creating 0755 root-owned dirs) the already-resolved ``rel``; caller closes."""
        fd = os.dup(self.root_fd)
        for comp in rel.split("/") if rel else []:
            try:
                os.mkdir(comp, 0o755, dir_fd=fd)
                if self.chown:
                    os.chown(comp, 0, 0, dir_fd=fd, follow_symlinks=False)
                os.chmod(comp, 0o755, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            try:
                child = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                raise BuildError(f"{self.what}: {rel!r}: not a directory") from exc
            os.close(fd)
            fd = child
        return fd

    def _locate(self, m: Member) -> tuple[int, str]:
        """(parent fd, base name) for member ``m``: parents resolved inside ``dest``."""
        parent, _, base = m.path.rpartition("/")
        target = _resolve(self.dest, m.path if m.type == DIR else parent, self.what)
        rel = target.relative_to(self.dest).as_posix()
        rel = "" if rel == "." else rel
        if m.type == DIR:
            if not rel:
                return os.dup(self.root_fd), ""
            parent, _, base = rel.rpartition("/")
            return self._parent_fd(parent), base
        return self._parent_fd(rel), base

    def add(self, m: Member, reader: TarReader) -> None:
        """Write one member (reading its data from ``reader``)."""
        if not m.path:
            return
        if m.type not in (DIR, LINK, SYMLINK) and not m.is_file:
            if self.special == "skip":
                return
            raise BuildError(f"{self.what}: unsupported tar entry {m.path!r} (device or fifo)")
        pfd, base = self._locate(m)
        try:
            if not base:
                return
            self._clear(pfd, base, keep_dir=m.type == DIR)
            uid, gid = (self.owner.uid, self.owner.gid) if self.owner else (m.uid, m.gid)
            if m.type == DIR:
                self._mkdir(pfd, base, m, uid, gid)
            elif m.type == SYMLINK:
                os.symlink(m.linkname, base, dir_fd=pfd)
                if self.chown:
                    os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
                times = (m.mtime_ns, m.mtime_ns)
                os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
            elif m.type == LINK:
                self._hardlink(pfd, base, m)
            else:
                self._file(pfd, base, m, reader, uid, gid)
            self.count += 1
        finally:
            os.close(pfd)

    def _clear(self, pfd: int, base: str, *, keep_dir: bool) -> None:
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)

    def _mkdir(self, pfd: int, base: str, m: Member, uid: int, gid: int) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        try:
            if self.chown:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode)
        finally:
            os.close(fd)
        self.dirs.append((_resolve(self.dest, m.path, self.what), m.mtime_ns))

    def _file(self, pfd: int, base: str, m: Member, reader: TarReader, uid: int, gid: int) -> None:
        fd = os.open(base, _NEW_FILE, 0o600, dir_fd=pfd)
        try:
            reader.copy_to_fd(fd)
            if self.chown:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)

    def _hardlink(self, pfd: int, base: str, m: Member) -> None:
        tparent, _, tbase = m.linkname.rpartition("/")
        resolved = _resolve(self.dest, tparent, self.what).relative_to(self.dest).as_posix()
        tfd = self._parent_fd("" if resolved == "." else resolved)
        try:
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except OSError as exc:
            reason = "is a directory" if exc.errno == errno.EPERM else exc.strerror
            raise BuildError(
                f"{self.what}: hard link {m.path!r} -> {m.linkname!r}: {reason}"
            ) from exc
        finally:
            os.close(tfd)

    def finish(self) -> None:
        """Set directory times, last written first (children no longer touch them)."""
        for path, mtime_ns in reversed(self.dirs):
            fd = os.open(path, _DIR_FLAGS)
            try:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
