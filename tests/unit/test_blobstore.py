"""BlobStore: verified, atomic, idempotent puts; safe opens; verify; gc of blobs and temps."""

from __future__ import annotations

import io
import os
import stat
import time
from pathlib import Path

import pytest

from lamina.blobstore import BlobStore
from lamina.errors import DigestMismatch, NotFound, StoreCorrupt
from lamina.oci.digest import Digest

DATA = b"hello lamina\n" * 1000
DIGEST = Digest.of_bytes(DATA)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(tmp_path / "root")
    s.ensure()
    return s


def ingest_entries(s: BlobStore) -> list[str]:
    return sorted(os.listdir(s.ingest_dir))


class Chunked(io.RawIOBase):
    """A stream returning small chunks and recording whether it reached EOF."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.eof = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        data = self._buf.read(min(n, 777) if n > 0 else 777)
        if not data:
            self.eof = True
        return data


def test_put_bytes_then_read_back(store: BlobStore) -> None:
    digest, size = store.put_bytes(DATA)
    assert (digest, size) == (DIGEST, len(DATA))
    assert store.has(digest) and store.size(digest) == len(DATA)
    assert store.path(digest) == store.root / "blobs" / "sha256" / DIGEST.encoded
    with store.open(digest) as f:
        assert f.read() == DATA
    with store.open_verified(digest, len(DATA)) as f:
        assert f.read() == DATA
    assert list(store.iter_digests()) == [DIGEST]
    assert ingest_entries(store) == []


def test_permissions(store: BlobStore) -> None:
    store.put_bytes(DATA)
    assert stat.S_IMODE(os.stat(store.blobs_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.ingest_dir).st_mode) == 0o700


def test_put_stream_with_expected_digest_and_size(store: BlobStore) -> None:
    assert store.put_stream(Chunked(DATA), DIGEST, len(DATA)) == (DIGEST, len(DATA))
    store.verify(DIGEST)


def test_bad_digest_is_refused_and_nothing_is_left(store: BlobStore) -> None:
    wrong = Digest.of_bytes(b"other")
    with pytest.raises(DigestMismatch, match="expected"):
        store.put_stream(Chunked(DATA), wrong)
    assert not store.has(wrong) and not store.has(DIGEST)
    assert ingest_entries(store) == []


def test_short_stream_is_refused(store: BlobStore) -> None:
    with pytest.raises(DigestMismatch, match="size"):
        store.put_stream(Chunked(DATA[:-1]), DIGEST, len(DATA))
    assert not store.has(DIGEST) and ingest_entries(store) == []


def test_long_stream_is_refused_early(store: BlobStore) -> None:
    with pytest.raises(DigestMismatch, match="more than"):
        store.put_stream(Chunked(DATA + b"x"), DIGEST, len(DATA))
    assert not store.has(DIGEST) and ingest_entries(store) == []


def test_put_is_idempotent_drains_and_keeps_inode(store: BlobStore) -> None:
    store.put_bytes(DATA)
    inode = os.stat(store.path(DIGEST)).st_ino
    stream = Chunked(DATA)
    assert store.put_stream(stream, DIGEST, len(DATA)) == (DIGEST, len(DATA))
    assert stream.eof
    assert os.stat(store.path(DIGEST)).st_ino == inode
    # without an expected digest the content is hashed and the existing blob kept
    assert store.put_stream(Chunked(DATA)) == (DIGEST, len(DATA))
    assert os.stat(store.path(DIGEST)).st_ino == inode


def test_idempotent_put_still_verifies_input(store: BlobStore) -> None:
    store.put_bytes(DATA)
    with pytest.raises(DigestMismatch):
        store.put_stream(Chunked(DATA[:-1] + b"?"), DIGEST, len(DATA))


def test_existing_blob_with_wrong_size_is_replaced(store: BlobStore) -> None:
    store.path(DIGEST).parent.mkdir(parents=True, exist_ok=True)
    store.path(DIGEST).write_bytes(b"truncated")
    store.put_stream(Chunked(DATA), DIGEST, len(DATA))
    store.verify(DIGEST)


def test_symlink_blob_is_refused(store: BlobStore, tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(DATA)
    os.symlink(target, store.path(DIGEST))
    assert not store.has(DIGEST)
    with pytest.raises(StoreCorrupt, match="not a regular file"):
        store.open(DIGEST)
    with pytest.raises(StoreCorrupt):
        store.verify(DIGEST)


def test_fifo_blob_is_refused_without_blocking(store: BlobStore) -> None:
    os.mkfifo(store.path(DIGEST))
    assert not store.has(DIGEST)
    with pytest.raises(StoreCorrupt, match="not a regular file"):
        store.open(DIGEST)


def test_missing_blob(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.open(DIGEST)
    with pytest.raises(NotFound):
        store.size(DIGEST)
    assert store.delete(DIGEST) == 0


def test_verify_detects_corruption(store: BlobStore) -> None:
    store.put_bytes(DATA)
    path = store.path(DIGEST)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"J")
    with pytest.raises(StoreCorrupt, match="digest"):
        store.verify(DIGEST)


def test_open_verified_detects_corruption(store: BlobStore) -> None:
    store.put_bytes(DATA)
    with open(store.path(DIGEST), "r+b") as f:
        f.write(b"J")
    with store.open_verified(DIGEST) as f, pytest.raises(DigestMismatch):
        f.read()
        f.read()


def test_stray_names_are_reported_not_yielded(store: BlobStore) -> None:
    store.put_bytes(DATA)
    (store.blobs_dir / "sha256" / "not-a-digest").write_bytes(b"x")
    assert list(store.iter_digests()) == [DIGEST]
    assert [p.name for p in store.iter_strays()] == ["not-a-digest"]


def test_gc_keeps_referenced_and_frees_the_rest(store: BlobStore) -> None:
    store.put_bytes(DATA)
    other, _ = store.put_bytes(b"garbage" * 10)
    assert store.gc({DIGEST}) == 70
    assert store.has(DIGEST) and not store.has(other)


def test_gc_removes_stale_ingest_but_never_a_live_one(store: BlobStore) -> None:
    stale = store.ingest_dir / "put-stale"
    stale.write_bytes(b"x" * 10)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = store.ingest_dir / "put-fresh"
    fresh.write_bytes(b"y")
    live = store.begin(DIGEST, len(DATA))
    live.write(DATA[:100])
    os.utime(live.path, (old, old))
    try:
        assert store.gc(set()) == 10
        assert not stale.exists() and fresh.exists() and live.path.exists()
        live.write(DATA[100:])
        assert live.commit() == (DIGEST, len(DATA))
    finally:
        live.abort()
    assert store.has(DIGEST)
    assert store.gc(set(), stale_after=0) == len(DATA) + 1


def test_ingest_abort_is_idempotent(store: BlobStore) -> None:
    with store.begin() as ingest:
        ingest.write(b"abc")
        path = ingest.path
        assert path.exists()
    assert not path.exists()
    ingest.abort()
