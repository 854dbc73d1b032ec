"""The image commands end to end: import, images, inspect, history, tag, rmi, save, load,
export, pull, copy, system check — as a user (and skopeo/umoci) sees them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing.cli import Result, run_cli
from lamina.testing.layers import tree_manifest

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tools]
Cli = Callable[..., Result]


def _import(cli: Cli, tar: Path, name: str = "busybox:latest") -> str:
    return cli("import", str(tar), name, "--change", 'CMD ["sh"]').out.strip()


def test_import_images_inspect_graphdriver(cli: Cli, busybox_tar: Path) -> None:
    image_id = _import(cli, busybox_tar)
    assert image_id.startswith("sha256:")
    listing = cli("images").out.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == ["busybox", "latest", image_id[7:19]]
    [data] = json.loads(cli("inspect", "busybox").out)
    assert data["Id"] == image_id and data["RepoTags"] == ["busybox:latest"]
    assert data["Config"]["Cmd"] == ["sh"]
    gd = data["GraphDriver"]
    assert gd["Name"] == "overlay2"
    upper = Path(gd["Data"]["UpperDir"])
    assert upper.name == "diff" and (upper / "bin" / "busybox").is_file()
    layer_dir = upper.parent
    assert Path(gd["Data"]["WorkDir"]) == layer_dir / "work"
    assert Path(gd["Data"]["MergedDir"]) == layer_dir / "merged"
    link = (layer_dir / "link").read_text()
    assert len(link) == 26 and (layer_dir.parent / "l" / link).resolve() == upper.resolve()
    assert data["RootFS"]["Type"] == "layers" and len(data["RootFS"]["Layers"]) == 1
    # Go-template formatting as `docker inspect --format` does it.
    out = cli("inspect", "--format", "{{json .GraphDriver}}", "busybox").out
    assert json.loads(out) == gd
    assert cli("inspect", "-f", "{{.Os}}/{{.Architecture}}", "busybox").out.strip() == "linux/amd64"


def test_history_tag_rmi(cli: Cli, busybox_tar: Path) -> None:
    image_id = _import(cli, busybox_tar)
    hist = cli("history", "busybox").out.splitlines()
    assert "lamina import" in hist[1] and image_id[7:19] in hist[1]
    cli("tag", "busybox", "example.com/team/bb:v1")
    names = {tuple(line.split()[:2]) for line in cli("images").out.splitlines()[1:]}
    assert names == {("busybox", "latest"), ("example.com/team/bb", "v1")}
    # docker images REPOSITORY[:TAG] and --filter
    assert cli("images", "--format", "{{.Repository}}", "example.com/team/bb").out == (
        "example.com/team/bb\n"
    )
    assert cli("images", "-q", "docker.io/library/busybox:latest").out.strip() == image_id[7:19]
    assert cli("images", "-q", "busybox:nosuchtag").out == ""
    assert cli("images", "--format", "{{.Tag}}", "-f", "reference=*/team/*").out == "v1\n"
    assert cli("images", "-q", "-f", "dangling=true").out == ""
    assert cli("images", "-aq").out == cli("images", "-q").out  # no intermediate images
    assert cli("rmi", "example.com/team/bb:v1").out.strip() == "Untagged: example.com/team/bb:v1"
    out = cli("rmi", "busybox").out.splitlines()
    assert out == ["Untagged: busybox:latest", f"Deleted: {image_id}"]
    assert cli("images", "-q").out == ""
    assert cli("system", "check").out.strip() == "store ok"
    assert list((cli.root / "overlay2").glob("*/diff")) == []  # type: ignore[attr-defined]


def test_reproducible_import_across_roots(busybox_tar: Path, tmp_path: Path) -> None:
    digests = set()
    for n in range(2):
        root = tmp_path / f"root{n}"
        run_cli(root, "import", str(busybox_tar), "busybox")
        [data] = json.loads(run_cli(root, "inspect", "busybox").out)
        digests.add((data["Id"], data["Descriptor"]["digest"]))
    assert len(digests) == 1


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_load_round_trip_with_skopeo(
    cli: Cli, busybox_tar: Path, tmp_path: Path, fmt: str
) -> None:
    image_id = _import(cli, busybox_tar)
    archive = tmp_path / f"bb.{fmt}.tar"
    cli("save", "-o", str(archive), "--format", fmt, "busybox")
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"{fmt}:{archive}"], check=True, capture_output=True
        ).stdout
    )
    assert info["Os"] == "linux" and len(info["Layers"]) == 1
    # skopeo copies it on to another format, and lamina loads skopeo's output back.
    layout = tmp_path / "layout"
    subprocess.run(["skopeo", "copy", "-q", f"{fmt}:{archive}", f"oci:{layout}:bb"], check=True)
    other = tmp_path / "other-root"
    run_cli(other, "pull", f"oci:{layout}:bb", "--name", "bb:copied")
    [data] = json.loads(run_cli(other, "inspect", "bb:copied").out)
    [ours] = json.loads(cli("inspect", "busybox").out)
    # skopeo re-serialises the config when it converts schema 2 to OCI (other key order), so
    # the image id changes; the content may not.
    assert data["RootFS"] == ours["RootFS"] and data["Config"] == ours["Config"]
    # load into a fresh store: same image id, same name (docker-archive keeps RepoTags).
    fresh = tmp_path / "fresh"
    loaded = run_cli(fresh, "load", "-i", str(archive)).out
    assert "Loaded image" in loaded
    [reloaded] = json.loads(run_cli(fresh, "inspect", loaded.split()[-1]).out)
    assert reloaded["Id"] == image_id
    if fmt == "docker-archive":
        assert "Loaded image: busybox:latest" in loaded
    run_cli(fresh, "system", "check")
    # `docker save IMAGE | docker load`: stdout without -o, stdin without -i
    piped = cli("save", "--format", fmt, "busybox").raw
    assert piped == archive.read_bytes()  # SOURCE_DATE_EPOCH: the same bytes either way
    again = run_cli(tmp_path / "piped", "load", stdin=piped).out
    assert again == loaded and not list((tmp_path / "piped" / "tmp").glob("load-*"))


def test_export_matches_rootfs_and_umoci(cli: Cli, busybox_tar: Path, tmp_path: Path) -> None:
    _import(cli, busybox_tar)
    out = tmp_path / "export.tar"
    cli("export", "busybox", "-o", str(out))
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for tar, dest in ((out, mine), (busybox_tar, theirs)):
        dest.mkdir()
        # GNU tar restores symlink mtimes too (Python's tarfile does not).
        subprocess.run(["tar", "-C", str(dest), "-xpf", str(tar)], check=True)
    assert tree_manifest(mine) == tree_manifest(theirs)
    layout = tmp_path / "layout"
    cli("copy", "busybox", f"oci:{layout}:bb")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:bb", str(bundle)], check=True, capture_output=True
    )
    assert tree_manifest(bundle / "rootfs", dir_mtimes=False) == tree_manifest(
        mine, dir_mtimes=False
    )


def test_import_from_stdin_and_compressed(cli: Cli, busybox_tar: Path, tmp_path: Path) -> None:
    a = _import(cli, busybox_tar, "a")
    b = cli("import", "-", "b", "--change", 'CMD ["sh"]', stdin=busybox_tar.read_bytes()).out
    assert a == b.strip()
    gz = tmp_path / "rootfs.tar.gz"
    subprocess.run(f"gzip -n -c {busybox_tar} > {gz}", shell=True, check=True)
    c = cli("import", str(gz), "c").out.strip()
    [data] = json.loads(cli("inspect", "c").out)
    assert data["Id"] == c
    [da] = json.loads(cli("inspect", "a").out)
    assert data["RootFS"] == da["RootFS"]  # same diff_id whatever the compression


@pytest.mark.parametrize(
    ("args", "fragment", "code"),
    [
        (["inspect", "nosuchimage"], "no such object", 1),
        (["rmi", "nosuchimage"], "nosuchimage", 1),
        (["save", "-o", "{tmp}/x.tar", "nosuchimage"], "nosuchimage", 1),
        (["save", "-o", "{tmp}/no/dir/x.tar", "busybox"], "directory '{tmp}/no/dir' does not", 2),
        (["export", "busybox", "-o", "{tmp}/no/x.tar"], "invalid output path", 2),
        (["load", "-i", "{tmp}/missing.tar"], "no such archive", 2),
        (["load", "-i", "{tmp}/garbage.tar"], "not a readable tar", 1),
        (["import", "{tmp}/missing.tar"], "no such file", 2),
        (["load", "-i", "/dev/null"], "/dev/null: not a regular file", 2),
        (["import", "{tmp}"], "not a regular file", 2),
        # names the user's file, not the store's staging dir
        (["import", "{tmp}/garbage.tar", "x"], "importing {tmp}/garbage.tar: layer sha256:", 1),
        (["import", "{tmp}/garbage.tar", "x", "--change", "RUN true"], "not allowed", 2),
        (["pull", "docker://127.0.0.1:9/x:y"], "connection refused", 1),
        (["pull", "oci:{tmp}/nolayout:x"], "not an oci layout", 1),
        (["copy", "busybox", "bad transport:x"], "invalid", 2),
        (["tag", "nosuchimage", "x"], "nosuchimage", 1),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    cli: Cli, tmp_path: Path, args: list[str], fragment: str, code: int
) -> None:
    (tmp_path / "garbage.tar").write_bytes(b"this is not a tar archive" * 40)
    res = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], check=False)
    assert res.code == code, res.err
    assert "Traceback" not in res.err
    first = res.err.splitlines()[0]
    fragment = fragment.replace("{tmp}", str(tmp_path).lower())
    assert first.startswith("lamina: error:") and fragment in res.err.lower(), res.err
    assert "overlay2" not in res.err, res.err
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "x.tar").exists()
