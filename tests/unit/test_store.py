"""Store with the vfs driver (no mounts): layers, images, refcounted removal, check, gc."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.errors import DigestMismatch, NotFound, StorageError, StoreCorrupt
from lamina.image.memory import MemoryImage
from lamina.oci.digest import Digest
from lamina.snapshot.writer import write_layer
from lamina.store import Store, chain_ids
from lamina.testing.layers import EPOCH, build_tar, directory, file, whiteout_of

MakeImage = Callable[..., MemoryImage]

BASE = [directory("etc"), file("etc/os-release", b"ID=test\n"), file("etc/group", b"root:x:0:\n")]
TOP = [whiteout_of("etc/group"), file("app", b"app\n", mode=0o755)]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "root", driver="vfs")


def overlay2_entries(store: Store) -> list[str]:
    return sorted(os.listdir(store.layout.overlay2))


def test_root_permissions(store: Store) -> None:
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(store.root) == 0o711
    assert mode(store.layout.overlay2) == 0o710
    assert mode(store.root / "blobs") == 0o700
    assert store.driver == "vfs" and (store.root / "driver").read_text() == "vfs"


def test_driver_is_sticky(store: Store) -> None:
    with pytest.raises(StorageError, match="uses the vfs driver"):
        Store(store.root, driver="overlay2")
    assert Store(store.root).driver == "vfs"


def test_put_image_layout_and_records(store: Store, make_image: MakeImage) -> None:
    img = make_image([BASE, TOP])
    digest = store.put_image(img, ["busybox"])
    assert digest == img.digest()
    base, top = chain_ids(img.config().diff_ids)
    rb, rt = store.get_layer(base), store.get_layer(top)
    assert rt.parent == base and rb.parent is None
    base_dir = store.layout.layer_dir(rb.cache_id)
    top_dir = store.layout.layer_dir(rt.cache_id)
    short_b = (base_dir / "link").read_bytes()
    assert len(short_b) == 26  # 26 bytes, no newline
    assert os.readlink(store.layout.links / short_b.decode()) == f"../{rb.cache_id}/diff"
    assert not (base_dir / "lower").exists()
    assert (top_dir / "lower").read_text() == f"l/{short_b.decode()}"
    assert sorted(os.listdir(top_dir)) == ["diff", "link", "lower", "work"]
    # vfs: the top layer dir is the full merged tree
    assert sorted(os.listdir(top_dir / "diff")) == ["app", "etc"]
    assert os.listdir(top_dir / "diff" / "etc") == ["os-release"]
    recs = store.list_images()
    assert [r.names for r in recs] == [("docker.io/library/busybox:latest",)]
    assert recs[0].id == img.manifest().config.digest and recs[0].layers == (base, top)
    # every blob kept: manifest, config, both compressed layers
    blobs = {img.digest(), img.manifest().config.digest, *(d.digest for d in img.manifest().layers)}
    assert set(store.blobs.iter_digests()) == blobs
    assert [b.digest for b in rt.blobs] == [img.manifest().layers[1].digest]
    assert store.check() == []


def test_put_image_is_idempotent(store: Store, make_image: MakeImage) -> None:
    img = make_image([BASE, TOP])
    store.put_image(img, ["a"])
    before = overlay2_entries(store)
    store.put_image(img, ["b"])
    assert overlay2_entries(store) == before
    assert store.list_images()[0].names == (
        "docker.io/library/a:latest",
        "docker.io/library/b:latest",
    )


def test_putting_the_same_image_under_the_same_name_rewrites_nothing(
    store: Store, make_image: MakeImage
) -> None:
    img = make_image([BASE, TOP])
    store.put_image(img, ["a"])
    before = store.layout.images_json.stat()
    store.put_image(img, ["a"])
    after = store.layout.images_json.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    store.put_image(img, ["b"])
    assert store.layout.images_json.stat().st_ino != before.st_ino


def test_get_image_streams_match_the_source(store: Store, make_image: MakeImage) -> None:
    img = make_image([BASE, TOP], compression="zstd")
    store.put_image(img, ["x"])
    got = store.get_image("x")
    assert got.raw_manifest() == img.raw_manifest() and got.raw_config() == img.raw_config()
    assert got.id() == img.manifest().config.digest
    for mine, theirs in zip(got.layers(), img.layers(), strict=True):
        assert mine.digest() == theirs.digest() and mine.media_type() == theirs.media_type()
        with mine.open_compressed() as a, theirs.open_compressed() as b:
            assert a.read() == b.read()
        with mine.open_uncompressed() as a, theirs.open_uncompressed() as b:
            assert a.read() == b.read()
    assert got.graph_driver()["Name"] == "vfs"


def test_uncompressed_layers_are_stored_too(store: Store, make_image: MakeImage) -> None:
    img = make_image([BASE], compression="none")
    store.put_image(img)
    desc = img.manifest().layers[0]
    assert desc.digest == img.config().diff_ids[0]
    assert store.blobs.has(desc.digest)


def test_regenerated_layer_is_verified_and_cached(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hello").write_bytes(b"hi\n")
    for p in (src / "etc" / "hello", src / "etc"):
        os.utime(p, (EPOCH, EPOCH))
    tar = tmp_path / "layer.tar"
    with tar.open("wb") as f:
        write_layer(src, f, kind="dir", epoch=EPOCH)
    from lamina.image.memory import MemoryImage, file_layer
    from lamina.oci.config import ImageConfig

    layer = file_layer(tar)
    img = MemoryImage(ImageConfig(diff_ids=(layer.diff_id(),)), [layer])
    store.put_image(img, ["regen"])
    store.blobs.delete(layer.digest())
    got = store.get_image("regen").layers()[0]
    with got.open_uncompressed() as f:
        assert f.read() == tar.read_bytes()
    with got.open_compressed() as f:  # uncompressed media type: regenerated == the tar
        assert f.read() == tar.read_bytes()
    assert store.blobs.has(layer.digest())
    assert sorted(os.listdir(store.layout.tmp)) == ["locks"]


def test_layer_that_cannot_be_reproduced_is_refused(store: Store, make_image: MakeImage) -> None:
    img = make_image([BASE])  # written by tarfile, not by lamina's deterministic writer
    store.put_image(img, ["x"])
    store.blobs.delete(img.manifest().layers[0].digest)
    with pytest.raises(StoreCorrupt, match="regenerated tar"):
        store.get_image("x").layers()[0].open_uncompressed()


def test_create_layer_verifies_diff_id_and_leaves_nothing(store: Store) -> None:
    data = build_tar(BASE)
    wrong = Digest.of_bytes(b"nope")
    with pytest.raises(DigestMismatch):
        store.create_layer(None, io.BytesIO(data), wrong)
    assert overlay2_entries(store) == ["l"]
    assert list(store.layers.db.iter_chains()) == []
    rec = store.create_layer(None, io.BytesIO(data))
    assert rec.diff_id == Digest.of_bytes(data) and rec.chain_id == rec.diff_id
    again = store.create_layer(None, io.BytesIO(data), rec.diff_id)
    assert again == rec and overlay2_entries(store) == sorted(["l", rec.cache_id])
    with pytest.raises(NotFound):
        store.create_layer(Digest.of_bytes(b"no parent"), io.BytesIO(data))


def test_refcounted_removal(store: Store, make_image: MakeImage) -> None:
    one = make_image([BASE, TOP], tag="one")
    two = make_image([BASE, [file("other", b"2")]], tag="two")
    store.put_image(one, ["one"])
    store.put_image(two, ["two"])
    base, top1 = chain_ids(one.config().diff_ids)
    _, top2 = chain_ids(two.config().diff_ids)
    top1_dir = store.layout.layer_dir(store.get_layer(top1).cache_id)
    assert len(os.listdir(store.layout.links)) == 3
    assert store.get_layer(base).refcount == 2 and store.get_layer(top1).refcount == 1
    events = store.remove_image("one")
    assert events == [("Untagged", "one:latest"), ("Deleted", str(one.manifest().config.digest))]
    assert store.layers.db.has(base) and store.layers.db.has(top2)
    assert not store.layers.db.has(top1) and not top1_dir.exists()
    assert len(os.listdir(store.layout.links)) == 2
    assert not store.blobs.has(one.digest()) and store.blobs.has(two.digest())
    assert store.get_layer(base).refcount == 1
    assert store.check() == []
    store.remove_image("two")
    assert overlay2_entries(store) == ["l"] and os.listdir(store.layout.links) == []
    assert list(store.blobs.iter_digests()) == []
    assert store.list_images() == []


def test_tag_untag_and_forced_removal(store: Store, make_image: MakeImage) -> None:
    img = make_image([BASE])
    store.put_image(img, ["a"])
    store.tag("a", "example.com/b:2")
    assert store.resolve("example.com/b:2") == img.digest()
    with pytest.raises(StorageError, match="must be forced"):
        store.remove_image(str(img.manifest().config.digest))
    store.untag("a")
    with pytest.raises(NotFound):
        store.untag("a")
    assert store.get_image(img.manifest().config.digest.short()).names() == ("example.com/b:2",)
    events = store.remove_image(img.manifest().config.digest.short(), force=True)
    assert events[0] == ("Untagged", "example.com/b:2")
    with pytest.raises(NotFound):
        store.get_image("example.com/b:2")


def test_check_reports_and_gc_fixes(store: Store, make_image: MakeImage) -> None:
    img = make_image([BASE, TOP])
    store.put_image(img, ["x"])
    base, _ = chain_ids(img.config().diff_ids)
    # leftovers of a crashed load
    (store.layout.overlay2 / ".tmp-0123").mkdir()
    (store.layout.overlay2 / ("ab" * 32)).mkdir()
    (store.root / "ingest" / "put-crashed").write_bytes(b"x")
    problems = store.check()
    assert len(problems) == 3 and all(p.startswith("removable: ") for p in problems)
    assert store.gc() > 0
    assert store.check() == []
    # real corruption is reported and not "removable"
    blob = store.blobs.path(img.manifest().layers[0].digest)
    blob.write_bytes(b"corrupt")
    link = (
        store.layout.links
        / (store.layout.layer_dir(store.get_layer(base).cache_id) / "link").read_text()
    )
    link.unlink()
    problems = store.check()
    assert any("blob" in p and "digest" in p for p in problems)
    assert any("link" in p for p in problems)
    assert not any(p.startswith("removable") for p in problems)


def test_prune_removes_dangling_images(store: Store, make_image: MakeImage) -> None:
    named = make_image([BASE], tag="n")
    dangling = make_image([BASE, TOP], tag="d")
    store.put_image(named, ["named"])
    store.put_image(dangling, [])
    usage = store.df()
    assert usage["images"] == 2 and usage["layers"] == 2 and usage["reclaimable"] > 0
    ids, freed = store.prune()
    assert ids == [str(dangling.manifest().config.digest)] and freed > 0
    assert [r.names for r in store.list_images()] == [("docker.io/library/named:latest",)]
    assert store.df()["reclaimable"] == 0 and store.check() == []


def test_prune_all_unused_keeps_what_containers_use(store: Store, make_image: MakeImage) -> None:
    kept = make_image([BASE], tag="k")
    gone = make_image([BASE, TOP], tag="g")
    store.put_image(kept, ["kept"])
    store.put_image(gone, ["gone", "gone:two"])
    kept_id = str(kept.manifest().config.digest)
    ids, _ = store.prune(keep=frozenset({kept_id}))
    assert ids == []  # named images stay without all_unused
    ids, freed = store.prune(all_unused=True, keep=frozenset({kept_id}))
    assert ids == [str(gone.manifest().config.digest)] and freed > 0
    assert [r.names for r in store.list_images()] == [("docker.io/library/kept:latest",)]
    assert store.check() == []


def test_images_json_is_valid_json_with_normalised_names(
    store: Store, make_image: MakeImage
) -> None:
    img = make_image([BASE])
    store.put_image(img, ["busybox:1", "localhost:5000/x"])
    doc = json.loads(store.layout.images_json.read_bytes())
    assert doc["names"] == {
        "docker.io/library/busybox:1": str(img.digest()),
        "localhost:5000/x:latest": str(img.digest()),
    }


def test_put_image_makes_config_and_manifest_durable_with_one_directory_fsync(
    store: Store, make_image: MakeImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a spy that records what each fsync made durable, then performs it
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    store.put_image(make_image([BASE]))
    img = make_image([BASE], tag="two")  # the same layer: only config and manifest are new
    assert img.manifest().layers == make_image([BASE]).manifest().layers
    monkeypatch.setattr(os, "fsync", spy)
    store.put_image(img, ["x"])
    blob_dir = str(store.root / "blobs" / "sha256")
    config, manifest = img.manifest().config.digest, img.digest()
    assert all(store.blobs.has(d) for d in (config, manifest))
    assert [p for p in synced if p == blob_dir] == [blob_dir]  # one, for both renames
    files = [i for i, p in enumerate(synced) if "/ingest/" in p]
    images = [i for i, p in enumerate(synced) if p == str(store.root) or "/.tmp-" in p]
    assert len(files) == 2  # each blob file itself is fsynced
    # the directory fsync comes after both files and before images.json is written
    assert max(files) < synced.index(blob_dir) < min(images)
