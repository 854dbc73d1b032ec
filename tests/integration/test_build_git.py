"""``ADD <git url>`` against real repositories served on 127.0.0.1 by ``git http-backend``
(smart HTTP) and as static files (dumb HTTP), through :func:`add_into` and whole builds."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.build.add import add_into, resolve_add_sources
from lamina.build.gitref import parse_git_url
from lamina.build.progress import Event
from lamina.errors import BuildError
from lamina.ops.archive import import_rootfs
from lamina.ops.build import build
from lamina.store import Store
from lamina.testing import gitserver
from lamina.testing.cli import run_cli
from lamina.testing.gitserver import Repo, git, serve_git

pytest_plugins = ["conftest_runtime"]
pytestmark = pytest.mark.skipif(not gitserver.available(), reason="git is not installed")

EPOCH = 1700000000
T0 = 1_600_000_000


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Repo, Path]:
    """A repository with files, an executable, symlinks and an annotated tag ``v1``,
    published to ``srv/app.git``; branch ``dev`` has one more commit."""
    r = Repo(tmp_path / "work", date=T0)
    r.write("README", "hello\n")
    r.write("bin/tool.sh", "#!/bin/sh\necho tool\n", mode=0o755)
    r.write("docs/guide.txt", "guide\n", mode=0o600)
    r.symlink("docs/readme-link", "../README")
    r.symlink("docs/host-passwd", "../../../../../../etc/passwd")
    r.symlink("escape", "../../../../../../../etc")
    r.commit("first")
    git("tag", "-a", "v1", "-m", "v1", cwd=r.path, env={"GIT_COMMITTER_DATE": f"@{T0} +0000"})
    git("checkout", "-q", "-b", "dev", cwd=r.path)
    r.write("dev.txt", "dev\n")
    r.commit("dev work")
    git("checkout", "-q", "main", cwd=r.path)
    r.publish(tmp_path / "srv" / "app.git")
    return r, tmp_path / "srv"


@pytest.fixture(params=["smart", "dumb"])
def server(request: pytest.FixtureRequest, repo: tuple[Repo, Path]) -> Iterator[str]:
    with serve_git(repo[1], smart=request.param == "smart") as url:
        yield url


def _add(tmp_path: Path, url: str, **kw: object) -> Path:
    root = tmp_path / f"rootfs-{len(list(tmp_path.glob('rootfs-*')))}"
    root.mkdir()
    sources = resolve_add_sources(None, [url])
    add_into(root, sources, "/src", tmp_dir=tmp_path, **kw)  # type: ignore[arg-type]
    return root / "src"


def test_branch_tag_commit_and_subdir(tmp_path: Path, repo: tuple[Repo, Path], server: str) -> None:
    r, _ = repo
    main = r.head()
    for ref in ("", "#main", "#v1", f"#{main}", "?tag=v1", "?branch=main"):
        dst = _add(tmp_path, f"{server}/app.git{ref}")
        assert sorted(os.listdir(dst)) == ["README", "bin", "docs", "escape"], ref
        assert (dst / "README").read_text() == "hello\n"
    dev = _add(tmp_path, f"{server}/app.git#dev")
    assert (dev / "dev.txt").read_text() == "dev\n"
    sub = _add(tmp_path, f"{server}/app.git#main:docs")
    assert sorted(os.listdir(sub)) == ["guide.txt", "host-passwd", "readme-link"]
    query = _add(tmp_path, f"{server}/app.git?ref=dev&subdir=docs")
    assert sorted(os.listdir(query)) == ["guide.txt", "host-passwd", "readme-link"]


def test_tree_metadata_is_deterministic(tmp_path: Path, repo: tuple[Repo, Path]) -> None:
    with serve_git(repo[1]) as url:
        dst = _add(tmp_path, f"{url}/app.git#main")
    commit_time = T0 + 1
    for path in [*dst.rglob("*")]:
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert st.st_mtime == commit_time, path
    assert stat.S_IMODE(os.stat(dst / "bin/tool.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dst / "docs/guide.txt").st_mode) == 0o644  # git keeps only +x
    assert stat.S_IMODE(os.stat(dst / "bin").st_mode) == 0o755
    assert not (dst / ".git").exists()


def test_symlinks_stay_links_inside_the_tree(tmp_path: Path, repo: tuple[Repo, Path]) -> None:
    with serve_git(repo[1]) as url:
        dst = _add(tmp_path, f"{url}/app.git")
        assert os.readlink(dst / "docs/host-passwd") == "../../../../../../etc/passwd"
        assert os.readlink(dst / "escape") == "../../../../../../../etc"
        assert os.readlink(dst / "docs/readme-link") == "../README"
        # a subdir that is a symlink out of the repository resolves inside the checkout
        with pytest.raises(BuildError, match="subdirectory escape not found"):
            _add(tmp_path, f"{url}/app.git#main:escape")
    assert not any(p.name == "passwd" for p in tmp_path.rglob("passwd") if p.is_file())


def test_keep_git_dir_without_credentials(tmp_path: Path, repo: tuple[Repo, Path]) -> None:
    r, _ = repo
    with serve_git(repo[1]) as url:
        secret_url = url.replace("http://", "http://alice:hunter2@") + "/app.git#dev"
        dst = _add(tmp_path, secret_url, keep_git_dir=True)
        by_query = _add(tmp_path, f"{url}/app.git?keep-git-dir=true")
    head = git("--git-dir", str(dst / ".git"), "rev-parse", "HEAD").strip()
    assert head == git("rev-parse", "dev", cwd=r.path).strip()
    assert git("--git-dir", str(dst / ".git"), "config", "remote.origin.url").strip() == (
        url + "/app.git"
    )
    for path in (dst / ".git").rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path
    assert (by_query / ".git").is_dir()


def test_checksum_is_the_commit(tmp_path: Path, repo: tuple[Repo, Path]) -> None:
    r, _ = repo
    main = r.head()
    with serve_git(repo[1]) as url:
        _add(tmp_path, f"{url}/app.git#main", checksum=main[:12])
        _add(tmp_path, f"{url}/app.git?checksum={main}")
        with pytest.raises(BuildError, match=f"commit {main} does not match checksum 0000"):
            _add(tmp_path, f"{url}/app.git#main", checksum="0000")
        with pytest.raises(BuildError, match="invalid checksum") as exc:
            _add(tmp_path, f"{url}/app.git", checksum="sha256:" + "0" * 64)
    assert exc.value.hint and "commit id" in exc.value.hint


def test_submodules_are_fetched_recursively(tmp_path: Path, repo: tuple[Repo, Path]) -> None:
    srv = repo[1]
    with serve_git(srv) as url:
        outer = Repo(tmp_path / "outer", date=T0)
        outer.write("top.txt", "top\n")
        git("-c", "protocol.allow=always", "submodule", "add", "-q", f"{url}/app.git", "lib",
            cwd=outer.path)  # fmt: skip
        outer.commit("with submodule")
        outer.publish(srv / "outer.git")
        dst = _add(tmp_path, f"{url}/outer.git")
        assert (dst / "lib" / "README").read_text() == "hello\n"
        assert not (dst / "lib" / ".git").exists()
        off = _add(tmp_path, f"{url}/outer.git?submodules=false")
        assert os.listdir(off / "lib") == []


def test_file_submodules_and_hostile_urls_are_refused(
    tmp_path: Path, repo: tuple[Repo, Path]
) -> None:
    srv = repo[1]
    evil = Repo(tmp_path / "evil", date=T0)
    evil.write("x", "x")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q",
        f"file://{srv}/app.git", "host", cwd=evil.path)  # fmt: skip
    evil.commit("file submodule")
    evil.publish(srv / "evil.git")
    with serve_git(srv) as url:
        with pytest.raises(BuildError, match="fetching submodules of git repository") as e:
            _add(tmp_path, f"{url}/evil.git")
        assert "\n" not in e.value.message
        for bad in (f"{url}/app.git#--upload-pack=touch /tmp/pwned", f"{url}/app.git#main:../x"):
            with pytest.raises(BuildError, match="invalid git"):
                resolve_add_sources(None, [bad])
    for bad in ("ext::sh -c touch% /tmp/pwned", "-oProxyCommand=x@h:r", "file:///etc/x.git"):
        with pytest.raises(BuildError, match="not a git url"):
            parse_git_url(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_and_missing_ref_are_one_line(tmp_path: Path, repo: tuple[Repo, Path]) -> None:
    port = _closed_port()
    for url in (f"http://bob:hunter2@127.0.0.1:{port}/x.git", f"ssh://git@127.0.0.1:{port}/x.git"):
        with pytest.raises(BuildError, match="reading git repository") as e:
            resolve_add_sources(None, [url], timeout=30)
        assert "\n" not in e.value.message and "hunter2" not in e.value.message
    with serve_git(repo[1]) as url, pytest.raises(BuildError, match="ref nope not found"):
        resolve_add_sources(None, [f"{url}/app.git#nope"])


# -- whole builds --------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path, busybox_tar: Path) -> Store:
    s = Store(tmp_path / "root")
    import_rootfs(s, str(busybox_tar), "busybox", epoch=EPOCH)
    return s


def _build(store: Store, ctx: Path, tag: str) -> list[Event]:
    events: list[Event] = []
    build(store, ctx, tags=[tag], epoch=EPOCH, progress=events.append)
    return events


def _cached(events: list[Event]) -> bool:
    add = {e.vertex for e in events if e.kind == "start" and e.name.startswith("[2/2] ADD")}
    return any(e.kind == "cached" and e.vertex in add for e in events)


def _file(store: Store, ref: str, path: str) -> bytes | None:
    import tarfile

    found = None
    for layer in store.get_image(ref).layers():
        with layer.open_uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for m in tar:
                if m.name == path:
                    data = tar.extractfile(m)
                    found = data.read() if data else b""
    return found


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_build_cache_follows_the_commit(
    tmp_path: Path, store: Store, repo: tuple[Repo, Path]
) -> None:
    r, srv = repo
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with serve_git(srv) as url:
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {url}/app.git#main /src\n")
        assert not _cached(_build(store, ctx, "a"))
        assert _file(store, "a", "src/README") == b"hello\n"
        git("commit", "-q", "--allow-empty", "-m", "dev only", cwd=r.path)
        git("push", "-q", "--force", str(srv / "app.git"), "main:dev", cwd=r.path)
        assert _cached(_build(store, ctx, "b"))  # another branch moved: same commit, a hit
        git("reset", "-q", "--hard", "HEAD~1", cwd=r.path)
        r.write("README", "changed\n")
        r.commit("change")
        r.publish(srv / "app.git")
        assert not _cached(_build(store, ctx, "c"))  # main moved: a miss
        assert _file(store, "c", "src/README") == b"changed\n"
        assert _cached(_build(store, ctx, "d"))
    assert (
        store.get_image("c").manifest().config.digest
        == store.get_image("d").manifest().config.digest
    )


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_cli_missing_ref_is_one_line(tmp_path: Path, store: Store, repo: tuple[Repo, Path]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with serve_git(repo[1]) as url:
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {url}/app.git#nope /src\n")
        res = run_cli(store.root, "build", "--progress", "plain", str(ctx), check=False)
    assert res.code != 0
    errors = [line for line in res.err.splitlines() if line.startswith("lamina: error")]
    assert len(errors) == 1, res.err
    assert "Dockerfile:2: git repository" in errors[0] and "ref nope not found" in errors[0]
    assert "Traceback" not in res.err


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_git_url_as_the_build_context(
    tmp_path: Path, store: Store, repo: tuple[Repo, Path]
) -> None:
    """`docker build https://host/repo.git#REF:DIR`: the checkout's DIR is the context."""
    r, srv = repo
    r.write("site/Dockerfile", "FROM busybox\nCOPY . /site/\n")
    r.write("site/index.html", "<p>hi</p>\n")
    r.commit("site")
    r.publish(srv / "app.git")
    with serve_git(srv) as url:
        build(store, f"{url}/app.git#main:site", tags=["site"], epoch=EPOCH)
        assert _file(store, "site", "site/index.html") == b"<p>hi</p>\n"
        assert _file(store, "site", "site/README") is None  # only DIR is the context
        res = run_cli(store.root, "build", "-q", f"{url}/app.git#nope", check=False)
        assert res.code != 0 and "ref nope not found" in res.err and "Traceback" not in res.err
    res = run_cli(store.root, "build", "-q", "https://127.0.0.1:9/ctx.tar.gz", check=False)
    assert res.code != 0 and "only git repositories are fetched" in res.err
    assert not list((store.root / "tmp").glob("git-context-*"))  # checkouts are removed
