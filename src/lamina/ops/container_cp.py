"""``docker cp`` in both directions, never following a symlink out of the container's rootfs.

The container side is always reached through directory *file descriptors*: the directory
named by the user is resolved with :func:`lamina._internal.rootpath.open_in_root` (symlinks
resolved as if the rootfs were ``/``), and everything below it is opened with ``openat`` and
``O_NOFOLLOW``, one component at a time. A process in a running container that swaps a
directory for a symlink during the copy (the CVE-2018-15664 race) therefore cannot redirect
a read or a write to the host: the worst it gets is ELOOP/ENOTDIR. Symlinks found in the
tree are copied as symlinks in both directions (Docker's default, without ``-L``);
device nodes, fifos and sockets are skipped.

``-L`` (``follow_link``, Docker's ``--follow-link``) follows SRC itself when it is a symlink,
and only SRC: links below it stay links. The copy keeps SRC's name (Docker's "rebase"). A
container SRC is resolved with :func:`lamina._internal.rootpath.resolve_in_root`, every hop
inside the rootfs (an absolute target restarts at the rootfs, ``..`` stops there), then opened
as above; a host SRC is resolved on the host (the caller's own files).

Destination rules (Docker's): an existing directory receives the source under its own name;
otherwise the destination's parent must exist and the source is copied as the destination.
A source ending in ``/.`` copies the directory's contents.

Tar streams (``-`` on one side, as ``docker cp``):

- ``cp CTR:SRC -`` writes a tar of SRC to the given stream: the top entry is named after SRC's
  basename (a file, a directory and everything below it, or a symlink as a symlink); ``SRC/.``
  (or ``/``) gives the directory's entries without a top entry. PAX format (long names, big
  ids), numeric owners, modes, whole-second mtimes, xattrs and hard links (within the tar) are
  kept, through the project's layer writer (:class:`lamina.snapshot.writer.TarEmitter`); the
  walk holds one directory fd per level and opens every child with ``O_NOFOLLOW``, so no link
  is followed out of the rootfs. Files stream through a 1 MiB buffer.
- ``cp - CTR:DIR`` extracts a tar read from a stream into DIR, which must be an existing
  directory (a symlink to one is resolved inside the rootfs). The hardened layer extractor does
  the work (:func:`lamina.snapshot.apply_layer`, ``mode="plain"``), given the directory's fd
  (never a path that could be swapped meanwhile), so nothing is written outside it: ``..``,
  absolute names (taken relative to DIR), links out and writes beneath a symlink are refused
  in one line. ``.wh.`` entries are ordinary files (``docker cp`` applies no whiteouts
  either): nothing in the container is deleted, and a directory is never replaced by a file
  or the reverse. Owners are kept (sub-ids when rootless). On a refused archive the members
  before it stay extracted, as with Docker.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from pathlib import Path
from typing import BinaryIO

from lamina._internal.rootpath import open_in_root, resolve_in_root
from lamina.errors import ContainerError, NotFound, StorageError, UsageError
from lamina.ops import container_state as cs
from lamina.snapshot.writer import TarEmitter
from lamina.store import Store

CHUNK = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_target(arg: str) -> tuple[str | None, str]:
    """``CTR:/path`` -> ("CTR", "/path"); a host path -> (None, path)."""
    if ":" in arg and not arg.startswith(("/", ".")):
        ctr, _, path = arg.partition(":")
        return ctr, path or "/"
    return None, arg


def cp(
    store: Store,
    src: str,
    dst: str,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    follow_link: bool = False,
) -> None:
    """Copy between a container and the host (exactly one side must be a container).

    A host side of ``-`` is a tar stream: ``stdout`` receives it, or ``stdin`` provides it.
    ``follow_link`` follows a symlink SRC (``-L``); it has no effect on a ``-`` SRC.
    """
    sctr, spath = split_target(src)
    dctr, dpath = split_target(dst)
    if (sctr is None) == (dctr is None):
        raise ContainerError("cp: exactly one of SRC and DEST must be CONTAINER:PATH")
    ref = sctr if sctr is not None else dctr
    assert ref is not None
    if (dst == "-" and stdout is None) or (src == "-" and stdin is None):
        raise UsageError("cp: '-' needs a stream to write the tar to or read it from")
    cid = store.containers.resolve(ref)
    with store.containers.locked(cid):
        rootfs = cs.ensure_mounted(store, cid)
        try:
            if sctr is not None and dst == "-":
                assert stdout is not None
                copy_out_tar(rootfs, spath, stdout, follow_link=follow_link)
            elif sctr is not None:
                copy_out(rootfs, spath, Path(dpath), follow_link=follow_link,
                         into_dir=dpath.endswith("/"))  # fmt: skip
            elif src == "-":
                assert stdin is not None
                copy_in_tar(stdin, rootfs, dpath, label=dst)
            else:
                copy_in(spath, rootfs, dpath, follow_link=follow_link)
        finally:
            cs.unmount_unless_running(store, cid)


def _open_parent(rootfs: Path, path: str) -> tuple[int, str]:
    """(fd of the directory holding ``path`` inside rootfs, last component)."""
    clean = posixpath.normpath("/" + path)
    parent, name = posixpath.split(clean)
    try:
        fd = open_in_root(rootfs, parent, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"cp: no such directory in the container: {parent}") from None
    return fd, name


def _follow(rootfs: Path, path: str) -> str:
    """The container path ``path`` denotes with every symlink resolved inside ``rootfs`` (as
    if it were ``/``): always a path in the container, never a host path outside it."""
    try:
        real = resolve_in_root(rootfs, path).relative_to(rootfs).as_posix()
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"cp: no such file or directory in the container: {path}") from None
    except OSError as exc:
        raise ContainerError(f"cp: following {path} in the container: {exc.strerror}") from None
    return "/" if real == "." else "/" + real


def copy_out(
    rootfs: Path, src: str, dest: Path, *, follow_link: bool = False, into_dir: bool = False
) -> None:
    """Container ``src`` -> host ``dest`` (``follow_link``: a symlink ``src`` is followed).
    ``into_dir``: DEST was written with a trailing ``/``, so (as ``docker cp``) a file is
    copied only into an existing directory, never to a new file of that name."""
    contents = src.endswith("/.")
    where = src.removesuffix("/.")
    pfd, name = _open_parent(rootfs, _follow(rootfs, where) if follow_link else where)
    try:
        if not name:  # the root itself
            name, sfd_parent = ".", pfd
        else:
            sfd_parent = pfd
        try:
            st = os.stat(name, dir_fd=sfd_parent, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"cp: no such file or directory in the container: {src}") from None
        if stat.S_ISDIR(st.st_mode) and dest.exists() and not dest.is_dir():
            raise ContainerError(f"cp: cannot overwrite non-directory {dest} with directory {src}")
        if into_dir and not dest.is_dir() and not stat.S_ISDIR(st.st_mode):
            if dest.exists() or dest.is_symlink():
                raise ContainerError(f"cp: destination {dest} is not a directory")
            raise NotFound(f"cp: destination directory {dest} does not exist")
        if dest.is_dir() and not contents:
            target = dest / (posixpath.basename(src.rstrip("/")) or "root")
        else:
            target = dest
            if not target.parent.is_dir():
                raise NotFound(f"cp: destination directory {target.parent} does not exist")
        _out_entry(sfd_parent, name, st, target, merge=contents)
    finally:
        os.close(pfd)


def _out_entry(dfd: int, name: str, st: os.stat_result, target: Path, *, merge: bool) -> None:
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            if not target.is_dir() or target.is_symlink():
                target.unlink()
        os.symlink(os.readlink(name, dir_fd=dfd), target)
    elif stat.S_ISREG(st.st_mode):
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            if target.is_symlink():
                target.unlink()
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                _copy_fd(src, out)
                os.fchmod(out, stat.S_IMODE(st.st_mode))
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(src)
    elif stat.S_ISDIR(st.st_mode):
        sub = os.open(name, _DIR, dir_fd=dfd)
        try:
            if not merge or not target.is_dir():
                target.mkdir(mode=0o700, exist_ok=True)
            for child in sorted(os.listdir(sub)):
                cst = os.stat(child, dir_fd=sub, follow_symlinks=False)
                _out_entry(sub, child, cst, target / child, merge=False)
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(sub)


def copy_in(src: Path | str, rootfs: Path, dest: str, *, follow_link: bool = False) -> None:
    """Host ``src`` -> container ``dest`` (``follow_link``: a symlink ``src`` is followed, on
    the host, and copied under its own name). Give ``SRC/.`` as a string: ``Path`` drops the
    ``/.`` that asks for the directory's contents."""
    contents = str(src).endswith("/.")
    src = Path(src)
    try:
        st = os.stat(src, follow_symlinks=follow_link)
    except FileNotFoundError:
        raise NotFound(f"cp: no such file or directory: {src}") from None
    except OSError as exc:
        raise ContainerError(f"cp: {src}: {exc.strerror}") from None
    real = Path(os.path.realpath(src)) if follow_link else src
    clean = posixpath.normpath("/" + dest)
    into_dir = False
    with contextlib.suppress(OSError):
        into_dir = resolve_in_root(rootfs, clean).is_dir()
    if into_dir:
        dfd, name = open_in_root(rootfs, clean, os.O_RDONLY | os.O_DIRECTORY), src.name
        if contents:
            name = "."
    elif dest.endswith("/") and not stat.S_ISDIR(st.st_mode):  # as docker cp: must exist
        raise NotFound(f"cp: destination directory {dest} does not exist in the container")
    else:
        dfd, name = _open_parent(rootfs, clean)
    try:
        if name == ".":
            for child in sorted(os.listdir(real)):
                _in_entry(real / child, os.lstat(real / child), dfd, child)
        else:
            _in_entry(real, st, dfd, name)
    finally:
        os.close(dfd)


