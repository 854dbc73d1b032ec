"""Every hostile layer is refused or applied harmlessly, and nothing is written outside."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from lamina.errors import UnsafeArchive
from lamina.snapshot.apply import apply_layer
from lamina.snapshot.writer import iter_tree
from lamina.testing import hostile
from lamina.testing.layers import tree_manifest


def _setup(tmp_path: Path) -> tuple[Path, Path, list[tuple[object, ...]]]:
    outside = tmp_path / "sentinel"
    (outside / "sub").mkdir(parents=True)
    (outside / "victim").write_text("original\n")
    (outside / "passwd").write_text("root:x:0:0\n")
    target = tmp_path / "target"
    target.mkdir()
    return outside, target, tree_manifest(outside)


def _apply_all(layers: list[bytes], target: Path, mode: str) -> None:
    for i, layer in enumerate(layers):
        dest = target if mode == "merged" else target / f"layer{i}"
        dest.mkdir(exist_ok=True)
        apply_layer(io.BytesIO(layer), dest, mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["merged", "overlay"])
@pytest.mark.parametrize("case", sorted(hostile.CASES))
def test_hostile_layer(tmp_path: Path, case: str, mode: str) -> None:
    outside, target, before = _setup(tmp_path)
    make, expected = hostile.CASES[case]
    layers = make(str(outside))
    single_layer_reject = expected == "reject" and (len(layers) == 1 or mode == "merged")
    if single_layer_reject or (case == "hardlink_to_lower"):
        with pytest.raises(UnsafeArchive):
            _apply_all(layers, target, mode)
    else:
        _apply_all(layers, target, mode)
    assert tree_manifest(outside) == before, "the sentinel next to the target changed"
    assert sorted(os.listdir(tmp_path)) == ["sentinel", "target"]
    for full, _rel, _st in iter_tree(str(target)):  # fd-based: paths beyond PATH_MAX work
        names = os.listxattr(full, follow_symlinks=False)
        assert not [x for x in names if ".overlay." in x], "a layer forged overlay xattrs"


def test_overlay_xattrs_dropped_and_others_kept(tmp_path: Path) -> None:
    outside, target, _ = _setup(tmp_path)
    layer = hostile.overlay_xattr_injection(str(outside))
    result = apply_layer(io.BytesIO(layer), target, mode="overlay")
    assert os.getxattr(target / "d/f", "user.ok") == b"kept"
    assert sorted(r for _p, r in result.skipped) == [
        "xattr trusted.overlay.metacopy (overlay metadata) dropped",
        "xattr trusted.overlay.redirect (overlay metadata) dropped",
        "xattr user.overlay.opaque (overlay metadata) dropped",
    ]


def test_absolute_name_lands_inside(tmp_path: Path) -> None:
    outside, target, _ = _setup(tmp_path)
    apply_layer(io.BytesIO(hostile.absolute_name(str(outside))), target, mode="merged")
    assert (target / str(outside).lstrip("/") / "abs").read_bytes() == b"x"


def test_lower_symlink_parent_becomes_directory(tmp_path: Path) -> None:
    outside, target, _ = _setup(tmp_path)
    layers = hostile.directory_over_symlink(str(outside))
    _apply_all(layers, target, "merged")
    assert not (target / "d").is_symlink()
    assert (target / "d/f").read_text() == "in the target\n"


def test_file_over_symlink_replaces_link(tmp_path: Path) -> None:
    outside, target, _ = _setup(tmp_path)
    apply_layer(io.BytesIO(hostile.file_over_symlink(str(outside))), target, mode="merged")
    assert not (target / "f").is_symlink()
    assert (target / "f").read_text() == "replaced\n"
    assert (outside / "victim").read_text() == "original\n"


def test_whiteout_through_lower_symlink_keeps_victim(tmp_path: Path) -> None:
    outside, target, _ = _setup(tmp_path)
    _apply_all(hostile.whiteout_through_symlink(str(outside)), target, "merged")
    assert (outside / "victim").exists()
    assert (target / "d").is_dir() and not (target / "d").is_symlink()


@pytest.mark.needs_root
def test_devices_setuid_and_fifo_as_root(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    result = apply_layer(io.BytesIO(hostile.device_nodes()), target, mode="merged")
    assert stat.S_ISCHR(os.lstat(target / "null").st_mode)
    assert os.lstat(target / "null").st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(os.lstat(target / "loop0").st_mode)
    assert not (target / "wo").exists()  # a 0/0 device would act as a whiteout: skipped
    assert [p for p, _r in result.skipped] == ["wo"]
    apply_layer(io.BytesIO(hostile.setuid_file()), target, mode="merged")
    assert stat.S_IMODE(os.lstat(target / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(target / "sgid").st_mode) == 0o2755
    apply_layer(io.BytesIO(hostile.fifo_member()), target, mode="merged")
    assert stat.S_ISFIFO(os.lstat(target / "pipe").st_mode)


def test_devices_skipped_when_rootless(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    result = apply_layer(io.BytesIO(hostile.device_nodes()), target, mode="merged", rootless=True)
    assert result.skipped_devices == 2
    assert sorted(p for p, _r in result.skipped) == ["loop0", "null", "wo"]
    assert os.listdir(target) == []
