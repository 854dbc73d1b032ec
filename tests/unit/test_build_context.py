"""Build context: Go-style wildcards, source resolution inside the root, --chown/--chmod parsing."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from lamina._internal.compression import open_compressor
from lamina.build.chown import Owner, parse_chmod, resolve_chown
from lamina.build.context import BuildContext, glob_match, has_wildcard, resolve_sources
from lamina.build.copy import target_path
from lamina.dockerfile.parser import MAX_DOCKERFILE
from lamina.errors import BuildError, UnsafeArchive


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", ".txt", True),
        ("*", "a/b", False),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[^a-c]x", "dx", True),
        ("[^a-c]x", "/x", False),
        ("[\\]]", "]", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "aXbY", False),
    ],
)
def test_glob_match_follows_go_filepath_match(pattern: str, name: str, expected: bool) -> None:
    assert glob_match(pattern, name) is expected


@pytest.mark.parametrize("pattern", ["[", "[a-", "\\", "[z-a]", "[]"])
def test_glob_match_rejects_malformed_patterns(pattern: str) -> None:
    with pytest.raises(BuildError, match="syntax error in pattern"):
        glob_match(pattern, "x")


def test_has_wildcard_skips_escapes() -> None:
    assert has_wildcard("a*") and has_wildcard("x[ab]") and has_wildcard("?")
    assert not has_wildcard("a\\*") and not has_wildcard("plain")


@pytest.mark.parametrize(
    ("spec", "mode", "is_dir", "expected"),
    [
        ("755", 0o100644, False, 0o100755),
        ("0640", 0o40755, True, 0o40640),
        ("4755", 0o100644, False, 0o104755),
        ("u+x,g-w", 0o100664, False, 0o100744),
        ("a=r", 0o100777, False, 0o100444),
        ("go=u", 0o100640, False, 0o100666),
        ("+X", 0o100644, False, 0o100644),
        ("+X", 0o100744, False, 0o100755),
        ("+X", 0o40644, True, 0o40755),
        ("o-rwx,u+s", 0o100755, False, 0o104750),
    ],
)
def test_chmod_octal_and_symbolic(spec: str, mode: int, is_dir: bool, expected: int) -> None:
    assert oct(parse_chmod(spec).apply(mode, is_dir=is_dir)) == oct(expected)


@pytest.mark.parametrize("spec", ["", "u+z", "99", "17777", "u+x,", "x+u"])
def test_chmod_rejects_invalid_specs(spec: str) -> None:
    with pytest.raises(BuildError, match="invalid --chmod"):
        parse_chmod(spec)


def _passwd_rootfs(root: Path) -> Path:
    (root / "lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "lib/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
    # An absolute link: it must be read as <root>/lib/passwd, not the host's /lib/passwd.
    (root / "etc/passwd").symlink_to("/lib/passwd")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:app\n")
    return root


def test_chown_numeric_without_passwd(tmp_path: Path) -> None:
    assert resolve_chown(tmp_path, "55") == Owner(55, 55)
    assert resolve_chown(tmp_path, "55:7") == Owner(55, 7)


def test_chown_names_resolved_inside_rootfs(tmp_path: Path) -> None:
    root = _passwd_rootfs(tmp_path / "rootfs")
    assert resolve_chown(root, "app") == Owner(1000, 1001)
    assert resolve_chown(root, "app:staff") == Owner(1000, 50)
    assert resolve_chown(root, "0:staff") == Owner(0, 50)
    with pytest.raises(BuildError, match="unable to find user nobody"):
        resolve_chown(root, "nobody")
    with pytest.raises(BuildError, match="unable to find group wheel"):
        resolve_chown(root, "app:wheel")
    with pytest.raises(BuildError, match="invalid --chown"):
        resolve_chown(root, "app:")


@pytest.mark.parametrize(
    ("dest", "workdir", "expected"),
    [
        ("x", "/app", ("/app/x", False)),
        ("x/", "/app", ("/app/x", True)),
        (".", "/app", ("/app", True)),
        ("./", "/", ("/", True)),
        ("/abs/../y", "/app", ("/y", False)),
        ("../../..", "/a", ("/", True)),
    ],
)
def test_target_path(dest: str, workdir: str, expected: tuple[str, bool]) -> None:
    assert target_path(dest, workdir) == expected


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "dir/sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    (root / "dir/c.txt").write_text("c")
    (root / "dir/sub/d.md").write_text("d")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("inside\n")
    (root / "escape").symlink_to("/etc/passwd")
    (root / "up").symlink_to("../../../../../../etc/passwd")
    return root


def test_names_are_relative_to_the_context_root(ctx: Path) -> None:
    for name in ("a.txt", "/a.txt", "../a.txt", "./dir/../a.txt"):
        (src,) = resolve_sources(ctx, [name])
        assert src.path == "a.txt" and (src.root / src.path).read_text() == "a"


def test_symlinks_leaving_the_context_resolve_inside(ctx: Path) -> None:
    for name in ("escape", "up"):
        (src,) = resolve_sources(ctx, [name])
        assert src.path == "etc/passwd"
        assert src.name == name
        assert src.full_path.read_text() == "inside\n"


def test_link_out_of_context_to_a_missing_path_is_not_found(ctx: Path) -> None:
    (ctx / "zero").symlink_to("/dev/zero")
    with pytest.raises(BuildError, match=r"file not found in build context.*: zero"):
        resolve_sources(ctx, ["zero"])


def test_wildcards_match_in_byte_order(ctx: Path) -> None:
    found = resolve_sources(ctx, ["*.txt", "dir/*/*.md", "d?r"])
    assert [s.path for s in found] == ["a.txt", "b.txt", "dir/sub/d.md", "dir"]


def test_missing_source_message(ctx: Path) -> None:
    with pytest.raises(BuildError) as info:
        resolve_sources(ctx, ["nope.txt"])
    assert info.value.message == (
        "file not found in build context or excluded by .dockerignore: nope.txt"
    )


def test_wildcard_matching_nothing(ctx: Path) -> None:
    with pytest.raises(BuildError, match="no source files were specified"):
        resolve_sources(ctx, ["*.none", "nodir/*"])
    assert resolve_sources(ctx, ["*.none"], allow_empty_wildcard=True) == []
    assert [s.path for s in resolve_sources(ctx, ["*.none", "a.txt"])] == ["a.txt"]


def test_fifo_is_refused_without_blocking(ctx: Path, alarm: None) -> None:
    os.mkfifo(ctx / "pipe")
    start = time.monotonic()
    with pytest.raises(BuildError, match="pipe: it is a named pipe"):
        resolve_sources(ctx, ["pipe"])
    with pytest.raises(BuildError, match="named pipe"):
        resolve_sources(ctx, ["pi*"])
    assert time.monotonic() - start < 5


def test_dockerignore_hides_sources(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("*.txt\n!b.txt\ndir/sub\n")
    with BuildContext.open(ctx) as context:
        assert context.excludes == ["*.txt", "!b.txt", "dir/sub"]
        with pytest.raises(BuildError, match=r"not found.*: a\.txt"):
            context.resolve(["a.txt"])
        with pytest.raises(BuildError, match=r"not found.*: dir/sub/d\.md"):
            context.resolve(["dir/sub/d.md"])
        assert [s.path for s in context.resolve(["*.txt"])] == ["b.txt"]


def test_dockerfile_specific_ignore_file_wins(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("b.txt\n")
    (ctx / "build").mkdir()
    (ctx / "build/app.Dockerfile.dockerignore").write_text("a.txt\n")
    with BuildContext.open(ctx, dockerfile="build/app.Dockerfile") as context:
        assert context.excludes == ["a.txt"]
        assert [s.path for s in context.resolve(["b.txt"])] == ["b.txt"]


def _context_tar(entries: dict[str, bytes], compression: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    if compression in ("none", "gzip", "zstd"):
        out = io.BytesIO()
        writer = open_compressor(out, compression)
        writer.write(raw.getvalue())
        writer.close()
        return out.getvalue()
    import bz2
    import lzma

    return bz2.compress(raw.getvalue()) if compression == "bzip2" else lzma.compress(raw.getvalue())


@pytest.mark.parametrize("compression", ["none", "gzip", "bzip2", "xz", "zstd"])
def test_tar_contexts_every_compression(tmp_path: Path, compression: str) -> None:
    data = _context_tar(
        {
            "Dockerfile": b"FROM scratch\n",
            ".dockerignore": b"secret\n",
            "app/x": b"x",
            "secret": b"s",
        },
        compression,
    )
    (tmp_path / "ctx.bin").write_bytes(data)
    context = BuildContext.open(tmp_path / "ctx.bin", tmp_dir=tmp_path)
    with context:
        root = context.root
        assert (root / "app/x").read_bytes() == b"x"
        assert [s.path for s in context.resolve(["app/x"])] == ["app/x"]
        with pytest.raises(BuildError, match="not found"):
            context.resolve(["secret"])
    assert not root.exists()


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_stdin_context(tmp_path: Path, compression: str) -> None:
    data = _context_tar({"f": b"from stdin"}, compression)
    with BuildContext.open("-", stdin=io.BytesIO(data), tmp_dir=tmp_path) as context:
        (src,) = context.resolve(["f"])
        assert src.full_path.read_bytes() == b"from stdin"


@pytest.mark.parametrize(
    "text", [b"FROM busybox\nRUN true\n", b"", b"# syntax=docker/dockerfile:1\n" + b"#" * 2000]
)
def test_stdin_that_is_not_an_archive_is_the_dockerfile(tmp_path: Path, text: bytes) -> None:
    """`docker build - < Dockerfile`: stdin is the Dockerfile and the context is empty."""
    with BuildContext.open("-", stdin=io.BytesIO(text), tmp_dir=tmp_path) as context:
        root = context.root
        assert sorted(os.listdir(root)) == ["Dockerfile"]
        assert (root / "Dockerfile").read_bytes() == text
        with pytest.raises(BuildError, match="not found"):
            context.resolve(["Dockerfile.other"])
    assert not root.exists()
    big = io.BytesIO(b"#" * MAX_DOCKERFILE + b"\n")
    with pytest.raises(BuildError, match="over"):
        BuildContext.open("-", stdin=big, tmp_dir=tmp_path)


def test_hostile_tar_context_writes_nothing_outside(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("../../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"e"))
    (tmp_path / "work").mkdir()
    with pytest.raises(UnsafeArchive):
        BuildContext.open("-", stdin=io.BytesIO(raw.getvalue()), tmp_dir=tmp_path / "work")
    assert not (tmp_path / "evil").exists()
    assert list((tmp_path / "work").iterdir()) == []


def test_missing_context(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="unable to prepare context"):
        BuildContext.open(tmp_path / "missing")
