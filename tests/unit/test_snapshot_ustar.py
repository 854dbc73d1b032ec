"""The fast tar header writes exactly what tarfile writes, and layer digests do not move."""

from __future__ import annotations

import io
import os
import random
import string
import tarfile
from pathlib import Path

import pytest

from lamina.snapshot import ustar, write_layer

TYPES = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE)


def _random_info(rnd: random.Random) -> tarfile.TarInfo:
    alphabet = string.ascii_letters + "/._-" + ("é" if rnd.random() < 0.05 else "")
    kind = rnd.choice(TYPES)
    info = tarfile.TarInfo(
        "".join(rnd.choice(alphabet) for _ in range(rnd.choice((1, 99, 100, 101))))
    )
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "".join(rnd.choice(alphabet) for _ in range(rnd.choice((1, 100, 101))))
    info.mode = rnd.choice((0o644, 0o4755, 0o7777, 0o100644))
    info.uid = rnd.choice((0, 1000, 8**7 - 1, 8**7))
    info.gid = rnd.choice((0, 65534, 8**7))
    info.size = rnd.choice((0, 1024, 8**11 - 1, 8**11)) if kind == tarfile.REGTYPE else 0
    info.mtime = rnd.choice((0, 1_700_000_000, -5, 8**11 - 1, 8**11))
    info.uname = info.gname = ""
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info


def test_fast_headers_equal_tarfile_headers() -> None:
    assert ustar.ENABLED  # this interpreter's tarfile agrees with the fast path
    rnd = random.Random(4)
    fast = 0
    for _ in range(20_000):
        info = _random_info(rnd)
        got = ustar.ustar_header(info)
        if got is None:
            continue
        fast += 1
        assert got == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), info.name
    assert fast > 1000  # the random cases did reach the fast path


def test_entries_that_need_pax_are_left_to_tarfile() -> None:
    info = tarfile.TarInfo("x" * 101)
    assert ustar.ustar_header(info) is None  # long name
    info = tarfile.TarInfo("café")
    assert ustar.ustar_header(info) is None  # not ASCII
    info = tarfile.TarInfo("dev/null")
    info.type = tarfile.CHRTYPE
    assert ustar.ustar_header(info) is None  # devices keep tarfile's device fields
    info = tarfile.TarInfo("a")
    info.uid = 8**7
    assert ustar.ustar_header(info) is None  # needs a pax uid record


def _tree(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.txt").write_bytes(b"x" * 1500)
    (root / "d" / ("long" * 30)).write_bytes(b"long name")
    os.symlink("e/f.txt", root / "d" / "link")
    os.link(root / "d" / "e" / "f.txt", root / "d" / "hard")
    (root / "d" / "é").write_text("utf-8 name")


def test_layer_digest_is_the_same_with_and_without_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    fast = write_layer(tmp_path, io.BytesIO(), kind="dir", epoch=None)
    monkeypatch.setattr(ustar, "ENABLED", False)
    slow_out = io.BytesIO()
    slow = write_layer(tmp_path, slow_out, kind="dir", epoch=None)
    assert fast == slow
    with tarfile.open(fileobj=io.BytesIO(slow_out.getvalue())) as tar:
        names = tar.getnames()
    assert "d/hard" in names and "d/é" in names
