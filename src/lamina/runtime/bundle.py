"""OCI bundles: ``config.json`` on disk, mount points made and unmade, the command resolved.

A bundle is a directory holding ``config.json`` (whose ``root.path`` is the *absolute* rootfs,
so the rootfs need not live inside the bundle) and lamina's own ``mountpoints.json``: the mount
points lamina had to create in the rootfs before the runtime started, so they can be removed
afterwards.

Why create mount points ourselves: runc/crun create missing mount points (``/etc/hosts`` in a
minimal image, say) *in the rootfs*, and would leave them behind, so a build step's layer would
gain empty files nobody asked for. :func:`prepare_mountpoints` creates them first (safely,
inside the rootfs), records them, and :func:`remove_mountpoints` removes exactly those that are
still empty and restores their parent directory's timestamps. Callers on overlayfs should
rather put the mount points into a lower "init" layer (as Docker's ``<id>-init``), using
:func:`lamina.runtime.spec.mount_destinations`, so nothing is ever copied up.

:func:`resolve_command` checks argv[0] inside the rootfs before anything starts, so "not
found" (127) and "not executable" (126) are decided by looking at the file, never by parsing
a runtime's error text.

Invariants: nothing here follows a symlink out of the rootfs (walks use ``O_NOFOLLOW`` dir fds
from :mod:`lamina._internal.rootpath`); ``write_bundle`` is atomic; ``remove_mountpoints`` is
idempotent.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from lamina._internal.fileio import write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.rootpath import resolve_in_root, split_path
from lamina.errors import CommandNotExecutable, CommandNotFound, ContainerError
from lamina.runtime.defaults import DEFAULT_PATH
from lamina.runtime.spec import ContainerSpec, build_config, mount_destinations

CONFIG = "config.json"
MOUNTPOINTS = "mountpoints.json"

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@lazy_dataclass(frozen=True)
class Bundle:
    """A bundle directory and the rootfs its config names."""

    path: Path
    rootfs: Path

    def read_config(self) -> dict[str, Any]:
        """The parsed ``config.json``."""
        data: dict[str, Any] = json.loads((self.path / CONFIG).read_bytes())
        return data


def write_bundle(path: Path, spec: ContainerSpec, *, container_id: str) -> Bundle:
    """Write ``path/config.json`` for ``spec`` (atomically) and return the bundle.

    When ``spec.cgroups_path`` is None the cgroup is ``/lamina/<container_id>``, so lamina's
    containers are grouped and never collide with another manager's — except rootless, where
    no path is set (runc ignores cgroups it may not create only when the spec names none) and
    the mounts are adapted to the user namespace (:func:`lamina.runtime.rootless.adapt_config`).
    """
    from lamina.runtime.rootless import adapt_config, is_rootless

    config = build_config(spec)
    if is_rootless():
        adapt_config(config)
    elif spec.cgroups_path is None:
        config["linux"]["cgroupsPath"] = f"/lamina/{container_id}"
    path.mkdir(parents=True, exist_ok=True)
    # Compact: json's C encoder (an indented dump takes the pure-Python one, ~2 ms here).
    data = json.dumps(config, separators=(",", ":")).encode()
    write_atomic(path / CONFIG, data, durable=False)
    return Bundle(path=path, rootfs=spec.rootfs)


def open_bundle(path: Path) -> Bundle:
    """A bundle written earlier; raises ContainerError when its config is missing or bad."""
    try:
        config = json.loads((path / CONFIG).read_bytes())
        return Bundle(path=path, rootfs=Path(config["root"]["path"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ContainerError(f"opening bundle {path}: {exc}") from exc


def resolve_partial(rootfs: Path, name: str) -> Path:
    """Where ``name`` is (or would be created) inside ``rootfs``, resolving existing symlinks.

    Like :func:`lamina._internal.rootpath.resolve_in_root`, but missing directories are
    allowed: components are resolved one by one while they exist, and the missing rest is
    appended as is (a missing component cannot be a symlink). A symlink whose target runs
    through a missing directory raises FileNotFoundError; a file in the middle, ENOTDIR.
    """
    parts = split_path(name)
    current = rootfs
    for i, comp in enumerate(parts):
        if not os.path.lexists(current / comp):
            return current.joinpath(*parts[i:])
        current = resolve_in_root(rootfs, (current / comp).relative_to(rootfs).as_posix())
        if i < len(parts) - 1 and os.path.lexists(current) and not current.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(current))
    return current


def _walk_parent(root_fd: int, parts: list[str], created: list[str]) -> int:
    """An fd for the directory ``parts`` below ``root_fd``, creating missing ones (recorded)."""
    fd = os.dup(root_fd)
    for i, comp in enumerate(parts):
        try:
            nfd = os.open(comp, _DIR, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(comp, 0o755, dir_fd=fd)
            created.append("/".join(parts[: i + 1]) + "/")
            nfd = os.open(comp, _DIR, dir_fd=fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        fd = nfd
    return fd


def _save_times(root_fd: int, rel: str, times: dict[str, tuple[int, int]]) -> None:
    parent = rel.rstrip("/").rpartition("/")[0]
    if parent not in times:
        st = os.stat(parent or ".", dir_fd=root_fd, follow_symlinks=False)
        times[parent] = (st.st_atime_ns, st.st_mtime_ns)


def prepare_mountpoints(bundle: Bundle) -> list[str]:
    """Create the mount points ``config.json`` needs but the rootfs lacks; record them.

    Returns the created paths (relative to the rootfs, directories end in ``/``) in creation
    order; they and the parents' timestamps are saved to ``mountpoints.json`` before returning
    (no file when nothing was created), so a crash between here and
    :func:`remove_mountpoints` loses nothing.
    """
    rootfs = bundle.rootfs
    created: list[str] = []
    times: dict[str, tuple[int, int]] = {}
    root_fd = os.open(rootfs, _DIR & ~os.O_NOFOLLOW)
    try:
        for dest, is_dir in mount_destinations(bundle.read_config()):
            try:
                resolved = resolve_partial(rootfs, dest)
            except OSError as exc:
                raise ContainerError(
                    f"preparing mount point {dest} in {rootfs}: {exc.strerror}"
                ) from exc
            if os.path.lexists(resolved):
                continue
            parts = list(resolved.relative_to(rootfs).parts)
            existing = _existing_prefix(root_fd, parts)
            _save_times(root_fd, "/".join(parts[: existing + 1]), times)
            fd = _walk_parent(root_fd, parts[:-1], created)
            try:
                if is_dir:
                    os.mkdir(parts[-1], 0o755, dir_fd=fd)
                    created.append("/".join(parts) + "/")
                else:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    os.close(os.open(parts[-1], flags, 0o644, dir_fd=fd))
                    created.append("/".join(parts))
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
        # Nothing created (the usual case: the init layer has them): no record to write. A
        # record an earlier, crashed start left stays and is honoured by remove_mountpoints.
        if created or times:
            record = {"created": created, "times": {k: list(v) for k, v in times.items()}}
            write_atomic(bundle.path / MOUNTPOINTS, json.dumps(record).encode(), durable=False)
    return created


def _existing_prefix(root_fd: int, parts: list[str]) -> int:
    """How many leading components of ``parts`` exist (as directories) below ``root_fd``."""
    fd = os.dup(root_fd)
    try:
        for i, comp in enumerate(parts):
            try:
                nfd = os.open(comp, _DIR, dir_fd=fd)
            except OSError:
                return i
            os.close(fd)
            fd = nfd
        return len(parts)
    finally:
        os.close(fd)


def remove_mountpoints(bundle: Bundle) -> None:
    """Remove what :func:`prepare_mountpoints` created, if still empty; restore parent times.

    Idempotent: the record is deleted last, and missing entries are ignored. Files that gained
    content or directories that gained entries are left in place.
    """
    record_path = bundle.path / MOUNTPOINTS
    try:
        record = json.loads(record_path.read_bytes())
    except FileNotFoundError:
        return
    root_fd = os.open(bundle.rootfs, _DIR & ~os.O_NOFOLLOW)
    try:
        for rel in reversed(record.get("created", [])):
            _remove_one(root_fd, str(rel))
        for rel, (atime, mtime) in record.get("times", {}).items():
            with contextlib.suppress(OSError):
                os.utime(rel or ".", ns=(atime, mtime), dir_fd=root_fd, follow_symlinks=False)
    finally:
        os.close(root_fd)
    record_path.unlink(missing_ok=True)


def _remove_one(root_fd: int, rel: str) -> None:
    parts = split_path(rel)
    if not parts:
        return
    fd = os.dup(root_fd)
    try:
        for comp in parts[:-1]:
            nfd = os.open(comp, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        if rel.endswith("/"):
            os.rmdir(parts[-1], dir_fd=fd)
        else:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(parts[-1], dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.ENOTDIR, errno.EBUSY):
            raise
    finally:
        os.close(fd)


def _executable_by(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:
        return bool(st.st_mode & 0o111)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid in gids:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def resolve_command(
    rootfs: Path, process: dict[str, Any], mounts: list[dict[str, Any]] | None = None
) -> str | None:
    """The in-container path of argv[0] for a runtime-spec ``process``; checks it can run.

    A name without ``/`` is searched on the process's ``PATH`` (Docker's default when unset),
    skipping entries that are not executable regular files, like ``execvp``. Paths under a
    bind mount of ``mounts`` are looked up in the bind's source; paths under other mounts
    (tmpfs, proc) cannot be checked and are accepted (None is returned for them). Raises
    :class:`CommandNotFound` (127) or :class:`CommandNotExecutable` (126).
    """
    view = _View(rootfs, mounts or [])
    argv0 = str(process["args"][0])
    user = process.get("user", {})
    uid = int(user.get("uid", 0))
    gids = {int(user.get("gid", 0)), *(int(g) for g in user.get("additionalGids", []))}
    cwd = str(process.get("cwd", "/"))
    if "/" in argv0:
        name = argv0 if argv0.startswith("/") else f"{cwd}/{argv0}"
        st = view.stat(name)
        if st is _UNKNOWN:
            return None
        if st is None:
            raise CommandNotFound(f"exec: {argv0}: no such file or directory")
        if stat.S_ISDIR(st.st_mode):
            raise CommandNotExecutable(f"exec: {argv0}: is a directory")
        if not stat.S_ISREG(st.st_mode) or not _executable_by(st, uid, gids):
            raise CommandNotExecutable(f"exec: {argv0}: permission denied")
        return name
    path = DEFAULT_PATH
    for item in process.get("env", []):
        key, sep, value = str(item).partition("=")
        if sep and key == "PATH":
            path = value
    for entry in path.split(":"):
        base = entry or cwd
        name = f"{base if base.startswith('/') else cwd + '/' + base}/{argv0}"
        st = view.stat(name)
        if st is _UNKNOWN:
            return None
        if st is not None and stat.S_ISREG(st.st_mode) and _executable_by(st, uid, gids):
            return name
    raise CommandNotFound(f'exec: "{argv0}": executable file not found in $PATH')


_UNKNOWN = os.stat_result((0,) * 10)


class _View:
    """The rootfs as the container will see it, as far as binds go (tmpfs & co are unknown)."""

    def __init__(self, rootfs: Path, mounts: list[dict[str, Any]]) -> None:
        self.rootfs = rootfs
        self.mounts = sorted(
            (("/" + "/".join(split_path(str(m["destination"]))), m) for m in mounts),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def _under_mount(self, name: str) -> os.stat_result | bool | None:
        clean = "/" + "/".join(split_path(name))
        for dest, m in self.mounts:
            if clean == dest or clean.startswith(dest.rstrip("/") + "/"):
                if m.get("type") != "bind":
                    return _UNKNOWN
                rest = clean[len(dest) :]
                source = Path(str(m["source"]))
                return _stat_in_root(source, rest) if rest.strip("/") else _stat_path(source)
        return False

    def stat(self, name: str) -> os.stat_result | None:
        """stat of ``name`` in the view; None if missing; :data:`_UNKNOWN` if uncheckable."""
        hit = self._under_mount(name)
        if hit is not False:
            return hit if isinstance(hit, os.stat_result) else None
        try:
            resolved = resolve_in_root(self.rootfs, name)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise ContainerError(f"looking up {name} in {self.rootfs}: {exc.strerror}") from exc
        inner = resolved.relative_to(self.rootfs).as_posix()
        rel = "/" if inner == "." else "/" + inner
        hit = self._under_mount(rel)
        if hit is not False:
            return hit if isinstance(hit, os.stat_result) else None
        return _stat_path(resolved)


def _stat_path(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _stat_in_root(rootfs: Path, name: str) -> os.stat_result | None:
    try:
        return os.stat(resolve_in_root(rootfs, name), follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise ContainerError(f"looking up {name} in {rootfs}: {exc.strerror}") from exc
