"""ADD on real directories: archive auto-extraction, URLs from a real HTTP server (git
repositories: test_build_git.py)."""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from lamina._internal.compression import open_compressor
from lamina.build.add import RemoteSource, add_into, resolve_add_sources
from lamina.build.context import BuildContext
from lamina.errors import BuildError, UnsafeArchive

MTIME = 1_650_000_000


def _tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in entries:
            info, data = item if isinstance(item, tuple) else (item, b"")
            info.mtime = MTIME
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return raw.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def _compress(data: bytes, kind: str) -> bytes:
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    out = io.BytesIO()
    writer = open_compressor(out, kind)
    writer.write(data)
    writer.close()
    return out.getvalue()


SAMPLE = _tar(
    [
        _info("app", tarfile.DIRTYPE, mode=0o750, uid=33, gid=34),
        (_info("app/run.sh", mode=0o755, uid=33, gid=34), b"#!/bin/sh\n"),
        (_info("app/.wh.hidden", mode=0o644), b"literal whiteout name"),
        _info("app/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
        _info("app/hard", tarfile.LNKTYPE, linkname="app/run.sh"),
    ]
)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    root.mkdir()
    return root


def _add(ctx: Path, rootfs: Path, names: list[str], dest: str, **kw: object) -> None:
    with BuildContext.open(ctx) as context:
        add_into(rootfs, resolve_add_sources(context, names), dest, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["none", "gzip", "bzip2", "xz", "zstd"])
def test_local_archives_are_extracted_for_every_compression(
    tmp_path: Path, rootfs: Path, kind: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "bundle.data").write_bytes(_compress(SAMPLE, kind))  # the name says nothing
    _add(ctx, rootfs, ["bundle.data"], "/opt")
    app = rootfs / "opt/app"
    assert (app / "run.sh").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE(app.stat().st_mode) == 0o750
    assert (app / "run.sh").stat().st_mtime == MTIME
    assert ((app / "run.sh").stat().st_uid, (app / "run.sh").stat().st_gid) == (33, 34)
    assert (app / ".wh.hidden").read_text() == "literal whiteout name"
    assert os.readlink(app / "link") == "/etc/passwd"
    assert (app / "hard").stat().st_ino == (app / "run.sh").stat().st_ino
    assert app.stat().st_mtime == MTIME


def test_chown_overrides_archive_owners_and_unpack_false_copies(
    tmp_path: Path, rootfs: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.tar.gz").write_bytes(_compress(SAMPLE, "gzip"))
    _add(ctx, rootfs, ["a.tar.gz"], "/x/", chown=(7, 8))
    assert (rootfs / "x/app/run.sh").stat().st_uid == 7
    _add(ctx, rootfs, ["a.tar.gz"], "/raw/", unpack=False)
    assert (rootfs / "raw/a.tar.gz").read_bytes() == (ctx / "a.tar.gz").read_bytes()


def test_files_that_only_look_like_archives_are_copied(tmp_path: Path, rootfs: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "fake.tar.gz").write_text("not an archive")
    (ctx / "empty.tar").write_bytes(b"\0" * 1024)
    _add(ctx, rootfs, ["fake.tar.gz", "empty.tar"], "/d/")
    assert (rootfs / "d/fake.tar.gz").read_text() == "not an archive"
    assert (rootfs / "d/empty.tar").stat().st_size == 1024


def test_hostile_archives_stay_inside_the_destination(tmp_path: Path, rootfs: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "up.tar").write_bytes(_tar([(_info("../../escape"), b"x")]))
    with pytest.raises(UnsafeArchive):
        _add(ctx, rootfs, ["up.tar"], "/dst/")
    assert not (tmp_path / "escape").exists() and not (rootfs / "escape").exists()
    via_link = _tar(
        [
            _info("out", tarfile.SYMTYPE, linkname=str(outside)),
            (_info("out/pwned"), b"x"),
            _info("rel", tarfile.SYMTYPE, linkname="../../../../../../.." + str(outside)),
            (_info("rel/pwned2"), b"y"),
        ]
    )
    (ctx / "link.tar").write_bytes(via_link)
    _add(ctx, rootfs, ["link.tar"], "/dst/")
    assert list(outside.iterdir()) == []
    inside = rootfs / "dst" / str(outside).lstrip("/")
    assert (inside / "pwned").read_text() == "x" and (inside / "pwned2").read_text() == "y"


def test_devices_in_add_archives_are_refused(tmp_path: Path, rootfs: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "dev.tar").write_bytes(_tar([_info("null", tarfile.CHRTYPE, devmajor=1, devminor=3)]))
    with pytest.raises(BuildError, match="unsupported tar entry"):
        _add(ctx, rootfs, ["dev.tar"], "/d/")


class _Handler(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", formatdate(MTIME, usegmt=True))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.files = {
        "/files/tool.bin": b"binary payload",
        "/": b"index",
        "/pkg.tar": SAMPLE,
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_url_with_checksum(server: str, rootfs: Path, tmp_path: Path) -> None:
    good = "sha256:" + hashlib.sha256(b"binary payload").hexdigest()
    sources = resolve_add_sources(None, [f"{server}/files/tool.bin"])
    assert sources == [RemoteSource(f"{server}/files/tool.bin")]
    add_into(rootfs, sources, "/usr/local/bin/", checksum=good, tmp_dir=tmp_path)
    tool = rootfs / "usr/local/bin/tool.bin"
    assert tool.read_bytes() == b"binary payload"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o600
    assert tool.stat().st_mtime == MTIME  # from Last-Modified
    add_into(rootfs, sources, "/renamed", checksum=good, tmp_dir=tmp_path)
    assert (rootfs / "renamed").read_bytes() == b"binary payload"
    assert list(tmp_path.glob("lamina-add-*")) == []


def test_url_checksum_mismatch_writes_nothing(server: str, rootfs: Path, tmp_path: Path) -> None:
    bad = "sha256:" + "0" * 64
    with pytest.raises(BuildError, match="checksum mismatch"):
        add_into(rootfs, [RemoteSource(f"{server}/files/tool.bin")], "/d/", checksum=bad)
    assert not (rootfs / "d").exists()
    with pytest.raises(BuildError, match="invalid --checksum"):
        add_into(rootfs, [RemoteSource(f"{server}/files/tool.bin")], "/d/", checksum="md5:00")


def test_url_names_archives_and_errors(server: str, rootfs: Path) -> None:
    add_into(rootfs, [RemoteSource(server + "/")], "/idx/")
    assert (rootfs / "idx/__unnamed__").read_bytes() == b"index"
    add_into(rootfs, [RemoteSource(server + "/pkg.tar")], "/notx/")
    assert (rootfs / "notx/pkg.tar").read_bytes() == SAMPLE  # URLs are not extracted
    add_into(rootfs, [RemoteSource(server + "/pkg.tar")], "/x/", unpack=True)
    assert (rootfs / "x/app/run.sh").exists()
    with pytest.raises(BuildError, match="http status 404"):
        add_into(rootfs, [RemoteSource(server + "/missing")], "/d/")


def test_local_checksum_is_refused(tmp_path: Path, rootfs: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("f")
    with pytest.raises(BuildError, match="checksum can't be specified"):
        _add(ctx, rootfs, ["f"], "/d/", checksum="sha256:" + "0" * 64)
    with pytest.raises(BuildError, match="no source files were specified"):
        _add(ctx, rootfs, ["*.nothing"], "/d/")
