"""Thin ctypes wrappers for mount(2), umount2(2) and the new mount API (fsopen & co).

Errors come back as :class:`OSError` with the errno set (callers classify by errno). For the
new mount API, the kernel's own error text (read from the fs context fd) is appended, which
turns overlayfs' terse EINVAL into something a user can act on.

The new-API syscall numbers (move_mount 429, fsopen 430, fsconfig 431, fsmount 432) are the
same on every Linux architecture (they were allocated after the syscall table unification).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

# dlopen(NULL): libc is already loaded in every CPython process; find_library would
# run ``ldconfig -p`` (a process per import) to find the same library.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432

FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8


def _oserror(what: str, path: str | None = None) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}", path)


def mount(source: str, target: Path, fstype: str, flags: int, data: str) -> None:
    """mount(2). ``data`` must fit in one page (the kernel truncates silently otherwise)."""
    rc = _libc.mount(
        source.encode(), os.fsencode(target), fstype.encode(), flags, data.encode() or None
    )
    if rc != 0:
        raise _oserror("mount", str(target))


def umount(target: Path, flags: int = 0) -> None:
    """umount2(2)."""
    if _libc.umount2(os.fsencode(target), flags | UMOUNT_NOFOLLOW) != 0:
        raise _oserror("umount", str(target))


def _sys(nr: int, *args: object) -> int:
    rc = int(_libc.syscall(ctypes.c_long(nr), *args))
    if rc < 0:
        raise _oserror(f"syscall {nr}")
    return rc


def _kernel_log(fsfd: int) -> str:
    """Drain the fs context's message log (``e overlay: ...`` lines)."""
    lines = []
    for _ in range(16):
        try:
            msg = os.read(fsfd, 4096)
        except OSError:
            break
        if not msg:
            break
        lines.append(msg.decode(errors="replace").strip())
    return "; ".join(lines)


def fs_mount(fstype: str, target: Path, options: list[tuple[str, str | None]]) -> None:
    """Mount ``fstype`` at ``target`` with the new mount API, one option per fsconfig call.

    ``options`` are (key, value) pairs; value None sets a flag. Options are applied in order,
    so repeated keys such as overlayfs' ``lowerdir+`` (kernel >= 6.8) append. This avoids the
    one-page limit of mount(2)'s option string.
    """
    fsfd = _sys(SYS_FSOPEN, fstype.encode(), FSOPEN_CLOEXEC)
    try:
        try:
            for key, value in options:
                if value is None:
                    _sys(SYS_FSCONFIG, fsfd, FSCONFIG_SET_FLAG, key.encode(), None, 0)
                else:
                    _sys(SYS_FSCONFIG, fsfd, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0)
            _sys(SYS_FSCONFIG, fsfd, FSCONFIG_CMD_CREATE, None, None, 0)
            mfd = _sys(SYS_FSMOUNT, fsfd, FSMOUNT_CLOEXEC, 0)
        except OSError as exc:
            log = _kernel_log(fsfd)
            raise OSError(exc.errno, f"{exc.strerror}{': ' + log if log else ''}") from None
        try:
            _sys(
                SYS_MOVE_MOUNT,
                mfd,
                b"",
                AT_FDCWD,
                os.fsencode(target),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        finally:
            os.close(mfd)
    finally:
        os.close(fsfd)


def is_mountpoint(path: Path) -> bool:
    """True if ``path`` is listed as a mount point in /proc/self/mountinfo."""
    return str(path) in mount_points()


def mount_points() -> set[str]:
    """Mount points of this mount namespace (octal escapes decoded)."""
    out = set()
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ")
            if len(fields) > 4:
                out.add(_unescape(fields[4].decode(errors="surrogateescape")))
    return out


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) + 0 and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
