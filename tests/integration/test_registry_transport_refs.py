"""docker:// references: parsing, normalisation, round trips, and the names pull/push accept.

No registry is contacted here (fast); the round trips against a real one are in
``test_registry_transport.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lamina import transports
from lamina.errors import DigestMismatch, InvalidReference, UsageError
from lamina.oci import Digest
from lamina.ops.registry import open_registries, registry_name, transport_options
from lamina.transports.docker import DockerRef, Prefetch, Registries

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("docker://busybox", "docker://docker.io/library/busybox:latest"),
        ("docker://busybox:1.36", "docker://docker.io/library/busybox:1.36"),
        ("docker://index.docker.io/me/app", "docker://docker.io/me/app:latest"),
        ("docker://localhost:5000/a/b:v1", "docker://localhost:5000/a/b:v1"),
        ("docker://127.0.0.1:5000/x@" + DIGEST, "docker://127.0.0.1:5000/x@" + DIGEST),
        ("docker://r.example/x:t@" + DIGEST, "docker://r.example/x:t@" + DIGEST),
    ],
)
def test_parse_normalises_and_round_trips(text: str, canonical: str) -> None:
    ref = transports.parse(text)
    assert isinstance(ref, DockerRef) and str(ref) == canonical
    assert transports.parse(str(ref)) == ref


def test_parts_and_registries_are_not_part_of_equality() -> None:
    ref = transports.parse("docker://127.0.0.1:5000/team/app:v1")
    assert isinstance(ref, DockerRef)
    assert (ref.host, ref.repository, ref.reference.tag) == ("127.0.0.1:5000", "team/app", "v1")
    with Registries() as registries:
        attached = ref.with_registries(registries, ["team/base"])
        assert attached == ref and attached.registries is registries
        assert attached.mount_from == ("team/base",)
        assert registries.client("127.0.0.1:5000") is registries.client("127.0.0.1:5000")
    pinned = transports.parse("docker://r.example/x@" + DIGEST)
    assert isinstance(pinned, DockerRef) and pinned.reference.digest == Digest.parse(DIGEST)


@pytest.mark.parametrize(
    "text",
    ["docker:busybox", "docker://", "docker://UPPER/Case", "docker://x:bad tag", "docker:latest"],
)
def test_invalid_references_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        transports.parse(text)
    assert info.value.message and "\n" not in info.value.message


def test_pull_and_push_names_are_registry_names() -> None:
    assert str(registry_name("busybox")) == "docker://docker.io/library/busybox:latest"
    assert str(registry_name("localhost:5000/x")) == "docker://localhost:5000/x:latest"
    assert str(registry_name("oci:/tmp/layout:v1")) == "oci:/tmp/layout:v1"
    assert registry_name("local:busybox").transport == "local"
    with pytest.raises(InvalidReference):
        registry_name("Not A Name")


def test_tls_verify_false_allows_insecure_hosts() -> None:
    assert transport_options().tls_verify and transport_options().insecure is False
    opts = transport_options(tls_verify=False)
    assert opts.tls_verify is False and opts.insecure is True


def test_creds_apply_only_to_the_command_hosts(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}
    with open_registries(env, creds="me:pw", creds_hosts=["r.example"]) as registries:
        assert registries.credentials is not None
        got = registries.credentials.get("r.example")
        assert got is not None and (got.username, got.password) == ("me", "pw")
        assert registries.credentials.get("other.example") is None
    with pytest.raises(UsageError, match="USER"):
        open_registries(env, creds=":pw")


class Failing(io.RawIOBase):
    """``good`` bytes, then an error (as a blob stream raises DigestMismatch at EOF)."""

    def __init__(self, good: bytes) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        if not self._left:
            raise DigestMismatch("blob sha256:x: content has a different digest")
        out, self._left = self._left[: max(n, 1)], self._left[max(n, 1) :]
        return out


def test_prefetch_keeps_order_raises_errors_and_closes_early() -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB in 1 KiB-unaligned chunks
    with Prefetch(io.BytesIO(data), depth=2, chunk=100_003) as f:
        assert f.read() == data
    with (
        pytest.raises(DigestMismatch),
        io.BufferedReader(Prefetch(Failing(data[:300_000]), chunk=65_536)) as g,  # type: ignore[arg-type]
    ):
        assert g.read(300_000) == data[:300_000]
        g.read(1)
    early = Prefetch(io.BytesIO(data), depth=1, chunk=1000)
    assert early.read(10) == data[:10]
    early.close()  # the reader thread is blocked on a full queue: close must not hang
    early.close()
    assert early.closed
