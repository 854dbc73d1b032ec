"""The builder end to end through ``ops.build.build`` on a real store (overlay), runc, busybox.

Covers the seed example (run its CMD on the exported rootfs), RUN layers and what must never
reach them (/etc/hosts, resolv.conf, mount points), metadata and history, multi-stage with
COPY --from, ONBUILD, secrets, cache mounts, network none, failures with their Dockerfile line,
and that nothing stays mounted afterwards.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.build.progress import Event
from lamina.build.secrets import SecretSource
from lamina.errors import BuildError, DockerfileError
from lamina.ops.archive import export, import_rootfs
from lamina.ops.build import build
from lamina.store import Store
from lamina.testing.capabilities import mount_points_under

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

EPOCH = 1700000000
Builder = Callable[..., tuple[Store, str]]


@pytest.fixture
def store(tmp_path: Path, busybox_tar: Path) -> Store:
    s = Store(tmp_path / "root")
    import_rootfs(s, str(busybox_tar), "busybox", epoch=EPOCH)
    return s


def make_context(base: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = base / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx


def layer_members(store: Store, ref: str, index: int) -> dict[str, tarfile.TarInfo]:
    """Members of the image's layer ``index`` (negative: from the top)."""
    image = store.get_image(ref)
    layer = image.layers()[index]
    with layer.open_uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
        return {m.name: m for m in tar}


def rootfs_of(store: Store, ref: str, dest: Path) -> Path:
    out = dest.with_suffix(".tar")
    export(store, ref, out)
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(out), "-C", str(dest)], check=True)
    return dest


def test_seed_example_builds_and_its_cmd_prints_the_file(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        'FROM busybox\nCOPY a.txt /a.txt\nCMD ["cat", "/a.txt"]\n',
        {"a.txt": "This is a simple file."},
    )
    events: list[Event] = []
    result = build(store, ctx, tags=["seed"], epoch=EPOCH, progress=events.append)
    image = store.get_image("seed")
    assert image.id() == result.image_id
    config = image.config()
    assert config.config["Cmd"] == ["cat", "/a.txt"]
    assert [h.created_by for h in config.history][-2:] == [
        "COPY a.txt /a.txt # buildkit",
        'CMD ["cat" "/a.txt"]',
    ]
    assert config.history[-1].empty_layer and not config.history[-2].empty_layer
    names = [e.name for e in events if e.kind == "start"]
    assert names == ["[1/2] FROM busybox", "[2/2] COPY a.txt /a.txt"]
    root = rootfs_of(store, "seed", tmp_path / "rootfs")
    out = subprocess.run(
        ["chroot", str(root), *config.config["Cmd"]], capture_output=True, check=True
    )
    assert out.stdout == b"This is a simple file."
    assert mount_points_under(tmp_path) == []


def test_run_layer_holds_only_what_run_changed(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        "FROM busybox\n"
        "RUN --mount=type=tmpfs,target=/scratch mkdir -p /opt/x && echo hi > /opt/x/f"
        " && cat /etc/hosts /etc/resolv.conf > /dev/null && touch /scratch/t\n",
    )
    build(store, ctx, tags=["r"], epoch=EPOCH)
    members = layer_members(store, "r", -1)
    assert sorted(members) == ["opt", "opt/x", "opt/x/f"]
    assert members["opt/x/f"].mtime == EPOCH  # clamped to SOURCE_DATE_EPOCH
    hist = store.get_image("r").config().history[-1]
    assert hist.created_by.startswith("RUN /bin/sh -c mkdir -p /opt/x")
    assert hist.created_by.endswith(" # buildkit")


def test_run_sees_env_args_user_workdir_and_shell(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        "FROM busybox\nARG A=1\nENV B=two\nWORKDIR /w\nUSER nobody\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        'RUN echo "$A $B $(pwd) $(id -u) $HOME" > /tmp/out\n',
    )
    build(store, ctx, tags=["e"], epoch=EPOCH, build_args={"A": "from-cli"})
    root = rootfs_of(store, "e", tmp_path / "rootfs")
    assert (root / "tmp/out").read_text() == "from-cli two /w 65534 /home\n"
    history = [h.created_by for h in store.get_image("e").config().history]
    assert "RUN |1 A=from-cli /bin/sh -ec echo" in history[-1]
    assert "WORKDIR /w" in history and "USER nobody" in history


