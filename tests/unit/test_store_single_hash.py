"""Loading hashes each layer's bytes once (issue 2), and still never keeps unverified content.

A layer's blob stream carries its own verifier; the blob store ingest and (for a plain tar,
digest == diff_id) the layer apply *vouch* with it instead of hashing the bytes again. These
tests check that a bad byte is still refused with nothing left behind, and the vouching rules.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina._internal.verify import VerifyingReader, VouchedReader, own_verifier
from lamina.blobstore.cas import BlobStore
from lamina.errors import DigestMismatch, UnsafeArchive
from lamina.image.memory import MemoryImage
from lamina.oci.digest import Digest
from lamina.store import Store
from lamina.testing.layers import file

MakeImage = Callable[..., MemoryImage]
LAYERS = [[file("etc/motd", b"hello\n")], [file("data", bytes(range(256)) * 400)]]


def _flip_a_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_corrupt_layer_is_refused_and_nothing_kept(
    tmp_path: Path, make_image: MakeImage, compression: str
) -> None:
    img = make_image(LAYERS, compression=compression)
    layer = img.layers()[-1]
    files = [p for p in (tmp_path / "images").rglob("*") if p.is_file()]
    blob = next(p for p in files if Digest.of_bytes(p.read_bytes()) == layer.digest())
    _flip_a_bit(blob, blob.stat().st_size // 2)
    store = Store(tmp_path / "root", driver="vfs")
    with pytest.raises((DigestMismatch, UnsafeArchive)):
        store.put_image(img, ["x"])
    assert len(list(store.layers.db.iter_chains())) == 1  # only the good base layer
    assert not store.blobs.has(layer.digest())
    assert os.listdir(store.root / "ingest") == []
    assert [n for n in os.listdir(store.layout.overlay2) if n.startswith(".tmp")] == []
    assert store.list_images() == []


def test_a_good_plain_layer_loads_with_the_right_ids(tmp_path: Path, make_image: MakeImage) -> None:
    img = make_image(LAYERS, compression="none")
    store = Store(tmp_path / "root", driver="vfs")
    store.put_image(img, ["x"])
    stored = store.get_image("x")
    assert stored.config().diff_ids == img.config().diff_ids
    for layer in stored.layers():
        assert store.blobs.has(layer.digest())
        with layer.open_compressed() as f:  # the kept blob verifies against its digest
            f.read()


def test_vouched_reader_needs_a_finished_voucher_over_the_same_bytes() -> None:
    data = b"x" * 5000
    digest = Digest.of_bytes(data)
    voucher = VerifyingReader(io.BytesIO(data), digest, len(data))
    vouched = VouchedReader(voucher, voucher, what="t")  # reads through the voucher: in step
    assert vouched.read() == data and vouched.read() == b""
    assert vouched.digest() == digest
    lagging = VerifyingReader(io.BytesIO(data), digest, len(data))
    lagging.read(10)  # the voucher stops short of EOF
    with pytest.raises(DigestMismatch, match="not verified"):
        VouchedReader(io.BytesIO(data), lagging, what="t").drain()
    bad = VerifyingReader(io.BytesIO(b"y" * 5000), digest, len(data))
    with pytest.raises(DigestMismatch, match="expected"):
        VouchedReader(bad, bad, what="t").drain()


def test_own_verifier_only_matches_the_same_unread_digest_and_size() -> None:
    data = b"abc"
    digest = Digest.of_bytes(data)

    class Stream:
        def __init__(self) -> None:
            self.verifier = VerifyingReader(io.BytesIO(data), digest, 3)

    s = Stream()
    assert own_verifier(s, digest, 3) is s.verifier and own_verifier(s, digest, None)
    assert own_verifier(s, digest, 4) is None
    assert own_verifier(s, Digest.of_bytes(b"other"), 3) is None
    assert own_verifier(io.BytesIO(data), digest, 3) is None
    s.verifier.read(1)
    assert own_verifier(s, digest, 3) is None


def test_ingest_with_a_voucher_commits_only_what_it_verified(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    blobs.ensure()
    data = b"z" * 3000
    digest = Digest.of_bytes(data)
    voucher = VerifyingReader(io.BytesIO(data), digest, len(data))
    with blobs.begin(digest, len(data), voucher=voucher) as ingest:
        while chunk := voucher.read(1000):
            ingest.write(chunk)
        assert ingest.commit() == (digest, len(data))
    short = VerifyingReader(io.BytesIO(data), digest, len(data))
    other = Digest.of_bytes(b"other")
    with blobs.begin(other, len(data), voucher=VerifyingReader(io.BytesIO(data), other)) as ing:
        ing.write(short.read(100))  # written bytes no voucher read: refused
        with pytest.raises(DigestMismatch, match="not verified"):
            ing.commit()
    assert not blobs.has(other)
    with pytest.raises(ValueError, match="same digest"):
        blobs.begin(other, voucher=voucher)
