"""Kernel overlayfs and fuse-overlayfs backends.

:class:`OverlayBackend` mounts with, in order of preference:

1. the new mount API with one ``lowerdir+`` fsconfig call per layer (kernel >= 6.8): no limit
   on the number of layers and no escaping of ``:`` or ``,`` in paths;
2. mount(2) with the classic option string when it fits in a page;
3. mount(2) run by ``mount(8)`` with its working directory set to the common parent of the
   lower dirs (the store's ``overlay2/l``), so the lower dirs are the short relative names
   ``l/<short>`` — the same trick Docker uses; about 130 layers fit in a page that way.
   Beyond that, the mount fails with a UnionFSError naming the limit.

Options: ``index=off`` (layers are shared between mounts, the index would pin them to one
upper), and ``userxattr`` when running rootless (in a user namespace), where overlayfs keeps
its metadata in ``user.overlay.*`` xattrs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from lamina.errors import UnionFSError
from lamina.unionfs import syscall
from lamina.unionfs.backend import unmount

PAGE = os.sysconf("SC_PAGE_SIZE")


def in_user_namespace() -> bool:
    """True when this process runs in a user namespace that does not map every uid."""
    try:
        with open("/proc/self/uid_map") as f:
            lines = f.read().split("\n")
    except OSError:
        return os.geteuid() != 0
    first = lines[0].split() if lines else []
    return os.geteuid() != 0 or first != ["0", "0", "4294967295"]


def _kernel_at_least(major: int, minor: int) -> bool:
    parts = os.uname().release.split(".")
    try:
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def _escape(path: str) -> str:
    """Escape a path for the classic overlay option string."""
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _probe_tree(base: Path) -> tuple[list[Path], Path, Path, Path]:
    lower1, lower2, upper, work, merged = (base / n for n in ("l1", "l2", "u", "w", "m"))
    for d in (lower1, lower2, upper, work, merged):
        d.mkdir()
    (lower1 / "top").write_bytes(b"1")
    (lower2 / "bottom").write_bytes(b"2")
    (lower2 / "top").write_bytes(b"hidden")
    return [lower1, lower2], upper, work, merged


def _probe_mount(backend: OverlayBackend | FuseOverlayBackend, probe_dir: Path) -> bool:
    """Mount a two-layer overlay under ``probe_dir`` with ``backend``, read through it, unmount.

    Tries a volatile mount first: unmounting a non-volatile overlay syncs the whole
    filesystem, which cost a fresh store ~1.5 s on a busy disk. Kernels without ``volatile``
    (< 5.10) retry plain; fuse-overlayfs ignores the flag.
    """
    probe_dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="probe-", dir=probe_dir))
    lowers, upper, work, merged = _probe_tree(base)
    try:
        try:
            backend.mount(lowers, upper, work, merged, volatile=True)
        except UnionFSError:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            backend.mount(lowers, upper, work, merged)
        try:
            return (merged / "top").read_bytes() == b"1" and (merged / "bottom").exists()
        finally:
            backend.unmount(merged)
    except (UnionFSError, OSError):
        return False
    finally:
        shutil.rmtree(base, ignore_errors=True)


class OverlayBackend:
    """Kernel overlayfs through mount syscalls (root, or rootless on kernels >= 5.11)."""

    name = "overlay"
    copies = False

    def __init__(
        self, *, probe_dir: Path, rootless: bool | None = None, new_api: bool | None = None
    ) -> None:
        self.probe_dir = probe_dir
        self.rootless = in_user_namespace() if rootless is None else rootless
        #: use fsopen + ``lowerdir+`` (default: when the kernel is >= 6.8)
        self.new_api = _kernel_at_least(6, 8) if new_api is None else new_api

    def probe(self) -> bool:
        """Mount a two-layer overlay in ``probe_dir``, read through it, unmount."""
        return _probe_mount(self, self.probe_dir)

    def _options(
        self, upper: Path, work: Path, volatile: bool = False
    ) -> list[tuple[str, str | None]]:
        opts: list[tuple[str, str | None]] = [
            ("upperdir", str(upper)),
            ("workdir", str(work)),
            ("index", "off"),
        ]
        if self.rootless:
            opts.append(("userxattr", None))
        if volatile:
            opts.append(("volatile", None))
        return opts

    def mount(
        self, lowers: list[Path], upper: Path, work: Path, target: Path, *, volatile: bool = False
    ) -> None:
        """Mount ``lowers`` (top first) + ``upper`` at ``target``; raise UnionFSError.

        ``volatile`` adds overlayfs's ``volatile`` option (no sync of the upper fs, ever; the
        unmount of a build step then costs nothing instead of a sync of the whole disk).
        """
        if not lowers:
            raise UnionFSError(f"mounting overlay at {target}: no lower layers")
        try:
            if self.new_api:
                opts: list[tuple[str, str | None]] = [("lowerdir+", str(p)) for p in lowers]
                opts += self._options(upper, work, volatile)
                syscall.fs_mount("overlay", target, opts)
                return
            self._mount_classic(lowers, upper, work, target, volatile)
        except OSError as exc:
            raise UnionFSError(
                f"mounting overlay at {target}: {exc.strerror}",
                hint="is the store on a filesystem overlayfs accepts as upper (not overlay)?",
            ) from None

    def _classic_string(self, lowerdir: str, upper: Path, work: Path, volatile: bool) -> str:
        opts = [f"lowerdir={lowerdir}"]
        for key, value in self._options(upper, work, volatile):
            opts.append(key if value is None else f"{key}={_escape(value)}")
        return ",".join(opts)

    def _mount_classic(
        self, lowers: list[Path], upper: Path, work: Path, target: Path, volatile: bool
    ) -> None:
        lowerdir = ":".join(_escape(str(p)) for p in lowers)
        data = self._classic_string(lowerdir, upper, work, volatile)
        if len(data) < PAGE:
            syscall.mount("overlay", target, "overlay", 0, data)
            return
        common = Path(os.path.commonpath([str(p) for p in lowers]))
        rel = ":".join(_escape(os.path.relpath(p, common)) for p in lowers)
        data = self._classic_string(rel, upper, work, volatile)
        if len(data) >= PAGE:
            raise UnionFSError(
                f"mounting overlay at {target}: {len(lowers)} layers do not fit in the "
                f"{PAGE}-byte mount option limit of this kernel",
                hint="squash the image, or use a kernel >= 6.8",
            )
        import subprocess  # here and below: only fallbacks run programs (a syscall mounts)

        proc = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", data, str(target)],
            cwd=common,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise OSError(0, proc.stderr.decode(errors="replace").strip())

    def unmount(self, target: Path) -> None:
        """Unmount ``target`` (idempotent; EBUSY retried, lazy detach last)."""
        unmount(target)


class FuseOverlayBackend:
    """The ``fuse-overlayfs`` program (rootless on kernels without unprivileged overlayfs)."""

    name = "fuse-overlayfs"
    copies = False

    def __init__(self, *, probe_dir: Path, binary: str = "fuse-overlayfs") -> None:
        self.probe_dir = probe_dir
        self.binary = binary

    def probe(self) -> bool:
        """True if the binary and /dev/fuse exist and a two-layer mount works."""
        if shutil.which(self.binary) is None or not os.path.exists("/dev/fuse"):
            return False
        return _probe_mount(self, self.probe_dir)

    def mount(
        self, lowers: list[Path], upper: Path, work: Path, target: Path, *, volatile: bool = False
    ) -> None:
        """Run fuse-overlayfs (it daemonises once the mount is up); ``volatile`` is moot."""
        paths = [*lowers, upper, work]
        if any(c in str(p) for p in paths for c in ":,="):
            raise UnionFSError("fuse-overlayfs: paths with ':', ',' or '=' are not supported")
        data = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
        import subprocess

        proc = subprocess.run(
            [self.binary, "-o", data, str(target)], capture_output=True, check=False
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise UnionFSError(f"mounting fuse-overlayfs at {target}: {err}")

    def unmount(self, target: Path) -> None:
        """Unmount with umount2 (root) or ``fusermount3 -u`` (rootless); idempotent."""
        try:
            unmount(target)
        except UnionFSError:
            if shutil.which("fusermount3") is None:
                raise
            import subprocess

            with contextlib.suppress(OSError):
                subprocess.run(["fusermount3", "-u", "-z", str(target)], check=False)
            if syscall.is_mountpoint(target):
                raise
