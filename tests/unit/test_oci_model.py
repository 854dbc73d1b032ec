"""The pure OCI model: digests, strict JSON, manifests vs indexes, configs, platforms."""

from __future__ import annotations

import hashlib

import pytest

from lamina.errors import ImageError, InvalidManifest, UsageError
from lamina.oci import (
    Descriptor,
    Digest,
    History,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    canonical,
    mediatype,
    whiteout,
)
from lamina.oci.manifest import sniff_media_type

HEX = "a" * 64
D = f"sha256:{HEX}"


def test_digest_round_trip_and_of_bytes() -> None:
    d = Digest.parse(D)
    assert str(d) == D and d.hex == HEX and d.short() == "a" * 12
    assert Digest.of_bytes(b"x") == Digest.parse("sha256:" + hashlib.sha256(b"x").hexdigest())
    assert Digest.parse("sha512:" + "0" * 128).algorithm == "sha512"


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEX,
        "sha256:",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "md5:" + "a" * 32,
        "sha512:" + "a" * 64,
        "sha256:../../etc/passwd" + "a" * 40,
        "sha256:" + "g" * 64,
        " sha256:" + HEX,
    ],
)
def test_malformed_digests_are_rejected(text: str) -> None:
    with pytest.raises(ImageError):
        Digest.parse(text)


def _manifest(**extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": mediatype.OCI_CONFIG, "digest": D, "size": 2},
        "layers": [{"mediaType": mediatype.OCI_LAYER_GZIP, "digest": D, "size": 3}],
    }
    doc.update(extra)
    return doc


def test_manifest_parses_and_serialises_deterministically() -> None:
    m = Manifest.from_json(canonical.dumps(_manifest()))
    assert m.config.size == 2 and [layer.size for layer in m.layers] == [3]
    assert Manifest.from_json(m.to_json()) == m
    assert m.to_json() == Manifest.from_json(m.to_json()).to_json()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"schemaVersion":2,"schemaVersion":2}', "duplicate key"),
        (b"[1]", "JSON object"),
        (b"\xff\xfe", "invalid JSON"),
        (b'{"a": NaN}', "NaN"),
        (canonical.dumps(_manifest(schemaVersion=1)), "schemaVersion"),
        (canonical.dumps(_manifest(schemaVersion=True)), "schemaVersion"),
        (canonical.dumps(_manifest(mediaType=mediatype.OCI_INDEX)), "mediaType"),
        (canonical.dumps(_manifest(manifests=[])), "index"),
        (canonical.dumps({"schemaVersion": 2, "layers": []}), "config"),
    ],
)
def test_bad_manifests_are_rejected(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidManifest, match=fragment):
        Manifest.from_json(data)


def test_bad_descriptor_fields() -> None:
    for bad in ({"size": -1}, {"size": True}, {"digest": "sha256:zz"}, {"urls": "x"}):
        layer = {"mediaType": mediatype.OCI_LAYER, "digest": D, "size": 1, **bad}
        with pytest.raises(InvalidManifest):
            Manifest.from_json(canonical.dumps(_manifest(layers=[layer])))


def test_index_vs_manifest_confusion() -> None:
    idx = {
        "schemaVersion": 2,
        "mediaType": mediatype.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": mediatype.DOCKER_MANIFEST,
                "digest": D,
                "size": 1,
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
            {
                "mediaType": mediatype.DOCKER_MANIFEST,
                "digest": "sha256:" + "b" * 64,
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ],
    }
    index = Index.from_json(canonical.dumps(idx))
    chosen = index.select(Platform.parse("linux/amd64"))
    assert chosen is not None and chosen.digest.hex == "b" * 64
    arm = index.select(Platform.parse("linux/arm64"))
    assert arm is not None and arm.digest.hex == HEX
    assert index.select(Platform.parse("linux/s390x")) is None
    with pytest.raises(InvalidManifest):
        Manifest.from_json(canonical.dumps(idx))
    with pytest.raises(InvalidManifest):
        Index.from_json(canonical.dumps(_manifest()))
    assert sniff_media_type(canonical.dumps(idx)) == mediatype.DOCKER_MANIFEST_LIST
    assert sniff_media_type(canonical.dumps({"manifests": []})) == mediatype.OCI_INDEX


def test_config_round_trip_keeps_unknown_keys() -> None:
    cfg = ImageConfig(
        architecture="amd64",
        os="linux",
        created="1970-01-01T00:00:00Z",
        config={"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        diff_ids=(Digest.parse(D),),
        history=(History(created_by="import", comment="c"),),
        extra={"docker_version": "x"},
    )
    again = ImageConfig.from_json(cfg.to_json())
    assert again == cfg and again.to_json() == cfg.to_json()
    more = cfg.with_history(History(created_by="CMD", empty_layer=True))
    assert more.history[-1].to_dict() == {"created_by": "CMD", "empty_layer": True}
    with pytest.raises(InvalidManifest):
        ImageConfig.from_json(b'{"rootfs": {"type": "layers", "diff_ids": ["nope"]}}')
    with pytest.raises(InvalidManifest):
        ImageConfig.from_json(b'{"architecture": "amd64"}')


def test_platform_parse_and_match() -> None:
    p = Platform.parse("linux/arm64/v8")
    assert str(p) == "linux/arm64/v8"
    assert Platform.parse("linux/arm64").matches(p)
    assert not Platform.parse("linux/arm/v7").matches(Platform.parse("linux/arm/v6"))
    for bad in ("linux", "linux/", "a/b/c/d", ""):
        with pytest.raises(UsageError):
            Platform.parse(bad)
    # os and architecture are Go's names: a typo is an error, not a platform nobody has
    for bad, what in (("bogus/amd64", "unknown os 'bogus'"), ("linux/amd46", "unknown archi")):
        with pytest.raises(UsageError, match=what):
            Platform.parse(bad)
    assert str(Platform.parse("Linux/x86_64")) == "linux/amd64"
    assert str(Platform.parse("linux/aarch64/v8")) == "linux/arm64/v8"
    assert str(Platform.parse("linux/armhf")) == "linux/arm/v7"
    assert Platform.host().os == "linux"


def test_descriptor_of_bytes() -> None:
    d = Descriptor.of_bytes(mediatype.OCI_CONFIG, b"{}")
    assert d.size == 2 and d.digest == Digest.of_bytes(b"{}")
    assert Descriptor.from_dict(d.to_dict()) == d


def test_whiteout_names() -> None:
    assert whiteout.whiteout_target(".wh.foo") == "foo"
    assert whiteout.whiteout_target(whiteout.OPAQUE) is None
    assert whiteout.whiteout_target(".wh...") is None
    assert whiteout.whiteout_target(".wh..") is None
    assert whiteout.is_opaque(".wh..wh..opq") and whiteout.is_whiteout(".wh.x")
    assert whiteout.whiteout_name("a") == ".wh.a"
