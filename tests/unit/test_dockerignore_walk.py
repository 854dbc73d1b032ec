"""Unit tests for the filtered context walk, filtered open and ignore-file lookup."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import pytest

from lamina.dockerfile.dockerignore import ContextFilter, find_ignore_file, walk_context
from lamina.errors import BuildError, DockerfileError


def _tree(base: Path, *paths: str) -> None:
    for rel in paths:
        target = base / rel
        if rel.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rel)


def _paths(base: Path, excludes: list[str], includes: list[str] | None = None) -> list[str]:
    return [e.path for e in walk_context(base, excludes=excludes, includes=includes)]


def test_sorted_by_bytes_depth_first(tmp_path: Path) -> None:
    _tree(tmp_path, "b", "a/z", "a/B", "a.txt", "\u00e9", "Z")
    assert _paths(tmp_path, []) == ["Z", "a", "a/B", "a/z", "a.txt", "b", "\u00e9"]


def test_entries_carry_lstat(tmp_path: Path) -> None:
    _tree(tmp_path, "d/f")
    entries = list(walk_context(tmp_path, excludes=[]))
    assert [(e.path, e.is_dir) for e in entries] == [("d", True), ("d/f", False)]
    assert entries[1].stat.st_size == len("d/f")


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _tree(outside, "secret")
    ctx = tmp_path / "ctx"
    _tree(ctx, "real/f")
    (ctx / "link").symlink_to(outside)
    (ctx / "dangling").symlink_to(tmp_path / "nope")
    entries = {e.path: e for e in walk_context(ctx, excludes=[])}
    assert sorted(entries) == ["dangling", "link", "real", "real/f"]
    assert stat.S_ISLNK(entries["link"].stat.st_mode)
    assert not entries["link"].is_dir


def test_root_may_be_a_symlink(tmp_path: Path) -> None:
    _tree(tmp_path / "ctx", "f")
    (tmp_path / "alias").symlink_to(tmp_path / "ctx")
    assert _paths(tmp_path / "alias", []) == ["f"]


def test_excluded_dir_with_deep_exception(tmp_path: Path) -> None:
    _tree(tmp_path, "node_modules/a/x", "node_modules/keep/y", "src/z")
    got = _paths(tmp_path, ["node_modules", "!node_modules/keep"])
    assert got == ["node_modules", "node_modules/keep", "node_modules/keep/y", "src", "src/z"]


def test_wildcard_exception_enters_excluded_dirs(tmp_path: Path) -> None:
    _tree(tmp_path, "a/b/c.md", "a/b/d.txt", "e.txt")
    assert _paths(tmp_path, ["*", "!**/*.md"]) == ["a", "a/b", "a/b/c.md"]


def test_includes_and_excludes_together(tmp_path: Path) -> None:
    _tree(tmp_path, "app/main.py", "app/test_x.py", "docs/x")
    assert _paths(tmp_path, ["**/test_*"], ["app"]) == ["app", "app/main.py"]


def test_dockerfile_and_ignore_file_can_exclude_themselves(tmp_path: Path) -> None:
    _tree(tmp_path, "Dockerfile", ".dockerignore", "keep")
    assert _paths(tmp_path, ["Dockerfile", ".dockerignore"]) == ["keep"]


def test_bad_patterns_fail_before_walking(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match="syntax error"):
        walk_context(tmp_path / "missing", excludes=["a["])
    with pytest.raises(DockerfileError) as info:
        ContextFilter(includes=["!"])
    assert info.value.path == "include patterns"


def test_unreadable_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no such file"):
        list(walk_context(tmp_path / "missing", excludes=[]))


def test_filtered_open(tmp_path: Path) -> None:
    _tree(tmp_path, "a/b", "a/c", "top")
    (tmp_path / "ln").symlink_to(tmp_path / "a")
    context_filter = ContextFilter(excludes=["a", "!a/b"])
    with context_filter.open(tmp_path, "/a/b") as f:
        assert f.read() == b"a/b"
    for hidden in ("a/c", "a", "../x", ".", "nope"):
        with pytest.raises(FileNotFoundError):
            context_filter.open(tmp_path, hidden).close()
    with pytest.raises(OSError) as info:
        context_filter.open(tmp_path, "ln/b")
    assert info.value.errno == errno.ELOOP
    assert context_filter.is_included("top") and not context_filter.is_included("a/c")


def test_find_ignore_file_prefers_dockerfile_specific(tmp_path: Path) -> None:
    assert find_ignore_file(tmp_path) is None
    _tree(tmp_path, ".dockerignore", "sub/Dockerfile.dev", "sub/Dockerfile.dev.dockerignore")
    assert find_ignore_file(tmp_path) == tmp_path / ".dockerignore"
    assert find_ignore_file(tmp_path, "sub/Dockerfile.dev") == (
        tmp_path / "sub" / "Dockerfile.dev.dockerignore"
    )
    absolute = tmp_path / "sub" / "Dockerfile.dev"
    assert find_ignore_file(tmp_path / "elsewhere", absolute) == (
        tmp_path / "sub" / "Dockerfile.dev.dockerignore"
    )
    (tmp_path / "Dockerfile.dockerignore").mkdir()  # a directory does not count
    assert find_ignore_file(tmp_path, "Dockerfile") == tmp_path / ".dockerignore"
