"""The store with kernel overlayfs: Docker's overlay2 layout, real mounts, vfs equivalence."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.image.memory import MemoryImage
from lamina.store import Store, chain_ids
from lamina.testing.layers import directory, file, opaque_in, symlink, tree_manifest, whiteout_of
from lamina.unionfs import OverlayBackend
from lamina.unionfs.syscall import is_mountpoint

MakeImage = Callable[..., MemoryImage]

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

LAYERS = [
    [
        directory("bin"),
        file("bin/vi", b"vi", mode=0o755),
        file("bin/sh", b"sh", mode=0o755),
        directory("etc"),
        file("etc/group", b"root:x:0:\n"),
        file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        directory("usr"),
        directory("usr/sbin"),
        file("usr/sbin/arping", b"a"),
        file("usr/sbin/httpd", b"h"),
        directory("tmp", mode=0o1777),
    ],
    [file("a.txt", b"first\n"), symlink("bin/ash", "sh")],
    [
        file("a.txt", b"first\nchanged\n"),
        directory("bin"),
        whiteout_of("bin/vi"),
        directory("etc"),
        whiteout_of("etc/group"),
        directory("usr"),
        directory("usr/sbin"),
        opaque_in("usr/sbin"),
        file("usr/sbin/only", b"only"),
        file("new.txt", b"new\n"),
    ],
]


def mount_image(store: Store, chain: object, base: Path) -> tuple[OverlayBackend, Path, Path]:
    dirs = store.layer_dirs(chain)  # type: ignore[arg-type]
    top_link = store.layout.links / (dirs.upper.parent / "link").read_text()
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    backend = OverlayBackend(probe_dir=store.layout.tmp)
    backend.mount([top_link, *dirs.lower_links], upper, work, merged)
    return backend, upper, merged


def test_layout_matches_docker_overlay2(tmp_path: Path, make_image: MakeImage) -> None:
    store = Store(tmp_path / "root")
    assert store.driver == "overlay2"
    img = make_image(LAYERS)
    store.put_image(img, ["lamina-sample/w1"])
    chains = chain_ids(img.config().diff_ids)
    records = [store.get_layer(c) for c in chains]
    shorts = []
    for i, rec in enumerate(records):
        d = store.layout.layer_dir(rec.cache_id)
        assert re.fullmatch(r"[0-9a-f]{64}", rec.cache_id)
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o710
        assert stat.S_IMODE(os.stat(d / "work").st_mode) == 0o700
        link = (d / "link").read_bytes()
        assert re.fullmatch(rb"[A-Z2-7]{26}", link)  # 26 bytes, no newline
        assert os.readlink(store.layout.links / link.decode()) == f"../{rec.cache_id}/diff"
        if i == 0:
            assert not (d / "lower").exists()
        else:
            assert (d / "lower").read_text() == ":".join(f"l/{s}" for s in reversed(shorts))
        shorts.append(link.decode())
    # overlay mode: the top diff holds only the top layer, whiteouts as 0/0 char devices
    top = store.layout.layer_dir(records[2].cache_id) / "diff"
    st = os.lstat(top / "bin" / "vi")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(top / "usr" / "sbin", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(top / "usr" / "sbin")) == ["only"]
    gd = store.get_image("lamina-sample/w1").graph_driver()
    data = gd["Data"]
    assert gd["Name"] == "overlay2" and isinstance(data, dict)
    assert sorted(data) == ["LowerDir", "MergedDir", "UpperDir", "WorkDir"]
    top_dir = store.layout.layer_dir(records[2].cache_id)
    assert data["UpperDir"] == f"{top_dir}/diff" and data["WorkDir"] == f"{top_dir}/work"
    assert data["MergedDir"] == f"{top_dir}/merged"
    assert data["LowerDir"] == ":".join(
        f"{store.layout.layer_dir(r.cache_id)}/diff" for r in reversed(records[:2])
    )
    assert store.check() == []


def test_overlay_mount_of_image_layers(no_mount_leaks: Path, make_image: MakeImage) -> None:
    store = Store(no_mount_leaks / "root", driver="overlay2")
    img = make_image(LAYERS)
    store.put_image(img, ["x"])
    top = chain_ids(img.config().diff_ids)[-1]
    backend, upper, merged = mount_image(store, top, no_mount_leaks)
    try:
        assert sorted(os.listdir(merged)) == ["a.txt", "bin", "etc", "new.txt", "tmp", "usr"]
        assert (merged / "a.txt").read_text() == "first\nchanged\n"
        assert sorted(os.listdir(merged / "bin")) == ["ash", "sh"]  # vi whited out
        assert os.listdir(merged / "etc") == ["passwd"]  # group whited out
        assert os.listdir(merged / "usr" / "sbin") == ["only"]  # opaque
        assert os.readlink(merged / "bin" / "ash") == "sh"
        mountinfo = Path("/proc/self/mountinfo").read_text()
        assert f"{store.layout.links}/" in mountinfo  # short l/ names in lowerdir
    finally:
        backend.unmount(merged)
    assert not is_mountpoint(merged) and os.listdir(upper) == []


def test_vfs_and_overlay_give_identical_trees(no_mount_leaks: Path, make_image: MakeImage) -> None:
    img = make_image(LAYERS)
    top = chain_ids(img.config().diff_ids)[-1]
    vfs = Store(no_mount_leaks / "vfs", driver="vfs")
    vfs.put_image(img, ["x"])
    vfs_tree = vfs.layer_dirs(top).upper
    ovl = Store(no_mount_leaks / "ovl", driver="overlay2")
    ovl.put_image(img, ["x"])
    backend, _upper, merged = mount_image(ovl, top, no_mount_leaks)
    try:
        assert tree_manifest(merged) == tree_manifest(vfs_tree)
    finally:
        backend.unmount(merged)
    # and the stored blobs are the same in both stores
    assert set(vfs.blobs.iter_digests()) == set(ovl.blobs.iter_digests())


def _round_trip(tmp_path: Path, whiteout: bool) -> None:
    """A layer written by lamina's writer, stored, its blob dropped, is regenerated exactly."""
    from lamina.image.memory import MemoryImage, file_layer
    from lamina.oci.config import ImageConfig
    from lamina.snapshot.writer import write_layer

    src = tmp_path / "upper"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "new").write_bytes(b"n")
    paths = [src / "etc" / "new", src / "etc"]
    if whiteout:
        os.mknod(src / "etc" / "gone", stat.S_IFCHR | 0o600, 0)
        paths.insert(0, src / "etc" / "gone")
    for p in paths:
        os.utime(p, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    tar = tmp_path / "layer.tar"
    with tar.open("wb") as f:
        write_layer(src, f, kind="overlay-upper", epoch=1_700_000_000)
    layer = file_layer(tar)
    img = MemoryImage(ImageConfig(diff_ids=(layer.diff_id(),)), [layer])
    store = Store(tmp_path / "root", driver="overlay2")
    store.put_image(img, ["regen"])
    store.blobs.delete(layer.digest())
    with store.get_image("regen").layers()[0].open_uncompressed() as f:
        assert f.read() == tar.read_bytes()


def test_regenerated_upper_tar_is_identical(tmp_path: Path) -> None:
    _round_trip(tmp_path, whiteout=False)


def test_regenerated_upper_tar_reproduces_whiteouts(tmp_path: Path) -> None:
    _round_trip(tmp_path, whiteout=True)
