"""COPY after an edit links the previous layer's unchanged files (lamina.build.reuse) and still
makes exactly the layer a cold build makes: overlay and vfs stores, hard links in the context,
mode and time changes, --no-cache, the old image removed, a link that cannot be made."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.build.context import resolve_sources
from lamina.build.copy import copy_into
from lamina.build.reuse import LayerReuse, Previous, signature
from lamina.ops.archive import import_rootfs
from lamina.ops.build import build
from lamina.snapshot import write_layer
from lamina.snapshot.writer import EarlierTar
from lamina.store import Store

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root]

EPOCH = 1700000000
OLD_NS = 1_600_000_000 * 10**9  # context times before the epoch: the tar keeps them unclamped
DOCKERFILE = "FROM busybox\nCOPY . /data/\n"


def _age(root: Path) -> None:
    """Give every entry below ``root`` a distinct old time (children before their dirs), then
    wait out the racy window so the copy may record them."""
    entries = sorted(root.rglob("*"), key=lambda p: -len(p.parts))
    for i, path in enumerate([*entries, root]):
        stamp = OLD_NS + i * 1_000_003
        os.utime(path, ns=(stamp, stamp), follow_symlinks=False)
    time.sleep(0.1)


def make_context(root: Path) -> Path:
    for i in range(40):
        sub = root / f"d{i % 3}" / f"e{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.txt").write_bytes(os.urandom(200 + i))
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "d0" / "pair-a").write_bytes(b"linked\n")
    os.link(root / "d0" / "pair-a", root / "d0" / "pair-b")
    (root / "d1" / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "d1" / "run.sh", 0o755)
    (root / "d2" / "link").symlink_to("../big.bin")
    (root / "empty").mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    _age(root)
    return root


@pytest.fixture(params=["overlay", "vfs"])
def driver(request: pytest.FixtureRequest) -> str:
    if request.param == "overlay":
        request.applymarker(pytest.mark.needs_overlay)
    return str(request.param)


def new_store(path: Path, busybox_tar: Path, driver: str) -> Store:
    store = Store(path, driver=driver)
    import_rootfs(store, str(busybox_tar), "busybox", epoch=EPOCH)
    return store


def top_dir(store: Store, tag: str) -> Path:
    layers = store.get_image(tag).layers()
    return store.layer_dirs(layers[-1].chain_id).upper  # type: ignore[attr-defined]


def cold_digest(tmp_path: Path, busybox_tar: Path, driver: str, ctx: Path) -> str:
    fresh = new_store(tmp_path / f"cold-{time.monotonic_ns()}", busybox_tar, driver)
    return str(build(fresh, ctx, tags=["c"], epoch=EPOCH, no_cache=True).digest)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return make_context(tmp_path / "ctx")


def test_an_edit_links_unchanged_files_and_matches_a_cold_build(
    tmp_path: Path, busybox_tar: Path, driver: str, ctx: Path
) -> None:
    store = new_store(tmp_path / "root", busybox_tar, driver)
    build(store, ctx, tags=["one"], epoch=EPOCH)
    before = top_dir(store, "one")
    (ctx / "d0" / "e0" / "f0.txt").write_bytes(b"edited\n")
    os.chmod(ctx / "d1" / "e1" / "f1.txt", 0o600)  # same content, other mode: copied
    result = build(store, ctx, tags=["two"], epoch=EPOCH)
    after = top_dir(store, "two")

    same = os.lstat(after / "data/big.bin")
    assert same.st_ino == os.lstat(before / "data/big.bin").st_ino  # linked, not copied
    for rel in ("data/d0/e0/f0.txt", "data/d1/e1/f1.txt"):
        assert os.lstat(after / rel).st_ino != os.lstat(before / rel).st_ino
    pair = os.lstat(after / "data/d0/pair-a"), os.lstat(after / "data/d0/pair-b")
    assert pair[0].st_ino == pair[1].st_ino != os.lstat(before / "data/d0/pair-a").st_ino
    assert os.path.islink(after / "data/d2/link")
    assert str(result.digest) == cold_digest(tmp_path, busybox_tar, driver, ctx)


def test_repeated_edits_keep_linking_and_stay_reproducible(
    tmp_path: Path, busybox_tar: Path, driver: str, ctx: Path
) -> None:
    store = new_store(tmp_path / "root", busybox_tar, driver)
    build(store, ctx, tags=["x"], epoch=EPOCH)
    first = os.lstat(top_dir(store, "x") / "data/big.bin").st_ino
    for i in range(2):
        (ctx / "d2" / "e2" / "f2.txt").write_bytes(f"edit {i}\n".encode())
        os.utime(ctx / "d2" / "e2", ns=(OLD_NS, OLD_NS))  # the dir time is part of the layer
        result = build(store, ctx, tags=["x"], epoch=EPOCH)
        assert os.lstat(top_dir(store, "x") / "data/big.bin").st_ino == first
        assert str(result.digest) == cold_digest(tmp_path, busybox_tar, driver, ctx)


def test_no_cache_links_nothing(tmp_path: Path, busybox_tar: Path, ctx: Path) -> None:
    store = new_store(tmp_path / "root", busybox_tar, "vfs")
    build(store, ctx, tags=["one"], epoch=EPOCH)
    (ctx / "d0" / "e0" / "f0.txt").write_bytes(b"edited\n")
    build(store, ctx, tags=["two"], epoch=EPOCH, no_cache=True)
    assert os.lstat(top_dir(store, "two") / "data/big.bin").st_nlink == 1


@pytest.mark.needs_overlay
def test_removing_the_old_image_leaves_the_new_layer_intact(
    tmp_path: Path, busybox_tar: Path, ctx: Path
) -> None:
    store = new_store(tmp_path / "root", busybox_tar, "overlay")
    build(store, ctx, tags=["one"], epoch=EPOCH)
    (ctx / "big.bin").write_bytes(b"small now\n")
    build(store, ctx, tags=["two"], epoch=EPOCH)
    old = top_dir(store, "one")
    store.remove_image("one")
    store.gc()
    assert not old.exists()
    assert store.check() == []
    layer = store.get_image("two").layers()[-1]
    out = io.BytesIO()
    written = write_layer(top_dir(store, "two"), out, kind="overlay-upper", epoch=EPOCH)
    assert written.diff_id == layer.diff_id()
    assert (top_dir(store, "two") / "data/d0/e0/f0.txt").read_bytes() == (
        ctx / "d0/e0/f0.txt"
    ).read_bytes()


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths made immutable (``chattr +i``) for the test; made mutable again afterwards."""
    if shutil.which("chattr") is None:
        pytest.fail("chattr (e2fsprogs) is needed")
    paths: list[Path] = []
    yield paths
    for path in paths:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_failing_link_falls_back_to_copying(
    tmp_path: Path, ctx: Path, immutable: list[Path]
) -> None:
    """linkat(2) of an immutable file fails (EPERM): the file is copied, identically."""
    prev_upper, new_upper = tmp_path / "prev", tmp_path / "new"
    prev_upper.mkdir()
    copy_into(prev_upper, resolve_sources(ctx, ["."]), "/data/")
    probe = prev_upper / "data/big.bin"
    if subprocess.run(["chattr", "+i", str(probe)], check=False).returncode != 0:
        pytest.fail(f"chattr +i is not supported on {probe}")
    immutable.append(probe)
    src = ctx / "big.bin"
    files = {"big.bin": signature(os.lstat(src))}
    files["d0/e0/f0.txt"] = signature(os.lstat(ctx / "d0/e0/f0.txt"))
    previous = Previous(upper=prev_upper, root=str(ctx), top="data", files=files)
    new_upper.mkdir()
    reuse = LayerReuse(previous, new_upper, new_upper, False)
    copy_into(new_upper, resolve_sources(ctx, ["."]), "/data/", reuse=reuse)
    assert reuse.apply() == 1  # f0.txt linked, big.bin copied
    assert os.lstat(new_upper / "data/d0/e0/f0.txt").st_nlink == 2
    assert os.lstat(new_upper / "data/big.bin").st_nlink == 1
    assert (new_upper / "data/big.bin").read_bytes() == src.read_bytes()
    a, b = io.BytesIO(), io.BytesIO()
    write_layer(prev_upper, a, kind="dir", epoch=EPOCH)
    write_layer(new_upper, b, kind="dir", epoch=EPOCH)
    assert a.getvalue() == b.getvalue()


