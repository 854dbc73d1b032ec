"""COPY into real rootfs directories: Docker's destination rules, metadata, links, safety."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lamina.build.chown import resolve_chown
from lamina.build.context import BuildContext, resolve_sources
from lamina.build.copy import copy_into
from lamina.errors import BuildError

MTIME = 1_600_000_000 * 10**9
EPOCH = 1_700_000_000 * 10**9


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "dir/sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    (root / "dir/c.txt").write_text("c")
    (root / "dir/sub/d.md").write_text("d")
    (root / "dir/link").symlink_to("c.txt")
    (root / "dir/abs").symlink_to("/etc/shadow")
    os.link(root / "dir/c.txt", root / "dir/sub/hard")
    os.chmod(root / "dir/sub", 0o750)
    os.chmod(root / "a.txt", 0o4755)
    for path in [*root.rglob("*"), root]:
        os.utime(path, ns=(MTIME, MTIME), follow_symlinks=False)
    return root


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\napp:x:1001:\nstaff:x:50:\n")
    (root / "existing").mkdir()
    return root


def copy(ctx: Path, rootfs: Path, names: list[str], dest: str, **kw: object) -> None:
    with BuildContext.open(ctx) as context:
        copy_into(rootfs, context.resolve(names), dest, **kw)  # type: ignore[arg-type]


def test_file_to_name_to_slash_and_to_existing_dir(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["a.txt"], "/renamed")
    copy(ctx, rootfs, ["a.txt"], "/newdir/")
    copy(ctx, rootfs, ["a.txt"], "/existing")
    assert (rootfs / "renamed").read_text() == "a"
    assert (rootfs / "newdir/a.txt").read_text() == "a"
    assert (rootfs / "existing/a.txt").read_text() == "a"


def test_directory_source_copies_its_contents(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["dir"], "/app")
    assert sorted(p.name for p in (rootfs / "app").iterdir()) == ["abs", "c.txt", "link", "sub"]
    assert not (rootfs / "app/dir").exists()
    assert (rootfs / "app/sub/d.md").read_text() == "d"


def test_multiple_sources_need_a_directory_destination(ctx: Path, rootfs: Path) -> None:
    with pytest.raises(BuildError) as info:
        copy(ctx, rootfs, ["a.txt", "b.txt"], "/multi")
    assert "more than one source file, the destination must be a directory and end with a /" in (
        info.value.message
    )
    with pytest.raises(BuildError, match="must be a directory"):
        copy(ctx, rootfs, ["*.txt"], "/multi")
    copy(ctx, rootfs, ["a.txt", "b.txt"], "/multi/")
    copy(ctx, rootfs, ["*.txt"], "/existing")
    assert sorted(p.name for p in (rootfs / "multi").iterdir()) == ["a.txt", "b.txt"]
    assert sorted(p.name for p in (rootfs / "existing").iterdir()) == ["a.txt", "b.txt"]


def test_destination_relative_to_workdir(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["a.txt"], "rel/", workdir="/work/dir")
    copy(ctx, rootfs, ["b.txt"], ".", workdir="/work/dir")
    assert (rootfs / "work/dir/rel/a.txt").is_file()
    assert (rootfs / "work/dir/b.txt").is_file()


def test_metadata_is_kept_and_owner_is_root(ctx: Path, rootfs: Path) -> None:
    os.chown(ctx / "dir/c.txt", 1234, 1234)
    copy(ctx, rootfs, ["a.txt", "dir"], "/out/")
    out = rootfs / "out"
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o4755
    assert stat.S_IMODE((out / "sub").stat().st_mode) == 0o750
    assert (out / "c.txt").stat().st_mtime_ns == MTIME
    assert (out / "sub").stat().st_mtime_ns == MTIME
    assert (out / "c.txt").stat().st_uid == 0 and (out / "c.txt").stat().st_gid == 0
    # The parent created for the destination: 0755, root-owned.
    assert stat.S_IMODE(out.stat().st_mode) == 0o755 and out.stat().st_uid == 0


def test_timestamp_overrides_times(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["dir"], "/deep/out", timestamp_ns=EPOCH)
    for path in ("deep", "deep/out", "deep/out/c.txt", "deep/out/sub", "deep/out/link"):
        assert os.lstat(rootfs / path).st_mtime_ns == EPOCH, path


def test_chown_numeric_and_by_name(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["dir"], "/num/x/", chown=(55, 55))
    owner = resolve_chown(rootfs, "app:staff")
    copy(ctx, rootfs, ["a.txt"], "/named/y/", chown=owner)
    for path in ("num", "num/x", "num/x/c.txt", "num/x/sub/d.md"):
        st = os.lstat(rootfs / path)
        assert (st.st_uid, st.st_gid) == (55, 55), path
    assert os.lstat(rootfs / "num/x/link").st_uid == 55
    st = (rootfs / "named/y/a.txt").stat()
    assert (st.st_uid, st.st_gid) == (1000, 50)
    # Created parents belong to the --chown owner too (fsutil MkdirAll with the chowner).
    assert (rootfs / "named").stat().st_uid == 1000
    assert (rootfs / "etc").stat().st_uid == 0  # existing dirs are left alone


def test_chmod_octal_and_symbolic_apply_to_files_and_dirs(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["dir"], "/oct/", chmod="0640")
    copy(ctx, rootfs, ["dir"], "/sym/", chmod="u+x,g-w,o=")
    assert stat.S_IMODE((rootfs / "oct/c.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((rootfs / "oct/sub").stat().st_mode) == 0o640
    assert stat.S_IMODE((rootfs / "sym/c.txt").stat().st_mode) == 0o740
    assert stat.S_IMODE((rootfs / "sym/sub").stat().st_mode) == 0o750
    assert stat.S_IMODE((rootfs / "oct").stat().st_mode) == 0o755  # created parent


def test_parents_keeps_source_paths(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["dir/sub/d.md", "dir/c.txt", "a.txt"], "/p/", parents=True)
    assert (rootfs / "p/dir/sub/d.md").read_text() == "d"
    assert (rootfs / "p/dir/c.txt").read_text() == "c"
    assert (rootfs / "p/a.txt").read_text() == "a"
    assert stat.S_IMODE((rootfs / "p/dir/sub").stat().st_mode) == 0o750


def test_exclude_patterns_relative_to_each_source(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["dir"], "/ex/", excludes=["**/*.md", "link"])
    assert (rootfs / "ex/c.txt").exists()
    assert not (rootfs / "ex/link").exists() and not (rootfs / "ex/sub/d.md").exists()
    copy(ctx, rootfs, ["dir"], "/ex2/", excludes=["sub", "!sub/hard"])
    assert (rootfs / "ex2/sub/hard").exists() and not (rootfs / "ex2/sub/d.md").exists()


def test_symlinks_kept_and_hardlinks_kept(ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["dir"], "/l/")
    assert os.readlink(rootfs / "l/link") == "c.txt"
    assert os.readlink(rootfs / "l/abs") == "/etc/shadow"  # kept verbatim, never followed
    assert (rootfs / "l/c.txt").stat().st_ino == (rootfs / "l/sub/hard").stat().st_ino


def test_top_level_symlink_source_is_followed_inside_context(ctx: Path, rootfs: Path) -> None:
    (ctx / "etc").mkdir()
    (ctx / "etc/shadow").write_text("context shadow")
    copy(ctx, rootfs, ["dir/abs"], "/s/")
    assert (rootfs / "s/abs").read_text() == "context shadow"


def test_dest_through_image_symlink_stays_in_rootfs(
    tmp_path: Path, ctx: Path, rootfs: Path
) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_text("host")
    (rootfs / "dest").symlink_to(str(sentinel))  # absolute: must mean <rootfs>/<sentinel path>
    (rootfs / "rel").symlink_to("../../../../../../../" + str(sentinel))
    copy(ctx, rootfs, ["a.txt"], "/dest/")
    copy(ctx, rootfs, ["b.txt"], "/rel/")
    copy(ctx, rootfs, ["dir"], "/dest/tree")
    inside = rootfs / str(sentinel).lstrip("/")
    assert (inside / "a.txt").read_text() == "a" and (inside / "b.txt").read_text() == "b"
    assert (inside / "tree/c.txt").exists()
    assert sorted(p.name for p in sentinel.iterdir()) == ["keep"]


def test_proc_self_workdir_tricks_stay_inside(tmp_path: Path, ctx: Path, rootfs: Path) -> None:
    copy(ctx, rootfs, ["a.txt"], "x", workdir="/proc/self/root/tmp")
    copy(ctx, rootfs, ["b.txt"], "y", workdir="/proc/self/fd/0")
    assert (rootfs / "proc/self/root/tmp/x").read_text() == "a"
    assert (rootfs / "proc/self/fd/0/y").read_text() == "b"


def test_symlink_in_image_where_a_directory_goes_is_refused(
    tmp_path: Path, ctx: Path, rootfs: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (rootfs / "app").mkdir()
    (rootfs / "app/sub").symlink_to(str(outside))
    with pytest.raises(BuildError, match="cannot copy to non-directory"):
        copy(ctx, rootfs, ["dir"], "/app")
    assert list(outside.iterdir()) == []


def test_existing_symlink_where_a_file_goes_is_replaced(
    tmp_path: Path, ctx: Path, rootfs: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file")
    (rootfs / "app").mkdir()
    (rootfs / "app/c.txt").symlink_to(str(victim))
    copy(ctx, rootfs, ["dir"], "/app")
    assert victim.read_text() == "host file"
    assert not (rootfs / "app/c.txt").is_symlink()
    assert (rootfs / "app/c.txt").read_text() == "c"


def test_file_over_directory_is_an_error(ctx: Path, rootfs: Path) -> None:
    (rootfs / "t/c.txt").mkdir(parents=True)
    with pytest.raises(BuildError, match="cannot replace directory"):
        copy(ctx, rootfs, ["dir"], "/t")


def test_fifo_inside_a_copied_directory_is_refused(ctx: Path, rootfs: Path, alarm: None) -> None:
    os.mkfifo(ctx / "dir/sub/pipe")
    with pytest.raises(BuildError, match="named pipe"):
        copy(ctx, rootfs, ["dir"], "/f/")


def test_large_file_is_copied_exactly(tmp_path: Path, rootfs: Path) -> None:
    ctx = tmp_path / "big"
    ctx.mkdir()
    block = os.urandom(1 << 20)
    with (ctx / "blob").open("wb") as f:
        for _ in range(24):
            f.write(block)
    copy(ctx, rootfs, ["blob"], "/b")
    assert (rootfs / "b").stat().st_size == 24 << 20
    with (rootfs / "b").open("rb") as f:
        assert f.read(1 << 20) == block


def test_copy_from_rootfs_resolves_links_inside_it_and_keeps_owners(
    tmp_path: Path, rootfs: Path
) -> None:
    stage = tmp_path / "stage"
    (stage / "usr/bin").mkdir(parents=True)
    (stage / "usr/bin/tool").write_text("tool")
    os.chown(stage / "usr/bin/tool", 42, 43)
    (stage / "bin").symlink_to("/usr/bin")  # absolute link inside the stage's rootfs
    sources = resolve_sources(stage, ["/bin/tool"], preserve_owner=True)
    copy_into(rootfs, sources, "/opt/")
    st = (rootfs / "opt/tool").stat()
    assert (rootfs / "opt/tool").read_text() == "tool" and (st.st_uid, st.st_gid) == (42, 43)


def test_dockerignore_exceptions_inside_excluded_directories(ctx: Path, rootfs: Path) -> None:
    (ctx / ".dockerignore").write_text("dir\n!dir/sub/d.md\n*.txt\n")
    copy(ctx, rootfs, ["."], "/all/")
    found = sorted(p.relative_to(rootfs / "all").as_posix() for p in (rootfs / "all").rglob("*"))
    assert found == [".dockerignore", "dir", "dir/sub", "dir/sub/d.md"]
    assert stat.S_IMODE((rootfs / "all/dir/sub").stat().st_mode) == 0o750
