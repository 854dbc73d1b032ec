"""The docker:// transport against Debian's real docker-registry, with skopeo and umoci on the
other side: lamina push -> skopeo inspect/copy; skopeo push -> lamina pull (same tree);
multi-arch indexes; docker:// <-> oci: <-> docker-archive: <-> local; failed pulls."""

from __future__ import annotations

import json
import logging
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from lamina import transports
from lamina.errors import DigestMismatch, RegistryNotFound
from lamina.image.memory import MemoryImage
from lamina.oci import Descriptor, Digest, Index, mediatype
from lamina.oci.config import ImageConfig
from lamina.oci.platform import Platform
from lamina.ops import archive
from lamina.ops import registry as ops_registry
from lamina.registry import RetryPolicy, TransportOptions
from lamina.store import Store
from lamina.store.image import StoreLayer
from lamina.testing import registry as testreg
from lamina.testing.layers import directory, file, symlink, tree_manifest
from lamina.transports.docker import DockerRef, Registries

pytestmark = [
    pytest.mark.needs_registry,
    pytest.mark.needs_root,
    pytest.mark.needs_tools,
]

FAST = TransportOptions(retry=RetryPolicy(attempts=2, backoff=0.01, max_delay=0.1, resumes=1))
MakeImage = Callable[..., MemoryImage]
LAYERS = [
    [
        directory("bin"),
        file("bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755),
        symlink("bin/alias", "tool"),
        directory("etc"),
        file("etc/big", (b"0123456789abcdef", 400_000)),
    ],
    [file("etc/motd", b"hello from layer two\n", mode=0o600, uid=1000, gid=1000)],
]


registry = testreg.registry_fixture("registry")


@pytest.fixture
def registries() -> Iterator[Registries]:
    with Registries(options=FAST) as r:
        yield r


def skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True)
    return done.stdout


def exported_tree(store: Store, name: str, tmp: Path) -> list[tuple[object, ...]]:
    """The flattened filesystem of ``name`` as ``lamina export`` writes it, extracted."""
    out = tmp / f"{name.replace('/', '_').replace(':', '_')}.tar"
    archive.export(store, name, out)
    target = tmp / (out.name + ".d")
    target.mkdir()
    # GNU tar restores symlink mtimes too (Python's tarfile does not)
    subprocess.run(["tar", "-C", str(target), "-xpf", str(out)], check=True)
    return tree_manifest(target, dir_mtimes=False)


def test_lamina_push_is_what_skopeo_sees(
    registry: testreg.RegistryServer, registries: Registries, make_image: MakeImage, tmp_path: Path
) -> None:
    store = Store(tmp_path / "root")
    image = make_image(LAYERS)
    store.put_image(image, ["app:v1"])
    dest = f"{registry.host}/team/app:v1"
    dst, desc = ops_registry.push(store, "app:v1", dest, registries=registries)
    assert str(dst) == f"docker://{dest}" and desc.digest == image.digest()  # gzip kept as is
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{dest}"))
    assert info["Digest"] == str(image.digest())
    assert info["Layers"] == [str(layer.digest()) for layer in image.layers()]
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{dest}")
    assert raw.encode() == image.raw_manifest()
    layout = tmp_path / "layout"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:app")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:app", str(bundle)],
        check=True,
        capture_output=True,
    )
    assert (bundle / "rootfs" / "etc" / "motd").read_bytes() == b"hello from layer two\n"
    # pushing again is idempotent (every blob already exists)
    assert ops_registry.push(store, "app:v1", dest, registries=registries)[1] == desc


def test_skopeo_push_then_lamina_pull_gives_the_same_tree(
    registry: testreg.RegistryServer, registries: Registries, make_image: MakeImage, tmp_path: Path
) -> None:
    source = Store(tmp_path / "source")
    image = make_image(LAYERS, compression="zstd")
    source.put_image(image, ["src:v1"])
    layout = tmp_path / "layout"
    archive.copy(source, "src:v1", f"oci:{layout}:v1")
    dest = f"docker://{registry.host}/skopeo/pushed:v1"
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:v1", dest)
    store = Store(tmp_path / "root")
    name = archive.pull(store, dest.removeprefix("docker://"), registries=registries)
    assert name == f"{registry.host}/skopeo/pushed:v1"
    digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}", dest).strip()
    assert str(store.resolve(name)) == digest
    assert exported_tree(store, name, tmp_path) == exported_tree(source, "src:v1", tmp_path)
    assert store.check() == []


