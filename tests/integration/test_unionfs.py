"""Real union mounts: kernel overlayfs (new and classic mount APIs), fuse-overlayfs, unmount."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from lamina.errors import UnionFSError
from lamina.testing.capabilities import mount_points_under
from lamina.unionfs import (
    FuseOverlayBackend,
    OverlayBackend,
    VfsBackend,
    select_backend,
    unmount,
)
from lamina.unionfs.backend import PROBE_CACHE
from lamina.unionfs.syscall import is_mountpoint


def make_lowers(base: Path, n: int) -> list[Path]:
    """``n`` lower dirs, top first: lower i holds ``f<i>`` and a ``shared`` file saying i."""
    lowers = []
    for i in range(n):
        d = base / f"lower{i:03d}"
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        (d / "shared").write_text(str(i))
        lowers.append(d)
    return lowers


def upper_work_target(base: Path) -> tuple[Path, Path, Path]:
    dirs = base / "upper", base / "work", base / "merged"
    for d in dirs:
        d.mkdir()
    return dirs


@pytest.mark.needs_root
@pytest.mark.needs_overlay
@pytest.mark.parametrize("new_api", [True, False])
def test_overlay_mount_shows_stacked_layers(no_mount_leaks: Path, new_api: bool) -> None:
    base = no_mount_leaks
    lowers = make_lowers(base / "layers", 3)
    upper, work, merged = upper_work_target(base)
    backend = OverlayBackend(probe_dir=base / "tmp", new_api=new_api)
    backend.mount(lowers, upper, work, merged)
    try:
        assert is_mountpoint(merged)
        assert sorted(os.listdir(merged)) == ["f0", "f1", "f2", "shared"]
        assert (merged / "shared").read_text() == "0"  # the top lower wins
        (merged / "f2").unlink()
        (merged / "new").write_text("n")
        # deletions of lower files become 0/0 character devices in the upper dir
        st = os.lstat(upper / "f2")
        assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
        assert (upper / "new").read_text() == "n"
        options = next(
            line
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if f" {merged} " in line
        )
        assert str(upper) in options and all(str(p) in options for p in lowers)
    finally:
        backend.unmount(merged)
    assert not is_mountpoint(merged)
    backend.unmount(merged)  # idempotent


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_many_layers_with_classic_api_use_relative_short_names(no_mount_leaks: Path) -> None:
    base = no_mount_leaks / ("long-directory-name-" * 4)
    lowers = make_lowers(base / "l", 60)
    upper, work, merged = upper_work_target(base)
    assert len(":".join(map(str, lowers))) > os.sysconf("SC_PAGE_SIZE")
    backend = OverlayBackend(probe_dir=base / "tmp", new_api=False)
    backend.mount(lowers, upper, work, merged)
    try:
        assert len(os.listdir(merged)) == 61 and (merged / "shared").read_text() == "0"
    finally:
        backend.unmount(merged)


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_hundreds_of_layers_with_the_new_api(no_mount_leaks: Path) -> None:
    base = no_mount_leaks
    lowers = make_lowers(base / ("x" * 100), 200)
    upper, work, merged = upper_work_target(base)
    backend = OverlayBackend(probe_dir=base / "tmp", new_api=True)
    backend.mount(lowers, upper, work, merged)
    try:
        assert len(os.listdir(merged)) == 201
    finally:
        backend.unmount(merged)


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_mount_errors_are_unionfs_errors(no_mount_leaks: Path) -> None:
    base = no_mount_leaks
    upper, work, merged = upper_work_target(base)
    backend = OverlayBackend(probe_dir=base / "tmp")
    with pytest.raises(UnionFSError, match="mounting overlay"):
        backend.mount([base / "missing"], upper, work, merged)
    with pytest.raises(UnionFSError, match="no lower layers"):
        backend.mount([], upper, work, merged)
    assert mount_points_under(base) == []


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_unmount_of_a_busy_mount_detaches(no_mount_leaks: Path) -> None:
    base = no_mount_leaks
    lowers = make_lowers(base / "layers", 1)
    upper, work, merged = upper_work_target(base)
    backend = OverlayBackend(probe_dir=base / "tmp")
    backend.mount(lowers, upper, work, merged)
    busy = subprocess.Popen(["sleep", "30"], cwd=merged)
    try:
        started = time.monotonic()
        unmount(merged, attempts=3)
        assert not is_mountpoint(merged)
        assert time.monotonic() - started < 10
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_unmount_removes_stacked_mounts(no_mount_leaks: Path) -> None:
    base = no_mount_leaks
    lowers = make_lowers(base / "layers", 2)
    upper, work, merged = upper_work_target(base)
    backend = OverlayBackend(probe_dir=base / "tmp")
    backend.mount(lowers[:1], upper, work, merged)
    upper2, work2 = base / "u2", base / "w2"
    upper2.mkdir()
    work2.mkdir()
    backend.mount(lowers[1:], upper2, work2, merged)
    backend.unmount(merged)
    assert not is_mountpoint(merged)


@pytest.mark.needs_fuse
def test_fuse_overlayfs_mount(no_mount_leaks: Path) -> None:
    base = no_mount_leaks
    lowers = make_lowers(base / "layers", 2)
    upper, work, merged = upper_work_target(base)
    backend = FuseOverlayBackend(probe_dir=base / "tmp")
    assert backend.probe()
    backend.mount(lowers, upper, work, merged)
    try:
        assert sorted(os.listdir(merged)) == ["f0", "f1", "shared"]
        assert (merged / "shared").read_text() == "0"
        (merged / "new").write_text("n")
        assert (upper / "new").read_text() == "n"
    finally:
        backend.unmount(merged)
    assert not is_mountpoint(merged)


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_select_backend_probes_once_and_caches(no_mount_leaks: Path) -> None:
    root = no_mount_leaks / "root"
    backend = select_backend(None, root)
    assert backend.name == "overlay" and not backend.copies
    cache = (root / PROBE_CACHE).read_text()
    assert '"overlay:0": true' in cache
    assert os.listdir(root / "tmp") == []  # the probe cleaned up after itself
    assert select_backend("overlay2", root).name == "overlay"
    assert isinstance(select_backend("vfs", root), VfsBackend)
    with pytest.raises(UnionFSError, match="unknown storage driver"):
        select_backend("zfs", root)


def test_cached_negative_probe_falls_back_to_vfs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    release = os.uname().release
    (root / PROBE_CACHE).write_text(f'{{"kernel": "{release}", "overlay:{os.geteuid()}": false}}')
    assert select_backend(None, root).name == "vfs"
    assert "using the vfs driver" in caplog.text
    with pytest.raises(UnionFSError, match="does not work here"):
        select_backend("overlay2", root)