def test_a_tar_copies_earlier_entries_of_the_same_inodes_only(tmp_path: Path) -> None:
    """write_layer with an EarlierTar gives the bytes it gives without one."""
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "d").mkdir(parents=True)
    for i in range(5):
        (old / "d" / f"f{i}").write_bytes(os.urandom(700 * i + 1))
    (old / "big").write_bytes(os.urandom(3 << 20))
    earlier_tar = tmp_path / "old.tar"
    offsets: dict[str, tuple[int, int]] = {}
    with earlier_tar.open("wb") as f:
        write_layer(old, f, kind="dir", epoch=EPOCH, offsets=offsets)
    assert set(offsets) == {"big", *[f"d/f{i}" for i in range(5)]}
    (new / "d").mkdir(parents=True)
    for name in ("big", "d/f0", "d/f1", "d/f3"):
        os.link(old / name, new / name)
    (new / "d/f2").write_bytes(b"same path, other inode\n")
    (new / "d/f9").write_bytes(b"new\n")
    for path in (new / "d", new, old / "d", old):
        os.utime(path, ns=(OLD_NS, OLD_NS))
    entries: dict[str, tuple[int, int, int, int]] = {}
    for rel in ("big", "d/f0", "d/f1", "d/f2", "d/f3"):
        st = os.lstat(old / rel)  # d/f2 lists the old inode: must not be copied
        entries[rel] = (st.st_dev, st.st_ino, *offsets[rel])
    plain, reused = io.BytesIO(), io.BytesIO()
    again: dict[str, tuple[int, int]] = {}
    write_layer(new, plain, kind="dir", epoch=EPOCH)
    with earlier_tar.open("rb") as f:
        earlier = EarlierTar(fd=f.fileno(), entries=entries)
        write_layer(new, reused, kind="dir", epoch=EPOCH, earlier=earlier, offsets=again)
    assert reused.getvalue() == plain.getvalue()
    start, end = again["d/f3"]
    assert reused.getvalue()[start:end] == earlier_tar.read_bytes()[slice(*offsets["d/f3"])]