def _in_entry(src: Path, st: os.stat_result, dfd: int, name: str) -> None:
    """Create ``name`` below the dir fd ``dfd`` from host ``src`` (never following links)."""
    with contextlib.suppress(FileNotFoundError):
        old = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not (stat.S_ISDIR(old.st_mode) and stat.S_ISDIR(st.st_mode)):
            if stat.S_ISDIR(old.st_mode):
                raise ContainerError(f"cp: cannot overwrite directory {name} with a non-directory")
            os.unlink(name, dir_fd=dfd)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), name, dir_fd=dfd)
    elif stat.S_ISREG(st.st_mode):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(name, flags, 0o600, dir_fd=dfd)
        try:
            with src.open("rb") as f:
                _copy_fd(f.fileno(), out)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    elif stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=dfd)
        try:
            sub = os.open(name, _DIR, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ContainerError(f"cp: {name} changed into a symlink during the copy") from None
            raise
        try:
            for child in sorted(os.listdir(src)):
                _in_entry(src / child, os.lstat(src / child), sub, child)
            os.fchmod(sub, stat.S_IMODE(st.st_mode))
            os.utime(sub, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(sub)


def copy_out_tar(rootfs: Path, src: str, out: BinaryIO, *, follow_link: bool = False) -> int:
    """Container ``src`` -> a tar stream on ``out`` (see the module docstring); its size.
    With ``follow_link`` a symlink ``src`` is followed; the top entry keeps ``src``'s name."""
    clean = posixpath.normpath("/" + src)
    real = _follow(rootfs, src) if follow_link else clean
    emitter = TarEmitter(out, None)
    if src.endswith(("/.", "/")) or real == "/":
        try:  # the directory itself, a symlink to one resolved inside the rootfs
            dfd = open_in_root(rootfs, real, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"cp: no such directory in the container: {src}") from None
        prefix = "" if src.endswith("/.") or clean == "/" else posixpath.basename(clean)
        try:
            if prefix:
                _emit(emitter, dfd, ".", prefix, os.fstat(dfd))
            _emit_below(emitter, dfd, prefix)
        finally:
            os.close(dfd)
        return emitter.close().size
    pfd, name = _open_parent(rootfs, real)
    top = posixpath.basename(clean)  # SRC's own name, also when -L followed it elsewhere
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"cp: no such file or directory in the container: {src}") from None
        _emit(emitter, pfd, name, top, st)
        if stat.S_ISDIR(st.st_mode):
            sub = _open_dir(pfd, name, top)
            try:
                _emit_below(emitter, sub, top)
            finally:
                os.close(sub)
    finally:
        os.close(pfd)
    return emitter.close().size


def _open_dir(pfd: int, name: str, rel: str) -> int:
    try:
        return os.open(name, _DIR, dir_fd=pfd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ContainerError(
                f"cp: {rel} changed into a non-directory during the copy"
            ) from None
        raise


def _emit(emitter: TarEmitter, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
    """One entry: ``name`` below the directory fd ``dfd``, never following a last symlink."""
    try:
        emitter.entry(f"/proc/self/fd/{dfd}/{name}", rel, st)
    except StorageError:  # the file grew or shrank while it was read
        raise ContainerError(f"cp: {rel} changed size during the copy") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):
            raise ContainerError(f"cp: {rel} changed during the copy") from None
        raise


def _emit_below(emitter: TarEmitter, top: int, prefix: str) -> None:
    """Every entry below the directory fd ``top``, depth first, names sorted bytewise.

    One fd per level is held (no ``..`` walk back up, which a concurrent rename in a running
    container could turn into a step out of the rootfs). Entries removed meanwhile are skipped.
    """
    stack: list[tuple[int, str, list[str]]] = []
    stack.append((top, prefix, sorted(os.listdir(top), key=os.fsencode)[::-1]))
    try:
        while stack:
            fd, base, names = stack[-1]
            if not names:
                stack.pop()
                if fd != top:
                    os.close(fd)
                continue
            name = names.pop()
            rel = f"{base}/{name}" if base else name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            _emit(emitter, fd, name, rel, st)
            if stat.S_ISDIR(st.st_mode):
                sub = _open_dir(fd, name, rel)
                stack.append((sub, rel, sorted(os.listdir(sub), key=os.fsencode)[::-1]))
    finally:
        for fd, _base, _names in stack:
            if fd != top:
                os.close(fd)


def copy_in_tar(stream: BinaryIO, rootfs: Path, dest: str, *, label: str | None = None) -> int:
    """Extract the tar ``stream`` into the existing container directory ``dest``; members
    extracted. ``label`` names the destination in messages (default ``dest``)."""
    label = label or dest
    try:
        dfd = open_in_root(rootfs, posixpath.normpath("/" + dest), os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise NotFound(f"cp: no such directory in the container: {label}") from None
    except NotADirectoryError:
        raise ContainerError(
            f"cp: {label} is not a directory",
            hint="a tar stream on stdin is extracted into an existing directory",
        ) from None
    from lamina.snapshot import apply_layer
    from lamina.unionfs.overlay import in_user_namespace

    try:
        result = apply_layer(
            stream, dfd, mode="plain", rootless=in_user_namespace(), what=f"cp - {label}"
        )
        return result.entries
    finally:
        os.close(dfd)


def _copy_fd(src: int, dst: int) -> None:
    while data := os.read(src, CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view) :]
