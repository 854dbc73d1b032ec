"""Uploads whose digest is known only at the end (``RegistryClient.open_upload``), and the push
path that compresses a layer while uploading it, against the real docker-registry."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import RegistryError
from lamina.oci import Descriptor, Digest, mediatype
from lamina.ops.registry import push
from lamina.registry import RegistryClient, RetryPolicy, TransportOptions
from lamina.registry.streamupload import StreamUpload
from lamina.store import Store
from lamina.testing import registry as testreg
from lamina.testing.layers import Entry
from lamina.transports import Progress
from lamina.transports.docker import Registries

pytestmark = [pytest.mark.needs_registry]
FAST = TransportOptions(retry=RetryPolicy(attempts=3, backoff=0.01, max_delay=0.1, resumes=3))
registry = testreg.registry_fixture("stream-reg")


@pytest.fixture
def client(registry: testreg.RegistryServer) -> Iterator[RegistryClient]:
    with RegistryClient(registry.host, options=FAST) as rc:
        yield rc


def _stream(upload: StreamUpload, data: bytes, piece: int) -> Digest:
    for i in range(0, len(data), piece):
        upload.write(data[i : i + piece])
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("size", [0, 1000, (4 << 20) * 3 + 12345])
def test_stream_upload_round_trip(client: RegistryClient, size: int) -> None:
    data = os.urandom(size)
    upload = client.open_upload(f"stream/s{size}")
    digest = _stream(upload, data, 300_000)
    upload.commit(digest, size)
    assert client.stat_blob(f"stream/s{size}", digest) == size
    with client.open_blob(f"stream/s{size}", _desc(digest, size)) as f:
        assert f.read() == data


def _desc(digest: Digest, size: int) -> Descriptor:
    return Descriptor(media_type=mediatype.OCI_LAYER_GZIP, digest=digest, size=size)


def test_stream_upload_wrong_digest_or_size_is_refused(client: RegistryClient) -> None:
    data = os.urandom((4 << 20) + 10)
    upload = client.open_upload("stream/wrong")
    _stream(upload, data, 1 << 20)
    wrong = Digest.parse("sha256:" + hashlib.sha256(b"other").hexdigest())
    with pytest.raises(RegistryError):
        upload.commit(wrong, len(data))
    assert client.stat_blob("stream/wrong", wrong) is None
    upload = client.open_upload("stream/short")
    digest = _stream(upload, data, 1 << 20)
    with pytest.raises(RegistryError, match="wrote"):
        upload.commit(digest, len(data) + 1)
    assert client.stat_blob("stream/short", digest) is None
    with pytest.raises(ValueError, match="committed or cancelled"):
        upload.write(b"x")
    upload.cancel()  # idempotent


def test_push_compresses_while_uploading_then_reuses_the_gzip(
    registry: testreg.RegistryServer, tmp_path: Path, make_image: object
) -> None:
    store = Store(tmp_path / "root")
    big = os.urandom(9 << 20)
    image = make_image(  # type: ignore[operator]
        [[Entry("big.bin", data=big), Entry("etc/x", data=b"x\n")]], compression="none"
    )
    store.put_image(image, ["plain:latest"])
    events: list[Progress] = []
    with Registries(options=FAST) as registries:
        _dst, desc = push(
            store, "plain", f"{registry.host}/stream/app:v1", registries=registries,
            progress=events.append,
        )  # fmt: skip
    layer_events = [(e.state, e.descriptor.digest) for e in events if e.kind == "layer"]
    assert [s for s, _ in layer_events if s != "copying"] == ["done"]  # said "Pushed"
    gzip_digest = layer_events[-1][1]
    assert store.blobs.has(gzip_digest)  # the gzip blob was kept in the store too
    with RegistryClient(registry.host, options=FAST) as rc:
        assert rc.stat_blob("stream/app", gzip_digest) == store.blobs.size(gzip_digest)
        raw, _media, digest = rc.get_manifest("stream/app", "v1")
    assert digest == desc.digest and str(gzip_digest) in raw.decode()
    # a second push to another repository compresses nothing and sends the same digests
    events.clear()
    with Registries(options=FAST) as registries:
        _dst, again = push(
            store, "plain", f"{registry.host}/stream/other:v1", registries=registries,
            progress=events.append,
        )  # fmt: skip
    assert again.digest == desc.digest
