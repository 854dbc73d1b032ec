"""Store layout basics: default roots, chain ids, ids, images.json, name resolution."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lamina.errors import NotFound, StorageError, StoreCorrupt
from lamina.oci.digest import Digest
from lamina.store import chain_id, chain_ids, default_root, naming
from lamina.store.images import ImageDB, ImageRecord, ImageTable
from lamina.store.layerdb import BlobRef, LayerDB, LayerRecord
from lamina.store.layout import is_layer_id, new_layer_id, new_short_id

A = Digest("sha256", "a" * 64)
B = Digest("sha256", "b" * 64)
C = Digest("sha256", "c" * 64)


def test_default_root() -> None:
    assert default_root(0, {"XDG_DATA_HOME": "/x"}) == Path("/var/lib/lamina")
    assert default_root(1000, {"XDG_DATA_HOME": "/x/data", "HOME": "/h"}) == Path("/x/data/lamina")
    assert default_root(1000, {"HOME": "/home/u"}) == Path("/home/u/.local/share/lamina")
    # a relative XDG_DATA_HOME is invalid per the XDG spec and ignored
    assert default_root(1000, {"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.local/share/lamina"
    )


def test_chain_ids_follow_the_oci_spec() -> None:
    assert chain_id(None, A) == A
    # sha256("sha256:aaa… sha256:bbb…"), computed with sha256sum
    ab = Digest("sha256", "ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c")
    assert chain_id(A, B) == ab
    assert chain_ids([A, B, C]) == [A, ab, chain_id(ab, C)]
    assert chain_ids([]) == []


def test_ids() -> None:
    short = new_short_id()
    assert (len(short) == 26 and short.isupper()) or short.isalnum()
    assert set(short) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    lid = new_layer_id()
    assert is_layer_id(lid) and is_layer_id(lid + "-init")
    assert not is_layer_id("l") and not is_layer_id(".tmp-" + lid)
    assert new_layer_id() != lid and new_short_id() != short


def test_layerdb_round_trip_and_files(tmp_path: Path) -> None:
    db = LayerDB(tmp_path)
    blob = BlobRef(digest=C, media_type="application/vnd.oci.image.layer.v1.tar+gzip", size=7)
    rec = LayerRecord(chain_id=B, diff_id=B, parent=A, cache_id="f" * 64, size=10, blobs=(blob,))
    db.put(rec)
    assert db.get(B) == rec and db.has(B) and not db.has(A)
    entry = tmp_path / B.encoded
    assert (entry / "diff").read_text() == str(B)  # no trailing newline, as Docker
    assert (entry / "parent").read_text() == str(A)
    assert (entry / "cache-id").read_text() == "f" * 64
    assert (entry / "size").read_text() == "10"
    base = LayerRecord(chain_id=A, diff_id=A, parent=None, cache_id="e" * 64, size=1)
    db.put(base)
    assert not (tmp_path / A.encoded / "parent").exists()
    db.add_blob(A, blob)
    db.add_blob(A, blob)
    assert db.get(A) == LayerRecord(**{**_fields(base), "blobs": (blob,)})
    assert list(db.iter_chains()) == [A, B]
    db.delete(B)
    db.delete(B)
    assert list(db.iter_chains()) == [A] and list(db.iter_temps()) == []


def _fields(rec: LayerRecord) -> dict[str, object]:
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}


def test_layerdb_rejects_malformed_entries(tmp_path: Path) -> None:
    db = LayerDB(tmp_path)
    db.put(LayerRecord(chain_id=A, diff_id=A, parent=None, cache_id="../../etc", size=1))
    with pytest.raises(StoreCorrupt, match="cache-id"):
        db.get(A)
    (tmp_path / A.encoded / "diff").write_text("nonsense")
    with pytest.raises(StoreCorrupt, match="unreadable"):
        db.get(A)


def _table() -> ImageTable:
    one = ImageRecord(
        digest=A,
        id=Digest("sha256", "12340" + "0" * 59),
        media_type="m",
        layers=(B,),
        created=None,
        loaded=1,
    )
    two = ImageRecord(
        digest=B,
        id=Digest("sha256", "12341" + "0" * 59),
        media_type="m",
        layers=(B, C),
        created=None,
        loaded=2,
    )
    return ImageTable(
        {A: one, B: two},
        {
            "docker.io/library/busybox:latest": A,
            "example.com/app:1": B,
            "docker.io/library/alias:latest": B,
        },
    )


def test_images_json_round_trip(tmp_path: Path) -> None:
    db = ImageDB(tmp_path / "images.json")
    assert db.load().images == {}
    db.update(lambda t: _replace(t, _table()))
    doc = json.loads((tmp_path / "images.json").read_bytes())
    assert doc["version"] == 1 and doc["names"]["example.com/app:1"] == str(B)
    table = db.load()
    assert table.record(B).names == ("docker.io/library/alias:latest", "example.com/app:1")
    assert [r.digest for r in table.iter_records()] == [B, A]
    (tmp_path / "images.json").write_text("{")
    with pytest.raises(StoreCorrupt):
        db.load()


def _replace(target: ImageTable, source: ImageTable) -> None:
    target.images, target.names = source.images, source.names


def test_update_drops_names_of_deleted_images(tmp_path: Path) -> None:
    db = ImageDB(tmp_path / "images.json")
    db.update(lambda t: _replace(t, _table()))
    table = db.update(lambda t: t.images.pop(B) and None)
    assert table.names == {"docker.io/library/busybox:latest": A}


def test_resolve() -> None:
    t = _table()
    assert naming.resolve(t, "busybox") == A
    assert naming.resolve(t, "docker.io/library/busybox:latest") == A
    assert naming.resolve(t, "example.com/app:1") == B
    assert naming.resolve(t, str(B)) == B  # manifest digest
    assert naming.resolve(t, "sha256:12341" + "0" * 59) == B  # image id
    assert naming.resolve(t, "12341") == B and naming.resolve(t, "sha256:12340") == A
    assert naming.resolve(t, f"busybox@{B}") == B
    with pytest.raises(NotFound, match="ambiguous"):
        naming.resolve(t, "1234")
    with pytest.raises(NotFound, match="no such image"):
        naming.resolve(t, "123")  # shorter than MIN_PREFIX: only a name, and not found
    with pytest.raises(NotFound, match="no such image"):
        naming.resolve(t, "nothere")


def test_plan_removal_rules() -> None:
    t = _table()
    events, gone = naming.plan_removal(t, "alias", force=False)
    assert events == [("Untagged", "alias:latest")] and gone is None
    t = _table()
    with pytest.raises(StorageError, match="must be forced"):
        naming.plan_removal(t, "12341", force=False)
    events, gone = naming.plan_removal(t, "12341", force=True)
    assert gone is not None and gone.digest == B
    assert sorted(events) == [("Untagged", "alias:latest"), ("Untagged", "example.com/app:1")]
    events, gone = naming.plan_removal(t, "busybox", force=False)
    assert events == [("Untagged", "busybox:latest")] and gone is not None
