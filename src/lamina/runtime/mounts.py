"""The native runtime's filesystem setup, run inside a fresh mount namespace (by nsinit).

:func:`setup_rootfs` turns a runtime-spec config into mounts, the way runc does for the subset
lamina generates: make every mount private (so nothing propagates to the host), bind the rootfs
onto itself, apply ``mounts`` in order, create ``linux.devices`` on the ``/dev`` tmpfs, mask
``maskedPaths``, remount ``readonlyPaths`` read-only, ``pivot_root`` into the rootfs and
detach the old root, then make ``/`` read-only if asked.

Invariants: every mount target is resolved inside the rootfs with
:func:`lamina._internal.rootpath.resolve_in_root` (a symlink in the image cannot aim a mount
at the host); the first mount call is the recursive ``MS_PRIVATE`` on ``/``, so the host's
mount table is never changed; everything mounted here lives only in the container's mount
namespace and goes away with its last process — nothing needs unmounting afterwards.
Differences from runc: ``/sys/fs/cgroup`` is the cgroup2 hierarchy read-only (no cgroup v1
controllers, no resource limits), and there is no seccomp or AppArmor profile.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lamina._internal.rootpath import resolve_in_root
from lamina.runtime import linux
from lamina.runtime.bundle import resolve_partial

_STDIO_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)


@contextlib.contextmanager
def _target(rootfs: str, dest: str, *, is_dir: bool) -> Iterator[tuple[str, str]]:
    """(mount target, path) for ``dest`` inside ``rootfs``; created (dir or empty file) if missing.

    The target is ``/proc/self/fd/N`` of an ``O_PATH`` fd opened on the resolved path, after
    checking that the fd's canonical path is that path: a symlink swapped in after the
    resolution cannot redirect the mount. ``path`` names the new mount for later remounts.
    """
    path = resolve_partial(Path(rootfs), dest)
    if not os.path.lexists(path):
        if is_dir:
            path.mkdir(mode=0o755, parents=True)
        else:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.touch(mode=0o644)
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.readlink(f"/proc/self/fd/{fd}") != str(path):
            raise OSError(errno.EXDEV, "mount point moved during setup", str(path))
        yield f"/proc/self/fd/{fd}", str(path)
    finally:
        os.close(fd)


def _mount_one(rootfs: str, m: dict[str, Any]) -> None:
    fstype = str(m.get("type", ""))
    options = [str(o) for o in m.get("options", [])]
    flags, propagation, data = linux.parse_mount_options(options)
    source = str(m.get("source", fstype))
    is_bind = fstype == "bind" or bool(flags & linux.MS_BIND)
    is_dir = os.path.isdir(source) if is_bind else True
    with _target(rootfs, m["destination"], is_dir=is_dir) as (target, path):
        if is_bind:
            linux.mount(source, target, None, linux.MS_BIND | (flags & linux.MS_REC))
            extra = flags & ~(linux.MS_BIND | linux.MS_REC)
            if extra:
                linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | extra)
        elif fstype == "cgroup":
            try:
                linux.mount("cgroup2", target, "cgroup2", flags)
            except OSError:
                linux.mount("tmpfs", target, "tmpfs", flags | linux.MS_RDONLY, "mode=755")
        else:
            linux.mount(source, target, fstype, flags, data)
        if propagation:
            linux.mount(None, path, None, propagation)


def _make_devices(rootfs: str, devices: list[dict[str, Any]]) -> None:
    for d in devices:
        # on the /dev tmpfs mounted just before: no image content can be in the way
        path = str(resolve_partial(Path(rootfs), str(d["path"])))
        mode = int(d.get("fileMode", 0o666)) & 0o7777
        kind = stat.S_IFCHR if d.get("type", "c") == "c" else stat.S_IFBLK
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            os.mknod(path, kind | mode, os.makedev(int(d["major"]), int(d["minor"])))
        except PermissionError:
            # No CAP_MKNOD: bind the host's node instead, as rootless runc does.
            Path(path).touch(mode=0o644)
            linux.mount(str(d["path"]), path, None, linux.MS_BIND)
            continue
        os.chmod(path, mode)
        os.chown(path, int(d.get("uid", 0)), int(d.get("gid", 0)))
    dev = resolve_in_root(Path(rootfs), "/dev")
    for name, target in _STDIO_LINKS:
        with contextlib.suppress(FileExistsError):
            os.symlink(target, dev / name)


def _mask(rootfs: str, name: str) -> None:
    path = resolve_in_root(Path(rootfs), name)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        linux.mount("tmpfs", str(path), "tmpfs", linux.MS_RDONLY)
    else:
        linux.mount("/dev/null", str(path), None, linux.MS_BIND)


def _readonly(rootfs: str, name: str) -> None:
    path = resolve_in_root(Path(rootfs), name)
    if not os.path.lexists(path):
        return
    linux.mount(str(path), str(path), None, linux.MS_BIND | linux.MS_REC)
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY
    linux.mount(None, str(path), None, linux.MS_BIND | linux.MS_REMOUNT | flags)


def _pivot(rootfs: str) -> None:
    """pivot_root into ``rootfs`` with the old root stacked on ``/``, then detach the old root."""
    os.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def setup_rootfs(config: dict[str, Any]) -> None:
    """Build the container's mount table from ``config`` and enter it (see module doc).

    Must run in a new mount namespace, as root, in the container's pid namespace (for /proc).
    """
    rootfs = str(config["root"]["path"])
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    for m in config.get("mounts", []):
        try:
            _mount_one(rootfs, m)
        except OSError as exc:
            raise OSError(exc.errno, f"mounting {m.get('destination')}: {exc.strerror}") from exc
    lx = config.get("linux", {})
    _make_devices(rootfs, lx.get("devices", []))
    for name in lx.get("maskedPaths", []):
        _mask(rootfs, name)
    for name in lx.get("readonlyPaths", []):
        _readonly(rootfs, name)
    _pivot(rootfs)
    if config["root"].get("readonly"):
        linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
