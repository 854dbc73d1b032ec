"""_internal: verifying readers, compression streams, atomic writes, locks."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from lamina._internal import compression
from lamina._internal.fileio import read_regular, write_atomic
from lamina._internal.lock import flocked
from lamina._internal.verify import VerifyingReader
from lamina.errors import DigestMismatch, LockTimeout, UnsafeArchive
from lamina.oci import Digest

DATA = os.urandom(300_000) + b"z" * 700_000


def test_verifying_reader_accepts_good_data() -> None:
    r = VerifyingReader(io.BytesIO(DATA), Digest.of_bytes(DATA), len(DATA))
    r.drain(4096)
    assert r.verified and r.digest() == Digest.of_bytes(DATA)


@pytest.mark.parametrize(
    ("data", "size", "fragment"),
    [
        (DATA + b"x", len(DATA), "more than"),
        (DATA[:-1], len(DATA), "size"),
        (DATA[:-1] + b"q", len(DATA), "digest"),
    ],
)
def test_verifying_reader_rejects(data: bytes, size: int, fragment: str) -> None:
    r = VerifyingReader(io.BytesIO(data), Digest.of_bytes(DATA), size)
    with pytest.raises(DigestMismatch, match=fragment):
        r.drain(65536)


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_compression_round_trip(kind: str) -> None:
    out = io.BytesIO()
    w = compression.open_compressor(out, kind)
    w.write(DATA)
    w.close()
    stream, sniffed = compression.open_decompressed(io.BytesIO(out.getvalue()))
    assert sniffed == kind and stream.read() == DATA


def test_gzip_output_is_deterministic() -> None:
    outs = []
    for _ in range(2):
        out = io.BytesIO()
        w = compression.open_compressor(out, "gzip")
        w.write(DATA)
        w.close()
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    assert outs[0][3] == 0 and outs[0][4:8] == b"\0\0\0\0"  # no FNAME, mtime 0
    import gzip

    assert gzip.decompress(outs[0]) == DATA


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_compressed_streams(kind: str, damage: str) -> None:
    out = io.BytesIO()
    w = compression.open_compressor(out, kind)
    w.write(DATA)
    w.close()
    blob = bytearray(out.getvalue())
    if damage == "truncate":
        del blob[len(blob) // 2 :]
    else:
        blob[len(blob) // 2] ^= 0xFF
    stream, _ = compression.open_decompressed(io.BytesIO(bytes(blob)))
    with pytest.raises(UnsafeArchive):
        while stream.read(1 << 16):
            pass


def test_zstd_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "BOMB_FLOOR", 1 << 20)
    import zstandard

    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 << 20))
    stream, _ = compression.open_decompressed(io.BytesIO(bomb))
    with pytest.raises(UnsafeArchive, match="bomb"):
        while stream.read(1 << 20):
            pass


def test_write_atomic_and_read_regular(tmp_path: Path) -> None:
    p = tmp_path / "a" / "f"
    write_atomic(p, b"one")
    write_atomic(p, b"two")
    assert read_regular(p, 10) == b"two"
    assert [x.name for x in p.parent.iterdir()] == ["f"]
    with pytest.raises(OSError):
        read_regular(p, 2)
    (tmp_path / "link").symlink_to(p)
    with pytest.raises(OSError):
        read_regular(tmp_path / "link", 10)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError):
        read_regular(tmp_path / "fifo", 10)


def _hold(path: str, seconds: float) -> None:
    with flocked(Path(path)):
        time.sleep(seconds)


def test_flock_excludes_other_processes(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    proc = multiprocessing.get_context("fork").Process(target=_hold, args=(str(lock), 1.5))
    proc.start()
    time.sleep(0.5)
    with pytest.raises(LockTimeout), flocked(lock, timeout=0.2):
        pass
    proc.join()
    with flocked(lock, timeout=1):
        pass