class PlatformIndex:
    """An in-memory OCI index over images (one per platform)."""

    def __init__(self, images: list[MemoryImage]) -> None:
        self._images = {img.digest(): img for img in images}
        entries = []
        for img in images:
            cfg = img.config()
            platform = Platform(os=cfg.os, architecture=cfg.architecture)
            raw = img.raw_manifest()
            entries.append(
                Descriptor(
                    media_type=mediatype.OCI_MANIFEST,
                    digest=img.digest(),
                    size=len(raw),
                    platform=platform,
                )
            )
        self._raw = Index(manifests=tuple(entries)).to_json()

    def raw_manifest(self) -> bytes:
        return self._raw

    def index(self) -> Index:
        return Index.from_json(self._raw)

    def image(self, desc: Descriptor) -> MemoryImage:
        return self._images[desc.digest]

    def digest(self) -> Digest:
        return Digest.of_bytes(self._raw)

    def media_type(self) -> str:
        return mediatype.OCI_INDEX


def platform_image(make_image: MakeImage, arch: str) -> MemoryImage:
    base = make_image([[file("arch", arch.encode())]], tag=arch)
    config = ImageConfig(
        architecture=arch,
        created="2023-11-14T22:13:20Z",
        config={"Cmd": ["/bin/sh"]},
        diff_ids=base.config().diff_ids,
    )
    return MemoryImage(config, base.layers())


def test_multi_arch_index_made_by_skopeo_selects_the_platform(
    registry: testreg.RegistryServer, registries: Registries, make_image: MakeImage, tmp_path: Path
) -> None:
    index = PlatformIndex([platform_image(make_image, a) for a in ("amd64", "arm64")])
    layout = tmp_path / "layout"
    transports.copy(index, transports.parse(f"oci:{layout}:multi"))
    dest = f"docker://{registry.host}/multi/arch:v1"
    skopeo("copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi", dest)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest)
    assert len(json.loads(raw)["manifests"]) == 2
    for arch in ("arm64", "amd64"):
        store = Store(tmp_path / f"root-{arch}")
        name = archive.pull(
            store,
            dest,
            platform=Platform(os="linux", architecture=arch),
            registries=registries,
        )
        stored = store.get_image(name)
        assert stored.config().architecture == arch
        [layer] = stored.layers()
        with layer.open_uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
            member = tar.next()
            assert member is not None and member.name == "arch"
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == arch.encode()
    # lamina copies the whole index from registry to registry (children by digest first)
    other = f"docker://{registry.host}/multi/copy:v1"
    desc = archive.copy(Store(tmp_path / "r2"), dest, other, registries=registries)
    assert desc.digest == Digest.of_bytes(raw.encode())
    assert skopeo("inspect", "--raw", "--tls-verify=false", other) == raw


def test_push_compresses_plain_layers_once(
    registry: testreg.RegistryServer, registries: Registries, make_image: MakeImage, tmp_path: Path
) -> None:
    store = Store(tmp_path / "root")
    image = make_image(LAYERS, compression="none")
    store.put_image(image, [f"{registry.host}/plain/app:v1"])
    dst, desc = ops_registry.push(store, f"{registry.host}/plain/app:v1", registries=registries)
    assert str(dst) == f"docker://{registry.host}/plain/app:v1"
    pushed = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", str(dst)))
    assert [layer["mediaType"] for layer in pushed["layers"]] == [mediatype.OCI_LAYER_GZIP] * 2
    assert pushed["config"]["digest"] == str(image.manifest().config.digest)  # same image id
    stored = store.get_image(f"{registry.host}/plain/app:v1")
    layers = cast(list[StoreLayer], stored.layers())
    gz = [b for layer in layers for b in layer.layer_record().blobs if "gzip" in b.media_type]
    assert [str(b.digest) for b in gz] == [d["digest"] for d in pushed["layers"]]
    mtimes = [store.blobs.path(b.digest).stat().st_mtime_ns for b in gz]
    # a second push (another repository) reuses the cached gzip blobs: same manifest digest
    _, again = ops_registry.push(
        store,
        f"{registry.host}/plain/app:v1",
        f"{registry.host}/plain/copy:v2",
        registries=registries,
    )
    assert again.digest == desc.digest
    assert [store.blobs.path(b.digest).stat().st_mtime_ns for b in gz] == mtimes
    assert store.check() == []
    # and the pushed image pulls back to the same tree
    other = Store(tmp_path / "other")
    name = archive.pull(other, f"docker://{registry.host}/plain/copy:v2", registries=registries)
    assert exported_tree(other, name, tmp_path) == exported_tree(
        store, f"{registry.host}/plain/app:v1", tmp_path
    )