def test_failing_run_reports_exit_code_line_and_output(store: Store, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\n\nRUN echo boom >&2; exit 3\n")
    with pytest.raises(BuildError) as info:
        build(store, ctx, tags=["bad"])
    err = info.value
    assert err.line == 3
    assert 'process "/bin/sh -c echo boom >&2; exit 3"' in err.message
    assert "exit code: 3" in err.message
    assert err.hint is not None and "boom" in err.hint
    assert "docker.io/library/bad:latest" not in {n for r in store.list_images() for n in r.names}
    assert mount_points_under(tmp_path) == []
    assert not list((store.root / "tmp").glob("step-*"))


@pytest.mark.parametrize(
    ("dockerfile", "line", "needle"),
    [
        ("FROM nosuchimage\n", 1, "nosuchimage: not found"),
        ("FROM busybox\nCOPY missing.txt /\n", 2, "file not found in build context"),
        ("FROM busybox\nCOPY ../x /\n", 2, "file not found"),
        ("FROM busybox\nRUN --mount=type=secret,id=s,required cat /run/secrets/s\n", 2, "secret s"),
        ("FROM busybox\nUSER nosuchuser\nRUN true\n", 3, "unable to find user nosuchuser"),
        ("FROM busybox\nSTOPSIGNAL SIGNOPE\n", 2, "Invalid signal"),
    ],
)
def test_bad_input_is_one_located_error(
    store: Store, tmp_path: Path, dockerfile: str, line: int, needle: str
) -> None:
    ctx = make_context(tmp_path, dockerfile)
    with pytest.raises(BuildError) as info:
        build(store, ctx)
    assert info.value.line == line
    assert needle in info.value.message
    assert mount_points_under(tmp_path) == []


def test_dockerfile_syntax_error_is_a_dockerfile_error(store: Store, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nCOPY onlyone\n")
    with pytest.raises(DockerfileError) as info:
        build(store, ctx)
    assert info.value.line == 2


def test_multi_stage_copy_from_and_parallel_stages(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        "FROM busybox AS a\nRUN echo A > /a\n"
        "FROM busybox AS b\nRUN echo B > /b && chown 1:1 /b\n"
        "FROM busybox AS unused\nRUN exit 1\n"
        "FROM a\nCOPY --from=b /b /from-b\nCOPY --from=0 /a /from-a\n",
    )
    events: list[Event] = []
    build(store, ctx, tags=["ms"], epoch=EPOCH, progress=events.append)
    root = rootfs_of(store, "ms", tmp_path / "rootfs")
    assert (root / "from-b").read_text() == "B\n" and (root / "a").read_text() == "A\n"
    assert (root / "from-a").read_text() == "A\n"
    assert (root / "from-b").stat().st_uid == 1  # --from keeps ownership
    assert not any("exit 1" in e.name for e in events)
    layers = store.get_image("ms").config().diff_ids
    assert len(layers) == 4  # busybox + RUN a + two COPYs


def test_target_stage_and_stage_base(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        "FROM busybox AS base\nENV X=1\nFROM base AS mid\nRUN echo $X > /x\nFROM mid\nRUN exit 9\n",
    )
    build(store, ctx, tags=["mid"], target="mid", epoch=EPOCH)
    root = rootfs_of(store, "mid", tmp_path / "rootfs")
    assert (root / "x").read_text() == "1\n"


def test_onbuild_triggers_run_in_the_child(store: Store, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nONBUILD RUN echo triggered > /t\n")
    build(store, ctx, tags=["parent"], epoch=EPOCH)
    assert store.get_image("parent").config().config["OnBuild"] == ["RUN echo triggered > /t"]
    child = make_context(tmp_path / "c", "FROM parent\nRUN cat /t > /copy\n")
    build(store, child, tags=["child"], epoch=EPOCH)
    config = store.get_image("child").config().config
    assert not config.get("OnBuild")
    root = rootfs_of(store, "child", tmp_path / "rootfs")
    assert (root / "copy").read_text() == "triggered\n"


def test_secret_is_readable_but_never_in_a_layer(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t")
    ctx = make_context(
        tmp_path,
        "FROM busybox\n"
        "RUN --mount=type=secret,id=tok cat /run/secrets/tok > /copied\n"
        "RUN --mount=type=secret,id=tok,env=TOK sh -c 'echo $TOK > /env'\n",
    )
    build(store, ctx, tags=["sec"], secrets=[SecretSource(id="tok", path=secret)], epoch=EPOCH)
    root = rootfs_of(store, "sec", tmp_path / "rootfs")
    assert (root / "copied").read_text() == "s3cr3t"
    assert (root / "env").read_text() == "s3cr3t\n"
    assert not (root / "run" / "secrets").exists()
    for i in (-1, -2):
        assert not any("secrets" in name for name in layer_members(store, "sec", i))


def test_cache_mount_persists_between_builds(store: Store, tmp_path: Path) -> None:
    df = "FROM busybox\nARG N\nRUN --mount=type=cache,target=/c echo $N >> /c/log && cat /c/log\n"
    ctx = make_context(tmp_path, df)
    logs: list[str] = []

    def collect(e: Event) -> None:
        if e.kind == "log":
            logs.append(e.text)

    build(store, ctx, build_args={"N": "1"}, progress=collect)
    build(store, ctx, build_args={"N": "2"}, progress=collect)
    assert logs == ["1", "1", "2"]


def test_network_none_isolates(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path, "FROM busybox\nRUN --network=none ip link | grep -c ': ' > /links\n"
    )
    build(store, ctx, tags=["net"])
    root = rootfs_of(store, "net", tmp_path / "rootfs")
    assert (root / "links").read_text().strip() == "1"  # only lo


def test_metadata_instructions_and_labels(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        "FROM busybox\nLABEL a=1 b=two\nEXPOSE 80 53/udp\nVOLUME /data\n"
        "STOPSIGNAL SIGTERM\nHEALTHCHECK --interval=5s CMD true\nMAINTAINER me\n"
        'ENTRYPOINT ["/bin/sh"]\nUSER 1:2\n',
    )
    build(store, ctx, tags=["meta"], labels={"c": "cli"}, epoch=EPOCH)
    image = store.get_image("meta").config()
    cfg = image.config
    assert cfg["Labels"] == {"a": "1", "b": "two", "c": "cli"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGTERM"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}
    assert cfg["Entrypoint"] == ["/bin/sh"] and cfg.get("Cmd") is None
    assert cfg["User"] == "1:2" and image.author == "me"
    assert image.created == "2023-11-14T22:13:20Z"
    assert all(h.empty_layer for h in image.history[-8:])


def test_copy_chown_chmod_and_heredoc(store: Store, tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        "FROM busybox\nCOPY --chown=nobody:daemon --chmod=751 f /dst/\n"
        "COPY <<EOF /greeting\nhello $NAME\nEOF\n",
        {"f": "x"},
    )
    build(store, ctx, tags=["cc"], epoch=EPOCH)
    members = layer_members(store, "cc", -2)
    assert (members["dst/f"].uid, members["dst/f"].gid, members["dst/f"].mode) == (65534, 1, 0o751)
    root = rootfs_of(store, "cc", tmp_path / "rootfs")
    assert (root / "greeting").read_text() == "hello \n"
    hist = [h.created_by for h in store.get_image("cc").config().history]
    assert "COPY --chown=nobody:daemon --chmod=751 f /dst/ # buildkit" in hist
    assert "COPY <<EOF /greeting # buildkit" in hist


def test_context_from_tar_stream(store: Store, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY x /x\n"), ("x", b"tarred")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    build(store, "-", tags=["fromtar"], stdin=buf, epoch=EPOCH)
    root = rootfs_of(store, "fromtar", tmp_path / "rootfs")
    assert (root / "x").read_text() == "tarred"
