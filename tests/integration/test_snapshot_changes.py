"""``docker diff`` and committed layers, matched against the Docker overlay2 captures.

The scenario is the one in docker-overlay2-samples.md: a busybox base, a layer adding
``/a.txt`` (22 bytes), then a container that adds, changes and deletes files (§2, §4), and one
that re-creates ``/usr/sbin`` (§3, opaque directory).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina.snapshot.apply import apply_layer
from lamina.snapshot.changes import Change, changes_from_trees, changes_from_upper
from lamina.snapshot.diff import diff_trees, write_diff_layer
from lamina.snapshot.tarstream import DIR, TarReader
from lamina.snapshot.writer import write_layer
from lamina.testing.layers import EPOCH, build_tar, file, make_busybox_rootfs, tree_manifest

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

CAPTURE_DIFF = {
    ("A", "/new.txt"), ("C", "/etc"), ("D", "/etc/group"), ("C", "/bin"), ("D", "/bin/vi"),
    ("C", "/a.txt"), ("C", "/tmp"), ("A", "/tmp/x"), ("A", "/tmp/x/y"),
}  # fmt: skip
CAPTURE_LAYER = [  # §4: path, type, mode, size
    ("a.txt", b"0", 0o644, 30), ("bin", DIR, 0o755, 0), ("bin/.wh.vi", b"0", 0o600, 0),
    ("etc", DIR, 0o755, 0), ("etc/.wh.group", b"0", 0o600, 0), ("new.txt", b"0", 0o644, 4),
    ("tmp", DIR, 0o1777, 0), ("tmp/x", DIR, 0o755, 0), ("tmp/x/y", b"0", 0o644, 0),
]  # fmt: skip
OPAQUE_EXCERPT = {
    ("C", "/usr"), ("C", "/usr/sbin"), ("A", "/usr/sbin/only"), ("D", "/usr/sbin/arping"),
    ("D", "/usr/sbin/ubirename"), ("D", "/usr/sbin/i2cdetect"), ("D", "/usr/sbin/udhcpd"),
    ("D", "/usr/sbin/httpd"),
}  # fmt: skip


def run_diff(root: Path) -> None:
    """The container command of §2, done directly on the (merged) tree."""
    (root / "new.txt").write_text("new\n")
    with open(root / "a.txt", "a") as f:
        f.write("changed\n")
    (root / "etc/group").unlink()
    (root / "tmp/x").mkdir(parents=True)
    (root / "tmp/x/y").touch()
    (root / "bin/vi").unlink()


def run_opaque(root: Path) -> None:
    """Delete and re-create /usr/sbin (§3)."""
    shutil.rmtree(root / "usr/sbin")
    (root / "usr/sbin").mkdir()
    (root / "usr/sbin/only").write_text("only\n")


def letters(changes: list[Change]) -> set[tuple[str, str]]:
    return {(c.letter, c.path) for c in changes}


@pytest.fixture
def image(tmp_path: Path) -> list[Path]:
    """Two applied overlay layers (busybox base, then /a.txt); returned top first."""
    base = make_busybox_rootfs(tmp_path / "rootfs")
    buf = io.BytesIO()
    write_layer(base, buf, kind="dir", epoch=EPOCH)
    layers = [buf.getvalue(), build_tar([file("a.txt", b"hello from lamina w1\n\n")])]
    diffs = []
    for i, layer in enumerate(layers):
        diff = tmp_path / f"layer{i}/diff"
        diff.mkdir(parents=True)
        apply_layer(io.BytesIO(layer), diff, mode="overlay")
        diffs.append(diff)
    return diffs[::-1]


@pytest.fixture
def container(tmp_path: Path, image: list[Path]) -> Iterator[Callable[[], tuple[Path, Path]]]:
    """Mount (merged, upper) over the image; unmounted at the end."""
    mounted: list[Path] = []

    def mount() -> tuple[Path, Path]:
        n = len(mounted)
        upper, work, merged = (tmp_path / f"c{n}/{d}" for d in ("diff", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        lowers = ":".join(str(p) for p in image)
        opts = f"lowerdir={lowers},upperdir={upper},workdir={work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
        mounted.append(merged)
        return merged, upper

    yield mount
    for m in mounted:
        subprocess.run(["umount", str(m)], check=False)


def test_changes_from_upper_match_capture(
    image: list[Path], container: Callable[[], tuple[Path, Path]]
) -> None:
    merged, upper = container()
    run_diff(merged)
    changes = changes_from_upper(upper, image)
    assert letters(changes) == CAPTURE_DIFF
    assert [c.path for c in changes] == sorted(c.path for c in changes)
    assert {(c.to_json()["Path"], c.to_json()["Kind"]) for c in changes} >= {
        ("/etc", 0),
        ("/new.txt", 1),
        ("/bin/vi", 2),
    }


def test_committed_upper_layer_matches_capture(container: Callable[[], tuple[Path, Path]]) -> None:
    merged, upper = container()
    run_diff(merged)
    out = io.BytesIO()
    info = write_layer(upper, out, kind="overlay-upper", epoch=EPOCH + 10**8)
    members = list(TarReader(io.BytesIO(out.getvalue())))
    assert [(m.path, m.type, m.mode, m.size) for m in members] == CAPTURE_LAYER
    assert all((m.uid, m.gid) == (0, 0) for m in members)
    again = write_layer(upper, io.BytesIO(), kind="overlay-upper", epoch=EPOCH + 10**8)
    assert again == info


def test_opaque_directory_changes_and_layer(
    image: list[Path], container: Callable[[], tuple[Path, Path]]
) -> None:
    merged, upper = container()
    run_opaque(merged)
    assert os.getxattr(upper / "usr/sbin", "trusted.overlay.opaque") == b"y"
    changes = changes_from_upper(upper, image)
    assert len(changes) == 22
    assert letters(changes) >= OPAQUE_EXCERPT
    members = list(TarReader(io.BytesIO(_layer(upper))))
    assert [(m.path, m.mode, m.mtime_ns) for m in members if "opq" in m.path] == [
        ("usr/sbin/.wh..wh..opq", 0o755, 0)
    ]
    assert [m.path for m in members if not m.path.endswith("opq")] == [
        "usr",
        "usr/sbin",
        "usr/sbin/only",
    ]


def _layer(upper: Path, epoch: int | None = EPOCH) -> bytes:
    out = io.BytesIO()
    write_layer(upper, out, kind="overlay-upper", epoch=epoch)
    return out.getvalue()


def test_committed_layer_reapplies_to_the_container_view(
    tmp_path: Path, image: list[Path], container: Callable[[], tuple[Path, Path]]
) -> None:
    """Commit the upper, apply it over the image both ways: both equal the live merged view."""
    merged, upper = container()
    run_diff(merged)
    run_opaque(merged)
    expected = tree_manifest(merged)
    layer = _layer(upper, epoch=None)
    flat = tmp_path / "flat"
    flat.mkdir()
    for diff in image[::-1]:
        subprocess.run(["cp", "-a", f"{diff}/.", str(flat)], check=True)
    for wo in [p for p in flat.rglob("*") if p.is_char_device() and os.lstat(p).st_rdev == 0]:
        wo.unlink()
    apply_layer(io.BytesIO(layer), flat, mode="merged")
    assert tree_manifest(flat, dir_mtimes=False) == _no_dir_mtimes(expected)


def _no_dir_mtimes(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [(*r[:-1], None) if r[1] == "d" else r for r in rows]


# -- the copying backend: two full trees -------------------------------------------------------
@pytest.fixture
def trees(tmp_path: Path, image: list[Path]) -> tuple[Path, Path]:
    lower = tmp_path / "lower"
    lower.mkdir()
    for diff in image[::-1]:
        subprocess.run(["cp", "-a", f"{diff}/.", str(lower)], check=True)
    upper = tmp_path / "upper"
    subprocess.run(["cp", "-a", str(lower), str(upper)], check=True)
    return lower, upper


def test_changes_from_trees_match_capture(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    run_diff(upper)
    assert letters(changes_from_trees(lower, upper)) == CAPTURE_DIFF
    lower2 = lower.parent / "lower2"
    subprocess.run(["cp", "-a", str(lower), str(lower2)], check=True)
    run_opaque(upper)
    changes = changes_from_trees(lower2, upper)
    assert letters(changes) >= OPAQUE_EXCERPT - {("C", "/usr")} | {("A", "/usr/sbin/only")}


def test_diff_layer_turns_lower_into_upper(trees: tuple[Path, Path], tmp_path: Path) -> None:
    lower, upper = trees
    run_diff(upper)
    run_opaque(upper)
    (upper / "etc/hostname").unlink()
    (upper / "etc/hostname").mkdir()  # file -> dir
    shutil.rmtree(upper / "home")
    (upper / "home").write_text("dir -> file\n")  # dir -> file: whiteout + entry
    os.chmod(upper / "bin/busybox", 0o4755)  # metadata only
    out = io.BytesIO()
    write_diff_layer(lower, upper, out, epoch=None)
    replaced = [c for c in diff_trees(lower, upper) if c.replaced]
    assert [c.path for c in replaced] == ["home"]
    apply_layer(io.BytesIO(out.getvalue()), lower, mode="merged")
    assert tree_manifest(lower) == tree_manifest(upper)


def test_content_compared_only_after_since(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    import time

    since = time.time_ns()
    time.sleep(0.01)
    target = upper / "etc/passwd"
    st = os.stat(target)
    data = target.read_bytes()
    target.write_bytes(data.replace(b"root", b"r00t"))  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored
    assert [c.path for c in diff_trees(lower, upper)] == []  # Docker's rule: unchanged
    assert [c.path for c in diff_trees(lower, upper, since_ns=since)] == ["etc/passwd"]