@pytest.mark.needs_overlay
def test_the_record_lets_the_next_tar_copy_the_previous_one(
    tmp_path: Path, busybox_tar: Path, ctx: Path
) -> None:
    store = new_store(tmp_path / "root", busybox_tar, "overlay")
    build(store, ctx, tags=["one"], epoch=EPOCH)
    (ctx / "d0" / "e0" / "f0.txt").write_bytes(b"edited\n")
    result = build(store, ctx, tags=["two"], epoch=EPOCH)
    (record,) = (store.root / "buildcache" / "reuse").glob("*/*.json")
    saved = json.loads(record.read_bytes())
    assert saved["epoch"] == EPOCH and saved["top"] == "data"
    assert "@" in saved["files"]["big.bin"]  # signature @ start:end in the tar
    assert saved["diff_id"] == str(store.get_image("two").layers()[-1].diff_id())
    assert str(result.digest) == cold_digest(tmp_path, busybox_tar, "overlay", ctx)


@pytest.mark.needs_overlay
@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM busybox\nCOPY --chown=1:2 --chmod=640 . /data/\n",
        "FROM busybox\nCOPY . /bin/\n",  # into a directory of the base image (copied up)
        "FROM busybox\nWORKDIR /w\nCOPY --link . sub/\n",
    ],
)
def test_flags_and_existing_destinations_match_a_cold_build(
    tmp_path: Path, busybox_tar: Path, ctx: Path, dockerfile: str
) -> None:
    (ctx / "Dockerfile").write_text(dockerfile)
    os.setxattr(ctx / "d2" / "e1" / "f5.txt", "user.note", b"kept")  # copied, never linked
    _age(ctx)
    store = new_store(tmp_path / "root", busybox_tar, "overlay")
    build(store, ctx, tags=["one"], epoch=EPOCH)
    (ctx / "d0" / "e0" / "f0.txt").write_bytes(b"edited\n")
    result = build(store, ctx, tags=["two"], epoch=EPOCH)
    upper = top_dir(store, "two")
    (big,) = upper.rglob("big.bin")
    (noted,) = upper.rglob("f5.txt")
    assert os.lstat(big).st_nlink == 2 and os.lstat(noted).st_nlink == 1
    assert os.getxattr(noted, "user.note") == b"kept"
    assert str(result.digest) == cold_digest(tmp_path, busybox_tar, "overlay", ctx)


@pytest.mark.needs_overlay
def test_without_the_previous_tar_the_files_are_still_linked(
    tmp_path: Path, busybox_tar: Path, ctx: Path
) -> None:
    """The previous layer's blob gone (gc'd cache): links still, every tar entry written."""
    store = new_store(tmp_path / "root", busybox_tar, "overlay")
    build(store, ctx, tags=["one"], epoch=EPOCH)
    store.blobs.path(store.get_image("one").layers()[-1].diff_id()).unlink()
    (ctx / "d0" / "e0" / "f0.txt").write_bytes(b"edited\n")
    result = build(store, ctx, tags=["two"], epoch=EPOCH)
    assert os.lstat(top_dir(store, "two") / "data/big.bin").st_nlink == 2
    assert str(result.digest) == cold_digest(tmp_path, busybox_tar, "overlay", ctx)
