"""More instructions and flags: bind mounts, COPY --link, ADD archives and URLs, COPY --from an
image, parallel stages, and hostile inputs that must stay inside the rootfs."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.build.progress import Event
from lamina.errors import BuildError
from lamina.ops.archive import import_rootfs
from lamina.ops.build import build
from lamina.store import Store
from lamina.testing.capabilities import mount_points_under

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

EPOCH = 1700000000


@pytest.fixture
def store(tmp_path: Path, busybox_tar: Path) -> Store:
    s = Store(tmp_path / "root")
    import_rootfs(s, str(busybox_tar), "busybox", epoch=EPOCH)
    return s


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    return ctx


def read_file(store: Store, ref: str, path: str) -> bytes | None:
    image = store.get_image(ref)
    found = None
    for layer in image.layers():
        with layer.open_uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for m in tar:
                if m.name == path.lstrip("/"):
                    data = tar.extractfile(m)
                    found = data.read() if data else b""
    return found


def test_bind_mounts_from_context_and_stage(store: Store, ctx: Path) -> None:
    (ctx / "data").mkdir()
    (ctx / "data" / "in").write_text("ctx")
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS s\nRUN echo stage > /s\n"
        "FROM busybox\n"
        "RUN --mount=type=bind,source=data,target=/m cat /m/in > /out1\n"
        "RUN --mount=type=bind,from=s,source=/s,target=/t cat /t > /out2\n"
        "RUN --mount=type=bind,source=data,target=/m,rw echo x > /m/new && cat /m/in > /out3\n"
    )
    build(store, ctx, tags=["b"], epoch=EPOCH)
    assert read_file(store, "b", "out1") == b"ctx"
    assert read_file(store, "b", "out2") == b"stage\n"
    assert read_file(store, "b", "out3") == b"ctx"
    assert not (ctx / "data" / "new").exists()  # rw writes are thrown away
    assert read_file(store, "b", "m/in") is None


def test_copy_link_rebases_without_copying_again(store: Store, ctx: Path) -> None:
    (ctx / "f").write_text("linked")
    (ctx / "Dockerfile").write_text("FROM busybox\nARG X\nRUN echo $X > /x\nCOPY --link f /f\n")
    build(store, ctx, tags=["l"], build_args={"X": "1"}, epoch=EPOCH)
    events: list[Event] = []
    build(store, ctx, tags=["l2"], build_args={"X": "2"}, epoch=EPOCH, progress=events.append)
    cached = {e.name for e in events if e.kind == "cached"}
    assert "[3/3] COPY --link f /f" in cached
    assert read_file(store, "l2", "f") == b"linked"
    assert read_file(store, "l2", "x") == b"2\n"


def test_add_extracts_local_archives(store: Store, ctx: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("inner/file")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"inner"))
    (ctx / "a.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    (ctx / "Dockerfile").write_text("FROM busybox\nADD a.tar.gz /x/\n")
    build(store, ctx, tags=["a"], epoch=EPOCH)
    assert read_file(store, "a", "x/inner/file") == b"inner"


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()


def test_add_url_with_checksum_is_cached(
    store: Store, ctx: Path, http_root: tuple[str, Path]
) -> None:
    url, www = http_root
    (www / "payload.txt").write_text("remote")
    digest = "sha256:" + hashlib.sha256(b"remote").hexdigest()
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nADD --checksum={digest} {url}/payload.txt /p.txt\n"
    )
    build(store, ctx, tags=["u"], epoch=EPOCH)
    assert read_file(store, "u", "p.txt") == b"remote"
    events: list[Event] = []
    build(store, ctx, tags=["u"], epoch=EPOCH, progress=events.append)
    assert any(e.kind == "cached" for e in events)
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url}/payload.txt /p.txt\n"
    )
    with pytest.raises(BuildError) as info:
        build(store, ctx, epoch=EPOCH)
    assert info.value.line == 2


def test_add_url_without_a_server_says_why(store: Store, ctx: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        (ctx / "Dockerfile").write_text(
            f"FROM busybox\nADD http://user:s3cret@127.0.0.1:{port}/x?token=t0ken /x\n"
        )
        with pytest.raises(BuildError) as info:
            build(store, ctx, epoch=EPOCH)
    assert info.value.line == 2
    assert f"connection refused by 127.0.0.1:{port}" in info.value.message
    assert info.value.hint == "is the server running on that port?"
    assert "s3cret" not in str(info.value) and "t0ken" not in str(info.value)


def test_copy_from_an_image(store: Store, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY --from=busybox /bin/busybox /bb\n")
    build(store, ctx, tags=["img"], epoch=EPOCH)
    config = store.get_image("img").config()
    assert len(config.diff_ids) == 1
    assert config.config["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    data = read_file(store, "img", "bb")
    assert data is not None and data[:4] == b"\x7fELF"


def test_independent_stages_run_in_parallel(store: Store, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS a\nRUN sleep 2 && echo a > /a\n"
        "FROM busybox AS b\nRUN sleep 2 && echo b > /b\n"
        "FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
    )
    events: list[Event] = []
    build(store, ctx, epoch=EPOCH, progress=events.append)
    runs = [e for e in events if "RUN sleep" in e.name and e.kind in ("start", "done")]
    kinds = [e.kind for e in runs]
    assert kinds[:2] == ["start", "start"], kinds  # both began before either finished


def test_destination_symlink_out_of_rootfs_stays_inside(store: Store, ctx: Path) -> None:
    (ctx / "f").write_text("safe")
    marker = "lamina-build-test-escape"
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nRUN ln -s /etc /evil && ln -s ../../../../etc/{marker} /rel\n"
        f"COPY f /evil/{marker}\nCOPY f /rel\n"
    )
    build(store, ctx, tags=["esc"], epoch=EPOCH)
    assert not os.path.exists(f"/etc/{marker}")
    assert read_file(store, "esc", f"etc/{marker}") == b"safe"


def test_context_symlink_leaving_the_context_is_not_followed(store: Store, ctx: Path) -> None:
    (ctx / "link").symlink_to("/etc/hostname")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY link /x\n")
    with pytest.raises(BuildError) as info:
        build(store, ctx)
    assert info.value.line == 2 and "not found" in info.value.message


def test_fifo_in_context_is_refused(store: Store, ctx: Path) -> None:
    os.mkfifo(ctx / "pipe")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY . /c/\n")
    with pytest.raises(BuildError) as info:
        build(store, ctx)
    assert info.value.line == 2 and "named pipe" in info.value.message


def test_workdir_in_proc_cannot_reach_runtime_fds(store: Store, ctx: Path, tmp_path: Path) -> None:
    (ctx / "Dockerfile").write_text("FROM busybox\nWORKDIR /proc/self/fd/7\nRUN ls ../../..\n")
    with pytest.raises(BuildError) as info:
        build(store, ctx)
    assert info.value.line == 3 and "/proc" in info.value.message
    assert mount_points_under(tmp_path) == []


def test_run_heredocs_exclude_parents_and_chroot_isolation(store: Store, ctx: Path) -> None:
    (ctx / "sub" / "a").mkdir(parents=True)
    (ctx / "sub" / "b").mkdir()
    (ctx / "sub" / "a" / "keep.txt").write_text("k")
    (ctx / "sub" / "b" / "skip.log").write_text("s")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN <<EOT\necho one > /h1\necho two >> /h1\nEOT\n"
        'RUN <<EOT\n#!/bin/sh\necho "script $0" > /h2\nEOT\n'
        "COPY --exclude=**/*.log sub/ /ex/\n"
        "COPY --parents sub/a/keep.txt /par/\n"
    )
    build(store, ctx, tags=["h"], isolation="chroot", epoch=EPOCH)
    assert read_file(store, "h", "h1") == b"one\ntwo\n"
    assert read_file(store, "h", "h2") == b"script /dev/pipes/EOT\n"
    assert read_file(store, "h", "ex/a/keep.txt") == b"k"
    assert read_file(store, "h", "ex/b/skip.log") is None
    assert read_file(store, "h", "par/sub/a/keep.txt") == b"k"


@pytest.mark.needs_registry
def test_from_an_explicit_registry_pulls_and_keeps_the_name(
    store: Store, ctx: Path, tmp_path: Path
) -> None:
    from lamina import transports
    from lamina.testing.registry import run_registry

    with run_registry(tmp_path / "registry") as registry:
        host = registry.url.split("//", 1)[1]
        transports.copy(store.get_image("busybox"), transports.parse(f"docker://{host}/bb:1"))
        other = Store(tmp_path / "other")
        (ctx / "Dockerfile").write_text(f"FROM {host}/bb:1\nRUN echo pulled > /p\n")
        build(other, ctx, tags=["p"], epoch=EPOCH)
        assert read_file(other, "p", "p") == b"pulled\n"
        assert other.get_image(f"{host}/bb:1").id() == store.get_image("busybox").id()