def test_round_trip_through_every_transport(
    registry: testreg.RegistryServer, registries: Registries, make_image: MakeImage, tmp_path: Path
) -> None:
    store = Store(tmp_path / "root")
    store.put_image(make_image(LAYERS), ["start:v1"])
    reg = f"docker://{registry.host}/trip"
    hops = [
        ("start:v1", f"{reg}/a:v1"),
        (f"{reg}/a:v1", f"oci:{tmp_path}/layout:v1"),
        (f"oci:{tmp_path}/layout:v1", f"{reg}/b:v1"),
        (f"{reg}/b:v1", f"docker-archive:{tmp_path}/d.tar:trip/d:v1"),
        (f"docker-archive:{tmp_path}/d.tar", f"{reg}/c:v1"),
        (f"{reg}/c:v1", "end:v1"),
    ]
    for src, dst in hops:
        archive.copy(store, src, dst, registries=registries)
    assert exported_tree(store, "end:v1", tmp_path) == exported_tree(store, "start:v1", tmp_path)
    assert store.get_image("end:v1").id() == store.get_image("start:v1").id()
    assert store.check() == []


@pytest.mark.parametrize("size", [200_000, 6 << 20])  # the big one is prefetched in a thread
def test_missing_tag_and_corrupt_blob_leave_the_store_clean(
    registry: testreg.RegistryServer,
    registries: Registries,
    make_image: MakeImage,
    tmp_path: Path,
    size: int,
) -> None:
    store = Store(tmp_path / "root")
    with pytest.raises(RegistryNotFound) as info:
        archive.pull(store, f"{registry.host}/nothing/here:v9", registries=registries)
    assert "\n" not in info.value.message and "nothing/here:v9" in info.value.message
    layers = [[file("data", (b"corrupt-me", size))]]
    image = make_image(layers, tag=f"corrupt{size}", compression="none")
    ref = DockerRef.parse(f"//{registry.host}/bad/blob{size}:v1").with_registries(registries)
    transports.copy(image, ref)
    layer = image.layers()[0].digest()
    blob = (
        registry.root / "storage/docker/registry/v2/blobs/sha256"
        / layer.encoded[:2] / layer.encoded / "data"
    )  # fmt: skip
    data = bytearray(blob.read_bytes())
    data[size // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        archive.pull(store, f"{registry.host}/bad/blob{size}:v1", registries=registries)
    assert store.check() == [] and store.list_images() == []
    assert not store.blobs.has(layer)


def test_push_without_destination_uses_the_name_given(
    registry: testreg.RegistryServer,
    registries: Registries,
    make_image: MakeImage,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store(tmp_path / "root")
    image = make_image(LAYERS, tag="names")
    first, second = f"{registry.host}/names/first:v1", f"{registry.host}/names/second:v2"
    store.put_image(image, [first, second])
    dst, desc = ops_registry.push(store, second, registries=registries)
    assert str(dst) == f"docker://{second}" and desc.digest == image.digest()
    with pytest.raises(subprocess.CalledProcessError):
        skopeo("inspect", "--tls-verify=false", f"docker://{first}")
    # the other name is on the same registry: its blobs are mounted from the pushed repository
    with caplog.at_level(logging.DEBUG, logger="lamina.registry.transport"):
        dst, again = ops_registry.push(store, first, registries=registries)
    mounts = [m for m in caplog.messages if "mount=" in m and "from=names/second" in m]
    assert len(mounts) == 3 and all(m.endswith("-> 201") for m in mounts)  # 2 layers + config
    assert not [m for m in caplog.messages if m.startswith("PATCH")]
    assert isinstance(dst, DockerRef) and dst.mount_from == ("names/second",)
    assert again == desc
    digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{first}")
    assert digest.strip() == str(desc.digest)
