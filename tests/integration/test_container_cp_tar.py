"""``cp`` tar streams on a plain directory standing in for a container rootfs: no link is
followed out of it (also when the tree changes under the walk), deep trees, bounded memory,
and the extractor's ``plain`` mode (no whiteouts, no dir/non-dir replacement)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from lamina.errors import ContainerError, NotFound, UnsafeArchive
from lamina.ops.container_cp import copy_in_tar, copy_out_tar
from lamina.snapshot import apply_layer

pytestmark = [pytest.mark.needs_root]


def tar_of(rootfs: Path, src: str) -> bytes:
    out = io.BytesIO()
    copy_out_tar(rootfs, src, out)
    return out.getvalue()


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_links_out_of_the_rootfs_are_archived_as_links(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_bytes(b"HOST-SECRET")
    rootfs = tmp_path / "rootfs"
    (rootfs / "d").mkdir(parents=True)
    (rootfs / "d" / "file").write_bytes(b"inside")
    os.symlink(str(host), rootfs / "d" / "abs")
    os.symlink("../../../../../../" + str(host), rootfs / "d" / "rel")
    os.symlink(str(host), rootfs / "top")
    data = tar_of(rootfs, "/d")
    assert names(data) == ["d", "d/abs", "d/file", "d/rel"]
    assert b"HOST-SECRET" not in data
    # through a link in the middle: resolved inside the rootfs (missing there -> NotFound)
    with pytest.raises(NotFound):
        tar_of(rootfs, "/top/secret")
    with pytest.raises(NotFound):
        tar_of(rootfs, "/top/.")
    assert names(tar_of(rootfs, "/top")) == ["top"]


def test_a_directory_swapped_for_a_link_during_the_walk_is_refused(tmp_path: Path) -> None:
    """The CVE-2018-15664 race: d/b turns into a link to the host right after its lstat."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_bytes(b"HOST-SECRET")
    rootfs = tmp_path / "rootfs"
    (rootfs / "d" / "b").mkdir(parents=True)
    (rootfs / "d" / "b" / "inner").write_bytes(b"x")

    class Swapper(io.BytesIO):
        def write(self, data: object) -> int:
            if bytes(data[:4]) == b"d/b/":  # type: ignore[index]
                os.rename(rootfs / "d" / "b", rootfs / "d" / "b.old")
                os.symlink(str(host), rootfs / "d" / "b")
            return super().write(data)  # type: ignore[arg-type]

    out = Swapper()
    with pytest.raises(ContainerError, match="d/b changed into a non-directory during the copy"):
        copy_out_tar(rootfs, "/d", out)
    assert b"HOST-SECRET" not in out.getvalue()


def test_deep_tree_long_names_and_gnu_tar(tmp_path: Path) -> None:
    """Deeper than PATH_MAX (walked by fds), names past 100 bytes (PAX): GNU tar reads it."""
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    fd = os.open(rootfs, os.O_RDONLY)
    comp = "c" * 200
    for _ in range(25):  # 25 * 201 bytes > PATH_MAX (4096)
        os.mkdir(comp, dir_fd=fd)
        sub = os.open(comp, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
    os.write(leaf, b"deep")
    os.close(leaf)
    os.close(fd)
    data = tar_of(rootfs, "/.")
    (tmp_path / "t.tar").write_bytes(data)
    listing = subprocess.run(
        ["tar", "-tf", str(tmp_path / "t.tar")], capture_output=True, check=True
    ).stdout.decode()
    assert listing.splitlines()[-1] == "/".join([comp] * 25 + ["leaf"])
    dest = tmp_path / "dest"
    (dest / "in").mkdir(parents=True)
    assert copy_in_tar(io.BytesIO(data), dest, "/in") == 26
    assert tar_of(dest, "/in/.") == data


class Zeros(io.RawIOBase):
    """``size`` zero bytes of a tar member ``big`` followed by the end marker, made lazily."""

    def __init__(self, size: int) -> None:
        info = tarfile.TarInfo("big")
        info.size = size
        self._parts = [info.tobuf(tarfile.PAX_FORMAT)]
        self._left = size + (-size % 512) + 1024

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._parts:
            head = self._parts.pop()
            buf[: len(head)] = head
            return len(head)
        n = min(len(buf), self._left)
        buf[:n] = bytes(n)
        self._left -= n
        return n


def test_streams_with_bounded_memory(tmp_path: Path) -> None:
    """64 MiB in and out: Python allocations stay a few MiB (1 MiB buffers), never the file."""
    size = 64 << 20
    rootfs = tmp_path / "rootfs"
    (rootfs / "dst").mkdir(parents=True)
    tracemalloc.start()
    try:
        assert copy_in_tar(io.BufferedReader(Zeros(size)), rootfs, "/dst") == 1
        _, peak_in = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        class Count(io.RawIOBase):
            total = 0

            def writable(self) -> bool:
                return True

            def write(self, data: object) -> int:
                self.total += len(data)  # type: ignore[arg-type]
                return len(data)  # type: ignore[arg-type]

        sink = Count()
        assert copy_out_tar(rootfs, "/dst/big", sink) == sink.total  # type: ignore[arg-type]
        _, peak_out = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (rootfs / "dst" / "big").stat().st_size == size
    assert sink.total == 512 + size + 1024
    assert peak_in < 8 << 20 and peak_out < 8 << 20, (peak_in, peak_out)


def _tar(*members: tuple[str, bytes | None]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def test_plain_mode_deletes_nothing_and_replaces_no_directory(tmp_path: Path) -> None:
    target = tmp_path / "t"
    (target / "dir" / "child").mkdir(parents=True)
    (target / "file").write_text("keep")
    (target / "victim").write_text("keep")
    os.symlink("/", target / "link")
    apply_layer(_tar((".wh.victim", b""), ("dir/.wh..wh..opq", b"")), target, mode="plain")
    assert (target / "victim").read_text() == "keep" and (target / "dir" / "child").is_dir()
    assert (target / ".wh.victim").is_file() and (target / "dir" / ".wh..wh..opq").is_file()
    refused = {
        "file over dir": (_tar(("dir", b"x")), "cannot overwrite directory 'dir'"),
        "dir over file": (_tar(("file", None)), "cannot overwrite non-directory 'file'"),
        "beneath a link": (_tar(("link/etc/x", b"x")), "'link' is not a directory"),
    }
    for what, (stream, message) in refused.items():
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(UnsafeArchive, match=message) as info:
                apply_layer(stream, fd, mode="plain", what="cp - c:/t")
            assert str(info.value).startswith("cp - c:/t: "), what
        finally:
            os.close(fd)
    assert (target / "file").read_text() == "keep" and (target / "dir" / "child").is_dir()
    assert os.readlink(target / "link") == "/" and not os.path.exists("/etc/x")
