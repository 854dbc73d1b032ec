"""A RUN step's mount points: planned from the diff dirs, mounted once, never in the layer.

- ``plan_init`` against the kernel: for stacks of real layer dirs mounted as overlay lowers,
  every planned path is absent from the merged tree and its parents' metadata is what the
  merged tree shows; without doubtful entries the plan is exactly what the tree lacks.
- ``StepFS`` with the RUN mount points mounts its overlay once on a base that lacks
  /etc/hosts and /etc/resolv.conf (busybox, like Debian minbase), the layer holds only
  what the step wrote, and its record lists its plain tar blob from the start.
- A RUN build loads neither the tar extractor (``build.unpack``) nor the snapshot applier,
  reader or tree diff, only the layer writer; a one-stage build makes no thread pool.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from lamina.build.initlower import plan_init
from lamina.build.steps.run import known_mountpoints
from lamina.build.workspace import StepFS
from lamina.oci import mediatype
from lamina.ops.archive import import_rootfs
from lamina.store import BlobRef, Store
from lamina.testing.capabilities import mount_points_under
from lamina.unionfs.overlay import OverlayBackend

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

EPOCH = 1700000000
POINTS = known_mountpoints()


def _tree(root: Path, dirs: tuple[str, ...], files: tuple[str, ...]) -> Path:
    root.mkdir(parents=True)
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("image file\n")
    return root


def _whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


STACKS: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "minbase": [(("proc", "dev", "sys"), ("etc/hostname", "etc/resolv.conf"))],
    "merged etc": [(("etc",), ()), (("proc",), ("etc/hosts",))],
    "file over dir": [(("etc", "dev"), ()), ((), ("etc",)), ((), ("etc/hosts", "sys"))],
    "whiteout": [(("etc",), ()), (("proc", "dev", "sys"), ("etc/hosts", "etc/hostname"))],
}


@pytest.mark.parametrize("name", sorted(STACKS))
def test_the_plan_is_what_the_mounted_tree_lacks(tmp_path: Path, name: str) -> None:
    lowers = [_tree(tmp_path / f"l{i}", *spec) for i, spec in enumerate(STACKS[name])]
    os.chmod(lowers[0] / "etc", 0o750)
    os.utime(lowers[0] / "etc", ns=(1_500_000_000_000_000_000,) * 2)
    if name == "whiteout":
        _whiteout(lowers[0] / "etc" / "hosts")
    plan = plan_init(lowers, POINTS)
    merged, upper, work = tmp_path / "merged", tmp_path / "upper", tmp_path / "work"
    for d in (merged, upper, work):
        d.mkdir()
    backend = OverlayBackend(probe_dir=tmp_path)
    backend.mount(lowers, upper, work, merged)
    try:
        lacking = [p.lstrip("/") for p, _ in POINTS if not os.path.lexists(merged / p.lstrip("/"))]
        assert [rel for rel, _, _ in plan] == lacking
        for rel, _, metas in plan:
            parts = rel.split("/")
            for i, meta in enumerate(metas):
                shown = os.lstat(merged.joinpath(*parts[: i + 1]))
                assert meta is not None
                assert (meta.st_mode, meta.st_uid, meta.st_gid, meta.st_mtime_ns) == (
                    shown.st_mode, shown.st_uid, shown.st_gid, shown.st_mtime_ns,
                )  # fmt: skip
    finally:
        backend.unmount(merged)


@pytest.fixture
def store(tmp_path: Path, busybox_tar: Path) -> Store:
    s = Store(tmp_path / "root")
    import_rootfs(s, str(busybox_tar), "busybox", epoch=EPOCH)
    return s


def test_a_run_step_mounts_once_and_its_layer_holds_only_its_changes(
    store: Store, tmp_path: Path
) -> None:
    chain = store.get_image("busybox").record.top_layer
    with StepFS(store, chain, mountpoints=POINTS) as fs:
        device = os.stat(fs.rootfs).st_dev  # every overlay mount has its own device
        for path, is_dir in POINTS:
            assert (fs.rootfs / path.lstrip("/")).is_dir() == is_dir, path
        assert (fs.rootfs / "etc" / "hostname").read_text() == "lamina\n"  # the image's
        fs.provide_mountpoints([*POINTS, ("/etc/passwd", False)])  # all there: no remount
        assert os.stat(fs.rootfs).st_dev == device
        (fs.rootfs / "etc" / "made-by-run").write_text("x")
        committed = fs.commit(epoch=EPOCH)
    assert committed is not None
    with store.blobs.open(committed.diff_id) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        assert [m.name for m in tar] == ["etc", "etc/made-by-run"]
    # the record lists the plain tar from the start: storing the image rewrites nothing
    plain = BlobRef(digest=committed.diff_id, media_type=mediatype.OCI_LAYER, size=committed.size)
    record = store.layers.db.get(committed.chain)
    assert record is not None and record.blobs == (plain,)
    assert mount_points_under(tmp_path) == []


@pytest.mark.needs_runtime
def test_a_run_build_loads_the_layer_writer_but_not_the_extractor(
    store: Store, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN touch /x\n")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from lamina.ops.build import build\n"
        "from lamina.store import Store\n"
        f"build(Store(Path({str(store.root)!r})), Path({str(ctx)!r}), tags=['r'], epoch=0)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    names = set(proc.stdout.split())
    assert {"lamina.runtime.oci_runtime", "lamina.snapshot.writer"} <= names
    assert not names & {
        "lamina.build.unpack", "lamina.snapshot.apply", "lamina.snapshot.changes",
        "lamina.snapshot.diff", "lamina.snapshot.tarstream",
        "concurrent.futures",  # one stage: no stage pool
        # no COPY: no copier, source keys or stat cache
        "lamina.build.steps.files", "lamina.build.copy", "lamina.build.sourcekey",
        "lamina.build.statcache",
    }  # fmt: skip
