"""The strict tar reader: PAX/GNU names, xattrs, name cleaning, corruption detection."""

from __future__ import annotations

import io
import tarfile

import pytest

from lamina.errors import UnsafeArchive
from lamina.snapshot.tarstream import DIR, LINK, SYMLINK, Member, TarReader, clean_name
from lamina.testing import hostile
from lamina.testing.layers import EPOCH, build_tar, directory, file, hardlink, symlink


def read_all(data: bytes) -> tuple[list[Member], list[bytes], int]:
    reader = TarReader(io.BytesIO(data))
    members, contents = [], []
    for m in reader:
        members.append(m)
        sink = io.BytesIO()
        if m.is_file:
            reader.copy_data(sink.write)
        contents.append(sink.getvalue())
    return members, contents, reader.consumed


def test_reads_types_content_and_counts_every_byte() -> None:
    data = build_tar(
        [
            directory("etc", mode=0o755),
            file("etc/passwd", b"root:x:0:0\n", mode=0o4755, uid=12, gid=34),
            symlink("etc/mtab", "/proc/mounts"),
            hardlink("etc/pw2", "etc/passwd"),
        ]
    )
    members, contents, consumed = read_all(data)
    assert [(m.path, m.type) for m in members] == [
        ("etc", DIR),
        ("etc/passwd", b"0"),
        ("etc/mtab", SYMLINK),
        ("etc/pw2", LINK),
    ]
    assert contents[1] == b"root:x:0:0\n"
    assert (members[1].mode, members[1].uid, members[1].gid) == (0o4755, 12, 34)
    assert members[1].mtime_ns == EPOCH * 10**9
    assert members[2].linkname == "/proc/mounts"  # symlink targets kept verbatim
    assert members[3].linkname == "etc/passwd"
    assert consumed == len(data)


def test_pax_xattrs_long_names_and_subsecond_mtime() -> None:
    long = "d/" * 80 + "file"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(long)
        info.pax_headers = {
            "SCHILY.xattr.security.capability": b"\x01\x00\x00\x02\xff".decode(
                "utf-8", "surrogateescape"
            ),
            "SCHILY.xattr.user.note": "hi",
            "mtime": "1700000000.123456789",
        }
        tf.addfile(info, io.BytesIO(b""))
    members, _c, _n = read_all(buf.getvalue())
    assert members[0].path == long
    assert members[0].xattrs == {"security.capability": b"\x01\x00\x00\x02\xff", "user.note": b"hi"}
    assert members[0].mtime_ns == 1_700_000_000_123_456_789


def test_gnu_long_names_and_links() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        target = "t/" * 70 + "x"
        info = tarfile.TarInfo("l/" * 70 + "link")
        info.type, info.linkname = tarfile.SYMTYPE, target
        tf.addfile(info)
    members, _c, _n = read_all(buf.getvalue())
    assert members[0].path == "l/" * 70 + "link"
    assert members[0].linkname == "t/" * 70 + "x"


@pytest.mark.parametrize(
    ("name", "clean"),
    [("./a/b", "a/b"), ("/abs/x", "abs/x"), ("a//b/./c/", "a/b/c"), ("a/../b", "b"), ("./", "")],
)
def test_clean_name(name: str, clean: str) -> None:
    assert clean_name(name, "t") == clean


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "/../x", "a/\x00b"])
def test_clean_name_rejects_escapes(name: str) -> None:
    with pytest.raises(UnsafeArchive):
        clean_name(name, "t")


@pytest.mark.parametrize(
    "data",
    [
        hostile.corrupt_middle_header(),
        hostile.garbage_after_end(),
        hostile.truncated(),
        hostile.huge_claimed_size(),
        hostile.huge_pax_header(),
        b"",
        build_tar([file("a", b"x")])[:1024],  # no end-of-archive marker
    ],
    ids=[
        "corrupt-middle",
        "garbage-after-end",
        "truncated",
        "huge-size",
        "huge-pax",
        "empty",
        "no-end",
    ],
)
def test_corruption_is_detected(data: bytes) -> None:
    with pytest.raises(UnsafeArchive):
        read_all(data)


def test_python_tarfile_misses_the_corrupt_header_we_catch() -> None:
    data = hostile.corrupt_middle_header()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        assert [m.name for m in tf] == ["one"]  # tarfile silently stops here


def test_sparse_and_unknown_types_rejected() -> None:
    info = tarfile.TarInfo("v")
    info.type = b"V"
    data = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict") + bytes(1024)
    with pytest.raises(UnsafeArchive, match="unsupported tar member type"):
        read_all(data)


def test_unread_data_is_skipped_and_padding_zero_blocks_accepted() -> None:
    data = build_tar([file("a", b"A" * 700), file("b", b"B")]) + bytes(10240)
    reader = TarReader(io.BytesIO(data))
    assert [m.path for m in reader] == ["a", "b"]
    assert reader.consumed == len(data)
