"""RegistryClient against Debian's real docker-registry on 127.0.0.1 (no auth)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import DigestMismatch, InvalidManifest, NotFound, RegistryError
from lamina.oci import Descriptor, Digest, Manifest, mediatype
from lamina.registry import RegistryClient, RegistryNotFound, RetryPolicy, TransportOptions
from lamina.testing import registry as testreg

pytestmark = [pytest.mark.needs_registry]

FAST = TransportOptions(retry=RetryPolicy(attempts=3, backoff=0.01, max_delay=0.1, resumes=3))


def blob_bytes(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class Unreadable(io.RawIOBase):
    """A stream that must not be read (put_blob should skip existing blobs)."""

    def read(self, n: int = -1, /) -> bytes:
        raise AssertionError("stream was read")


registry = testreg.registry_fixture("registry")


@pytest.fixture
def client(registry: testreg.RegistryServer) -> Iterator[RegistryClient]:
    with RegistryClient(registry.host, options=FAST) as rc:
        yield rc


def push_image(rc: RegistryClient, repo: str, tag: str, seed: str) -> tuple[bytes, Digest]:
    """Push a one-layer image; return the manifest bytes and digest."""
    layer = blob_bytes(seed + "-layer", 5000)
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    ldesc = Descriptor.of_bytes(mediatype.OCI_LAYER_GZIP, layer)
    cdesc = Descriptor.of_bytes(mediatype.OCI_CONFIG, config)
    rc.put_blob(repo, io.BytesIO(layer), ldesc)
    rc.put_blob(repo, io.BytesIO(config), cdesc)
    manifest = Manifest(config=cdesc, layers=(ldesc,)).to_json()
    digest = rc.put_manifest(repo, tag, manifest, mediatype.OCI_MANIFEST)
    return manifest, digest


def test_push_then_pull_by_tag_and_digest(client: RegistryClient) -> None:
    manifest, digest = push_image(client, "app/one", "v1", "one")
    assert digest == Digest.of_bytes(manifest)
    data, media, got = client.get_manifest("app/one", "v1")
    assert (data, media, got) == (manifest, mediatype.OCI_MANIFEST, digest)
    data, media, got = client.get_manifest("app/one", digest)
    assert (data, got) == (manifest, digest)
    head = client.head_manifest("app/one", "v1")
    assert (head.digest, head.size, head.media_type) == (digest, len(manifest), media)
    layer = Manifest.from_json(data).layers[0]
    with client.open_blob("app/one", layer) as f:
        assert f.read() == blob_bytes("one-layer", 5000)


def test_docker_media_type_manifest_round_trips(client: RegistryClient) -> None:
    config = b'{"architecture":"arm64","os":"linux"}'
    cdesc = Descriptor.of_bytes(mediatype.DOCKER_CONFIG, config)
    client.put_blob("app/docker", io.BytesIO(config), cdesc)
    body = Manifest(config=cdesc, layers=(), media_type=mediatype.DOCKER_MANIFEST).to_json()
    client.put_manifest("app/docker", "d1", body, mediatype.DOCKER_MANIFEST)
    assert client.get_manifest("app/docker", "d1")[1] == mediatype.DOCKER_MANIFEST


def test_chunked_upload_and_idempotent_put(registry: testreg.RegistryServer) -> None:
    data = blob_bytes("chunked", 300_000)
    desc = Descriptor.of_bytes(mediatype.OCI_LAYER, data)
    with RegistryClient(registry.host, options=FAST, chunk_size=64 << 10) as rc:
        rc.put_blob("app/chunked", io.BytesIO(data), desc)
        assert rc.has_blob("app/chunked", desc.digest)
        rc.put_blob("app/chunked", Unreadable(), desc)  # exists: not read again
        with rc.open_blob("app/chunked", desc) as f:
            assert hashlib.sha256(f.read()).hexdigest() == desc.digest.hex


def test_upload_of_a_stream_that_does_not_match_is_refused(client: RegistryClient) -> None:
    data = blob_bytes("liar", 100_000)
    desc = Descriptor.of_bytes(mediatype.OCI_LAYER, data)
    with pytest.raises(DigestMismatch):
        client.put_blob("app/liar", io.BytesIO(data[:-1] + b"x"), desc)
    assert not client.has_blob("app/liar", desc.digest)


def test_mount_across_repositories(client: RegistryClient) -> None:
    data = blob_bytes("mount", 4000)
    desc = Descriptor.of_bytes(mediatype.OCI_LAYER, data)
    client.put_blob("src/repo", io.BytesIO(data), desc)
    assert client.mount_blob("dst/repo", desc, "src/repo") is True
    assert client.has_blob("dst/repo", desc.digest)
    other = Descriptor.of_bytes(mediatype.OCI_LAYER, b"not in src")
    assert client.mount_blob("dst/repo", other, "src/repo") is False
    client.put_blob("dst/repo", io.BytesIO(b"not in src"), other, mount_from=["src/repo"])
    assert client.has_blob("dst/repo", other.digest)


def test_tag_list(client: RegistryClient) -> None:
    # docker-registry 2.8 ignores ?n= and sends one unordered page; pagination through
    # Link headers is exercised in test_registry_faults.py.
    manifest, _ = push_image(client, "app/tags", "t0", "tags")
    for i in range(1, 5):
        client.put_manifest("app/tags", f"t{i}", manifest, mediatype.OCI_MANIFEST)
    assert sorted(client.list_tags("app/tags", page_size=2)) == ["t0", "t1", "t2", "t3", "t4"]
    with pytest.raises(RegistryNotFound, match=r"listing tags of 127\.0\.0\.1"):
        client.list_tags("app/none")


def test_missing_manifest_and_blob_are_not_found(client: RegistryClient) -> None:
    push_image(client, "app/nf", "v1", "nf")
    with pytest.raises(RegistryNotFound) as info:
        client.get_manifest("app/nf", "nope")
    err = info.value
    assert isinstance(err, NotFound) and err.status == 404 and err.code == "MANIFEST_UNKNOWN"
    assert "app/nf:nope" in str(err) and "\n" not in str(err)
    desc = Descriptor.of_bytes(mediatype.OCI_LAYER, b"absent")
    with pytest.raises(RegistryNotFound, match="blob"):
        client.open_blob("app/nf", desc)
    assert not client.has_blob("app/nf", desc.digest)


def test_delete_manifest(client: RegistryClient) -> None:
    _, digest = push_image(client, "app/del", "v1", "del")
    client.delete_manifest("app/del", digest)
    with pytest.raises(RegistryNotFound):
        client.get_manifest("app/del", digest)


def test_put_manifest_checks_digest_and_size_locally(client: RegistryClient) -> None:
    wrong = Digest.of_bytes(b"other")
    with pytest.raises(DigestMismatch):
        client.put_manifest("app/x", wrong, b"{}", mediatype.OCI_MANIFEST)
    with pytest.raises(InvalidManifest, match="larger"):
        client.put_manifest("app/x", "big", b" " * (5 << 20), mediatype.OCI_MANIFEST)


def test_refused_connection_is_retried_then_one_line(tmp_path: Path) -> None:
    sleeps: list[float] = []
    port = testreg.free_port()
    rc = RegistryClient(f"127.0.0.1:{port}", options=FAST)
    rc._transport.sleep = sleeps.append
    with pytest.raises(RegistryError) as info:
        rc.get_manifest("x/y", "latest")
    assert f"connection refused by 127.0.0.1:{port}" in str(info.value)
    assert info.value.retryable and len(sleeps) == 2 and "\n" not in str(info.value)


def test_unknown_host() -> None:
    with (
        RegistryClient("no-such-host.invalid", options=FAST) as rc,
        pytest.raises(RegistryError, match=r"unknown host no-such-host\.invalid"),
    ):
        rc.list_tags("x")


def test_mirror_is_tried_first_and_skipped_when_down(
    client: RegistryClient, registry: testreg.RegistryServer
) -> None:
    manifest, digest = push_image(client, "app/mirror", "v1", "mirror")
    dead = f"127.0.0.1:{testreg.free_port()}"
    with RegistryClient(registry.host, mirrors=[dead], options=FAST) as rc:
        assert rc.get_manifest("app/mirror", "v1")[2] == digest
    with RegistryClient(dead, mirrors=[registry.host], options=FAST) as rc:
        assert rc.get_manifest("app/mirror", "v1")[0] == manifest


def test_docker_hub_names() -> None:
    with RegistryClient("index.docker.io") as rc:
        assert rc.name == "docker.io"
        assert rc.repository("busybox") == "library/busybox"
        assert rc.repository("me/app") == "me/app"
        assert rc._transport.host == "registry-1.docker.io"
