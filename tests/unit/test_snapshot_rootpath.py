"""Securejoin: paths resolved inside a root, symlinks as if the root were ``/``."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lamina._internal.rootpath import open_in_root, resolve_in_root, split_path


def test_split_path_clamps_or_refuses_dotdot() -> None:
    assert split_path("/a/./b//../c") == ["a", "c"]
    assert split_path("../../x") == ["x"]
    with pytest.raises(ValueError):
        split_path("../x", strict=True)


def test_absolute_and_relative_links_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("inside")
    (root / "abs").symlink_to("/etc")
    (root / "rel").symlink_to("../../../../etc")
    (root / "chain1").symlink_to("chain2")
    (root / "chain2").symlink_to("/abs/passwd")
    for name in ["abs/passwd", "rel/passwd", "chain1", "../../abs/passwd"]:
        assert resolve_in_root(root, name) == root / "etc/passwd"
    fd = open_in_root(root, "chain1")
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


def test_missing_tail_and_dotdot_after_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a/b").mkdir(parents=True)
    (root / "link").symlink_to("/a/b")
    assert resolve_in_root(root, "link/new") == root / "a/b/new"
    assert resolve_in_root(root, "link/..") == root / "a"
    assert resolve_in_root(root, "..") == root


def test_symlink_loop_is_eloop(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "x").symlink_to("y")
    (root / "y").symlink_to("x")
    with pytest.raises(OSError) as exc:
        resolve_in_root(root, "x/z")
    assert exc.value.errno == errno.ELOOP


def test_paths_longer_than_path_max(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    comp = "d" * 250
    fd = os.open(root, os.O_RDONLY)
    for _ in range(20):  # 5000+ chars: beyond PATH_MAX
        os.mkdir(comp, dir_fd=fd)
        nfd = os.open(comp, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    up = "/".join([".."] * 30)
    os.symlink(f"{up}/escape", "link", dir_fd=fd)
    os.close(fd)
    deep = "/".join([comp] * 20)
    assert resolve_in_root(root, f"{deep}/link") == root / "escape"
