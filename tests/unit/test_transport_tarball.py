"""The one-pass archive writer: deterministic bytes, rollback of failed members, big sizes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from lamina._internal.verify import VerifyingReader
from lamina.errors import DigestMismatch
from lamina.oci.digest import Digest
from lamina.transports.tarball import BLOCK, RECORD, USTAR_MAX_SIZE, TarAppender, member_header


def _write(path: Path, members: list[tuple[str, bytes, bool]]) -> bytes:
    """Members (name, data, size known up front) through a TarAppender; the file's bytes."""
    with path.open("w+b") as f:
        tar = TarAppender(f)
        tar.add_dir("blobs")
        for name, data, known in members:
            tar.add_stream(name, io.BytesIO(data), len(data) if known else None)
        tar.add_bytes("index.json", b"{}")
        tar.finish()
    return path.read_bytes()


def test_members_read_back_and_bytes_are_deterministic(tmp_path: Path) -> None:
    members = [("blobs/a", b"x" * 1000, True), ("blobs/b", b"y" * 513, False), ("e", b"", False)]
    one = _write(tmp_path / "one.tar", members)
    two = _write(tmp_path / "two.tar", members)
    assert one == two and len(one) % RECORD == 0
    with tarfile.open(tmp_path / "one.tar") as tar:
        infos = tar.getmembers()
        assert [(i.name, i.size, i.mode, i.mtime, i.uid, i.uname) for i in infos] == [
            ("blobs", 0, 0o755, 0, 0, ""),
            ("blobs/a", 1000, 0o644, 0, 0, ""),
            ("blobs/b", 513, 0o644, 0, 0, ""),
            ("e", 0, 0o644, 0, 0, ""),
            ("index.json", 2, 0o644, 0, 0, ""),
        ]
        assert tar.extractfile("blobs/b").read() == b"y" * 513  # type: ignore[union-attr]


def test_a_failed_member_is_rolled_back_and_appending_goes_on(tmp_path: Path) -> None:
    good = b"good" * 300
    path = tmp_path / "t.tar"
    with path.open("w+b") as f:
        tar = TarAppender(f)
        tar.add_stream("first", io.BytesIO(good), len(good))
        before = tar.offset
        bad = VerifyingReader(io.BytesIO(b"evil" * 5000), Digest.of_bytes(b"other"), None)
        with pytest.raises(DigestMismatch):
            tar.add_stream("bad", bad, None)
        assert tar.offset == before and path.stat().st_size == before
        offset, size = tar.add_stream("second", io.BytesIO(good), None)
        assert tar.read_at(offset, size) == good
        tar.finish()
    with tarfile.open(path) as t:
        assert t.getnames() == ["first", "second"]
    assert b"evil" not in path.read_bytes()


def test_a_short_stream_is_refused(tmp_path: Path) -> None:
    with (tmp_path / "t.tar").open("w+b") as f:
        tar = TarAppender(f)
        with pytest.raises(OSError, match="expected 10"):
            tar.add_stream("short", io.BytesIO(b"abc"), 10)
        assert tar.offset == 0


def test_headers_are_one_block_even_past_the_ustar_size_limit() -> None:
    for size in (0, USTAR_MAX_SIZE, USTAR_MAX_SIZE + 1, 1 << 40):
        block = member_header("blobs/sha256/" + "a" * 64, size)
        assert len(block) == BLOCK
        info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        assert info.size == size and info.name == "blobs/sha256/" + "a" * 64
    for size in (1, USTAR_MAX_SIZE + 1):  # ustar refuses, GNU would need a long-name block
        with pytest.raises(ValueError, match=r"too long|does not fit"):
            member_header("x/" * 200, size)
