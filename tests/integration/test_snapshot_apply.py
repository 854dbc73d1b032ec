"""Round trips (tree -> tar -> tree), overlay vs merged application, determinism."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.snapshot.apply import apply_layer
from lamina.snapshot.tarstream import TarReader
from lamina.snapshot.writer import write_layer
from lamina.testing.layers import (
    EPOCH,
    build_tar,
    device,
    directory,
    file,
    opaque_in,
    symlink,
    tree_manifest,
    whiteout_of,
)

# vfs_cap_data v2 granting cap_net_bind_service (bit 10) in the permitted set.
CAP_NET_BIND = b"\x01\x00\x00\x02" + b"\x00\x04\x00\x00" + bytes(12)


def _touch_all(root: Path, t: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)
    os.utime(root, (t, t))


def make_rich_tree(root: Path) -> Path:
    """A tree with every entry type and attribute a layer can carry (needs root)."""
    root.mkdir()
    (root / "etc").mkdir()
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    (root / "root").mkdir(mode=0o700)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin/su").write_bytes(b"\x7fELF fake su")
    os.chmod(root / "bin/su", 0o4755)
    (root / "bin/wall").write_bytes(b"wall")
    os.chown(root / "bin/wall", 0, 5)
    os.chmod(root / "bin/wall", 0o2755)
    (root / "bin/ping").write_bytes(b"ping")
    os.setxattr(root / "bin/ping", "security.capability", CAP_NET_BIND)
    (root / "bin/sh").symlink_to("/bin/busybox")
    (root / "bin/rel").symlink_to("../etc/passwd")
    (root / "dangling").symlink_to("/nowhere/at/all")
    (root / "home/user").mkdir(parents=True)
    (root / "home/user/notes").write_text("mine")
    os.chown(root / "home/user", 1000, 1000)
    os.chown(root / "home/user/notes", 1000, 1000)
    os.setxattr(root / "home/user/notes", "user.comment", b"\x00binary\xff")
    os.setxattr(root / "home/user", "user.dirnote", b"d")
    (root / "data").mkdir()
    (root / "data/big").write_bytes(os.urandom(3 * (1 << 20) + 123))
    (root / "data/empty").write_bytes(b"")
    os.link(root / "data/big", root / "data/big-link")
    os.link(root / "etc/passwd", root / "passwd-link")
    deep = root / ("long-" * 30) / ("name-" * 30)
    deep.mkdir(parents=True)
    (deep / "ünïcödé-file").write_text("u")
    (root / os.fsdecode(b"raw-\xff-name")).write_text("raw")
    os.mknod(root / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mkfifo(root / "fifo", 0o640)
    _touch_all(root, EPOCH - 3600)
    return root


def roundtrip(src: Path, dst: Path, **kw: object) -> tuple[bytes, object]:
    buf = io.BytesIO()
    info = write_layer(src, buf, kind="dir", **kw)  # type: ignore[arg-type]
    dst.mkdir()
    result = apply_layer(io.BytesIO(buf.getvalue()), dst, mode="merged")
    assert result.size == len(buf.getvalue()) == info.size
    assert result.skipped == []
    return buf.getvalue(), info


@pytest.mark.needs_root
def test_roundtrip_preserves_everything(tmp_path: Path) -> None:
    src = make_rich_tree(tmp_path / "src")
    data, info = roundtrip(src, tmp_path / "dst")
    assert tree_manifest(tmp_path / "dst") == tree_manifest(src)
    dst = tmp_path / "dst"
    assert os.getxattr(dst / "bin/ping", "security.capability") == CAP_NET_BIND
    assert os.stat(dst / "data/big").st_ino == os.stat(dst / "data/big-link").st_ino
    assert info.diff_id.hex == hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]


@pytest.mark.needs_root
def test_writer_is_deterministic_and_clamps_to_epoch(tmp_path: Path) -> None:
    src = make_rich_tree(tmp_path / "src")
    first, second = io.BytesIO(), io.BytesIO()
    a = write_layer(src, first, kind="dir", epoch=EPOCH - 7200)
    b = write_layer(src, second, kind="dir", epoch=EPOCH - 7200)
    assert a == b and first.getvalue() == second.getvalue()
    members = list(TarReader(io.BytesIO(first.getvalue())))
    assert {m.mtime_ns for m in members} == {(EPOCH - 7200) * 10**9}
    paths = [m.path for m in members]
    assert paths.index("etc") < paths.index("etc/passwd")
    assert all(m.uid in (0, 1000) for m in members)
    unclamped = write_layer(src, io.BytesIO(), kind="dir", epoch=EPOCH)
    assert unclamped.diff_id != a.diff_id


@pytest.mark.needs_root
def test_exact_digest_of_a_fixed_tree(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    layer = build_tar(
        [directory("etc"), file("etc/hostname", b"lamina\n"), symlink("etc/mtab", "/proc/mounts")]
    )
    apply_layer(io.BytesIO(layer), tree, mode="merged")
    out = io.BytesIO()
    info = write_layer(tree, out, kind="dir", epoch=EPOCH)
    assert str(info.diff_id) == EXPECTED_FIXED_DIGEST
    assert info.size == len(out.getvalue()) == 3072
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", "-"],
        input=out.getvalue(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert listing.split("\n")[1].split()[:3] == ["-rw-r--r--", "0/0", "7"]


EXPECTED_FIXED_DIGEST = "sha256:5afa7815a87a031867c5993ac2b797d66c60bc2047a538c9db8186f637a8bebc"


# -- overlay vs merged -------------------------------------------------------------------------
BASE = [
    directory("a"),
    file("a/x", b"x"),
    file("a/y", b"y"),
    directory("b"),
    file("b/old", b"old"),
    directory("b/olddir"),
    file("b/olddir/f", b"f"),
    directory("c"),
    directory("c/sub"),
    file("c/sub/deep", b"deep"),
    directory("d"),
    file("d/keep", b"keep"),
    symlink("lnk", "/a"),
    directory("tmp", mode=0o1777),
    directory("f"),
    file("f/old", b"old"),
    directory("g"),
    file("g/old", b"old"),
    directory("h"),
    file("h/old", b"old"),
]
TOP = [
    directory("a", mode=0o750),
    whiteout_of("a/x"),
    directory("b"),
    file("b/new", b"new"),  # before the opaque marker: must survive it
    opaque_in("b"),
    file("c", b"c is a file now"),
    directory("e"),
    file("e/f", b"kept"),
    whiteout_of("e/f"),  # same-layer whiteout after its sibling: a no-op
    directory("d"),
    whiteout_of("d/never-existed"),
    directory("lnk"),
    file("lnk/inside", b"dir replaced the lower symlink"),
    directory("f"),
    file("f/new", b"new"),
    whiteout_of("f"),  # after this layer's f: f is re-created, lower f/old hidden
    whiteout_of("g"),
    directory("g"),
    file("g/new", b"new"),
    whiteout_of("h"),
    file("h/new", b"new"),  # no explicit dir entry for the re-created h
]


@pytest.fixture
def overlay_mount(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


def _mount(lowers: list[Path], mnt: Path, extra: str = "") -> None:
    opts = "lowerdir=" + ":".join(str(p) for p in lowers) + extra
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(mnt)], check=True)


@pytest.mark.needs_root
@pytest.mark.needs_overlay
@pytest.mark.parametrize("rootless", [False, True])
def test_overlay_mount_equals_merged_apply(
    tmp_path: Path, overlay_mount: Path, rootless: bool
) -> None:
    layers = [build_tar(BASE), build_tar(TOP)]
    diffs = []
    merged = tmp_path / "merged"
    merged.mkdir()
    for i, layer in enumerate(layers):
        diff = tmp_path / f"l{i}/diff"
        diff.mkdir(parents=True)
        apply_layer(io.BytesIO(layer), diff, mode="overlay", rootless=rootless)
        apply_layer(io.BytesIO(layer), merged, mode="merged", rootless=rootless)
        diffs.append(diff)
    key = "user.overlay.opaque" if rootless else "trusted.overlay.opaque"
    assert os.getxattr(diffs[1] / "b", key) == b"y"
    _mount(diffs[::-1], overlay_mount, ",userxattr" if rootless else "")
    assert tree_manifest(overlay_mount) == tree_manifest(merged)
    names = {r[0] for r in tree_manifest(merged)}
    assert "a/x" not in names and "a/y" in names
    assert {"b/new"} == {n for n in names if n.startswith("b/")}
    assert "e/f" in names and "c/sub" not in names and "lnk/inside" in names
    assert (merged / "c").read_text() == "c is a file now"
    for d in "fgh":
        assert {n for n in names if n.startswith(f"{d}/")} == {f"{d}/new"}


def test_trees_deeper_than_path_max_roundtrip(tmp_path: Path) -> None:
    """400 levels of 12-character names (>4800 bytes): written and applied with dir fds."""
    src = tmp_path / "src"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY)
    for _ in range(400):
        os.mkdir("level-abcdef", dir_fd=fd)
        nfd = os.open("level-abcdef", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
        f.write(b"bottom")
    os.close(fd)
    buf = io.BytesIO()
    write_layer(src, buf, kind="dir")
    dst = tmp_path / "dst"
    dst.mkdir()
    result = apply_layer(io.BytesIO(buf.getvalue()), dst, mode="merged")
    assert result.entries == 401
    again = io.BytesIO()
    write_layer(dst, again, kind="dir")
    assert again.getvalue() == buf.getvalue()


def test_too_deep_member_is_refused(tmp_path: Path) -> None:
    from lamina.errors import UnsafeArchive

    layer = build_tar([file("/".join(["d"] * 600), b"x")])
    with pytest.raises(UnsafeArchive, match="nested 600 deep"):
        apply_layer(io.BytesIO(layer), tmp_path, mode="merged")


UNPRIVILEGED_APPLY = """
import io, os, sys
from pathlib import Path
from lamina.snapshot.apply import apply_layer
os.chdir(sys.argv[1])  # as root: the ancestors of tmp_path are closed to nobody
os.setgid(65534)
os.setuid(65534)
result = apply_layer(io.BytesIO(sys.stdin.buffer.read()), Path("."), mode=sys.argv[2])
print(len(result.skipped))
"""


def _apply_as_nobody(layer: bytes, target: Path, mode: str) -> int:
    target.mkdir(parents=True, exist_ok=True)
    os.chown(target, 65534, 65534)
    out = subprocess.run(
        [sys.executable, "-c", UNPRIVILEGED_APPLY, str(target), mode],
        input=layer,
        capture_output=True,
        check=True,
    )
    return int(out.stdout)


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_unprivileged_apply_mounts_with_userxattr(tmp_path: Path, overlay_mount: Path) -> None:
    """Applied by uid 65534 (no chown, no devices, user.overlay.*), mounted with userxattr."""
    layers = [build_tar([*BASE, device("dev-null", 1, 3)]), build_tar(TOP)]
    diffs = [tmp_path / f"l{i}" for i in range(2)]
    assert _apply_as_nobody(layers[0], diffs[0], "overlay") == 1  # the device
    assert _apply_as_nobody(layers[1], diffs[1], "overlay") == 0
    assert os.getxattr(diffs[1] / "b", "user.overlay.opaque") == b"y"
    assert os.lstat(diffs[1] / "a/x").st_uid == 65534
    merged = tmp_path / "merged"
    for layer in layers:
        _apply_as_nobody(layer, merged, "merged")
    _mount(diffs[::-1], overlay_mount, ",userxattr")
    assert tree_manifest(overlay_mount) == tree_manifest(merged)
    assert {r[3] for r in tree_manifest(merged)} == {65534}


@pytest.mark.needs_root
def test_redirect_entries_in_an_upper_dir_are_refused(tmp_path: Path) -> None:
    from lamina.errors import StorageError

    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(StorageError, match="redirect or metacopy"):
        write_layer(upper, io.BytesIO(), kind="overlay-upper")
    os.removexattr(upper / "moved", "trusted.overlay.redirect")
    os.setxattr(upper / "moved", "trusted.overlay.origin", b"\x00")  # harmless: not copied
    out = io.BytesIO()
    write_layer(upper, out, kind="overlay-upper")
    assert [m.xattrs for m in TarReader(io.BytesIO(out.getvalue()))] == [{}]


@pytest.mark.needs_root
def test_overlay_diff_recommits_to_the_same_tar(tmp_path: Path) -> None:
    """tar -> overlay diff dir -> tar is the identity for writer-made layers (whiteouts too)."""
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/new").write_bytes(b"n")
    os.mknod(upper / "etc/gone", 0o020000, 0)
    os.chown(upper / "etc/gone", 7, 8)
    (upper / "usr/sbin").mkdir(parents=True)
    os.setxattr(upper / "usr/sbin", "trusted.overlay.opaque", b"y")
    _touch_all(upper, EPOCH)
    first = io.BytesIO()
    write_layer(upper, first, kind="overlay-upper", epoch=EPOCH)
    diff = tmp_path / "diff"
    diff.mkdir()
    apply_layer(io.BytesIO(first.getvalue()), diff, mode="overlay")
    second = io.BytesIO()
    write_layer(diff, second, kind="overlay-upper", epoch=EPOCH)
    assert second.getvalue() == first.getvalue()
