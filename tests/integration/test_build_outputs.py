"""``--output`` exporters, validated with skopeo and umoci; the vfs (copying) backend builds.

Every output type is written from one build; the OCI layout is unpacked by umoci and its
tree compared with the ``local`` export; archives are inspected by skopeo. The vfs test
builds the same Dockerfile on a copying store and checks it yields the same image id as on
overlay (the two snapshotters must agree byte for byte).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from lamina.build.outputs import OutputSpec, parse_output
from lamina.errors import UsageError
from lamina.ops.archive import import_rootfs
from lamina.ops.build import build
from lamina.store import Store

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

EPOCH = 1700000000
DOCKERFILE = (
    'FROM busybox\nCOPY a.txt /a.txt\nRUN echo made > /made && rm /bin/vi\nCMD ["cat", "/a.txt"]\n'
)


def new_store(path: Path, busybox_tar: Path, driver: str | None = None) -> Store:
    store = Store(path, driver=driver)
    import_rootfs(store, str(busybox_tar), "busybox", epoch=EPOCH)
    return store


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "a.txt").write_text("This is a simple file.")
    return ctx


def test_parse_output() -> None:
    assert parse_output("type=oci,dest=out") == OutputSpec(type="oci", dest="out")
    assert parse_output("somedir") == OutputSpec(type="local", dest="somedir")
    assert parse_output("type=docker-archive,dest=x.tar,name=a:b").attrs == {"name": "a:b"}
    with pytest.raises(UsageError):
        parse_output("type=zip,dest=x")
    with pytest.raises(UsageError):
        parse_output("type=oci")


@pytest.mark.needs_tools
def test_every_output_type(tmp_path: Path, busybox_tar: Path, ctx: Path) -> None:
    store = new_store(tmp_path / "root", busybox_tar)
    out = tmp_path / "out"
    specs = [
        OutputSpec(type="oci", dest=str(out / "layout")),
        OutputSpec(type="oci-archive", dest=str(out / "image.oci.tar")),
        OutputSpec(type="docker-archive", dest=str(out / "image.docker.tar")),
        OutputSpec(type="local", dest=str(out / "fs")),
        OutputSpec(type="tar", dest=str(out / "fs.tar")),
    ]
    result = build(store, ctx, tags=["demo:v1"], outputs=specs, epoch=EPOCH)
    for ref in (
        f"oci:{out / 'layout'}:v1",
        f"oci-archive:{out / 'image.oci.tar'}",
        f"docker-archive:{out / 'image.docker.tar'}",
    ):
        proc = subprocess.run(
            ["skopeo", "inspect", "--config", ref], capture_output=True, check=True
        )
        config = json.loads(proc.stdout)
        assert config["config"]["Cmd"] == ["cat", "/a.txt"], ref
        assert len(config["rootfs"]["diff_ids"]) == 3, ref
    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{out / 'layout'}:v1"],
            capture_output=True,
            check=True,
        ).stdout
    )
    assert manifest["config"]["digest"] == str(result.image_id)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{out / 'layout'}:v1", str(bundle)],
        capture_output=True,
        check=True,
    )
    unpacked, local = bundle / "rootfs", out / "fs"
    for root in (unpacked, local):
        assert (root / "a.txt").read_text() == "This is a simple file."
        assert (root / "made").read_text() == "made\n"
        assert not (root / "bin" / "vi").exists() and (root / "bin" / "sh").exists()
    with tarfile.open(out / "fs.tar") as tar:
        names = set(tar.getnames())
    assert {"a.txt", "made", "bin/sh"} <= names and "bin/vi" not in names
    assert not any(n.startswith(".wh.") or "/.wh." in n for n in names)


def test_vfs_store_builds_the_same_image(tmp_path: Path, busybox_tar: Path, ctx: Path) -> None:
    overlay = new_store(tmp_path / "overlay", busybox_tar)
    vfs = new_store(tmp_path / "vfs", busybox_tar, driver="vfs")
    a = build(overlay, ctx, tags=["x"], epoch=EPOCH)
    b = build(vfs, ctx, tags=["x"], epoch=EPOCH)
    assert a.image_id == b.image_id and a.digest == b.digest
    again = build(vfs, ctx, tags=["x"], epoch=EPOCH)
    assert again.digest == b.digest


@pytest.mark.needs_tools
def test_compressed_blobs_are_cached_for_the_next_export(
    tmp_path: Path, busybox_tar: Path, ctx: Path
) -> None:
    store = new_store(tmp_path / "root", busybox_tar)
    digests = []
    for name in ("a", "b"):
        spec = OutputSpec(type="oci-archive", dest=str(tmp_path / f"{name}.tar"))
        build(store, ctx, outputs=[spec], epoch=EPOCH)
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci-archive:{tmp_path / f'{name}.tar'}"],
            capture_output=True,
            check=True,
        ).stdout
        digests.append(raw)
    assert digests[0] == digests[1]
    top = store.list_images()[0].layers[-1]
    kinds = {b.media_type for b in store.layers.get(top).blobs}
    assert "application/vnd.oci.image.layer.v1.tar+gzip" in kinds
