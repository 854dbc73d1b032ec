"""Build cache behaviour: unchanged, edited, touched, renamed, mode changes, --no-cache, gc;
and reproducible digests across two stores.

A step is a hit exactly when the progress stream reports it ``cached``; the tests compare the
set of cached vertices by their names.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.build.progress import Event
from lamina.ops.archive import import_rootfs
from lamina.ops.build import build
from lamina.store import Store

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

EPOCH = 1700000000
DOCKERFILE = (
    "FROM busybox\n"
    "COPY a.txt /a.txt\n"
    "RUN cat /a.txt > /a.copy\n"
    "COPY src/ /src/\n"
    "RUN ls /src > /listing\n"
)


def new_store(path: Path, busybox_tar: Path) -> Store:
    store = Store(path)
    import_rootfs(store, str(busybox_tar), "busybox", epoch=EPOCH)
    return store


@pytest.fixture
def store(tmp_path: Path, busybox_tar: Path) -> Store:
    return new_store(tmp_path / "root", busybox_tar)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "a.txt").write_text("a\n")
    (ctx / "src" / "one").write_text("1\n")
    (ctx / "src" / "sub" / "two").write_text("2\n")
    return ctx


def run(store: Store, ctx: Path, **kw: object) -> tuple[set[str], set[str], str]:
    """Build; return (cached step names, executed step names, image id)."""
    events: list[Event] = []
    result = build(store, ctx, epoch=EPOCH, progress=events.append, **kw)  # type: ignore[arg-type]
    cached = {e.name for e in events if e.kind == "cached"}
    done = {e.name for e in events if e.kind == "done" and "FROM" not in e.name}
    return cached, done, str(result.image_id)


STEPS = {
    "[2/5] COPY a.txt /a.txt",
    "[3/5] RUN cat /a.txt > /a.copy",
    "[4/5] COPY src/ /src/",
    "[5/5] RUN ls /src > /listing",
}


def test_unchanged_rebuild_is_all_cached_and_identical(store: Store, ctx: Path) -> None:
    cached, done, first = run(store, ctx)
    assert cached == set() and done == STEPS
    cached, done, second = run(store, ctx)
    assert cached == STEPS and done == set()
    assert first == second


def test_editing_one_file_rebuilds_exactly_its_dependents(store: Store, ctx: Path) -> None:
    run(store, ctx)
    (ctx / "src" / "sub" / "two").write_text("changed\n")
    cached, done, _ = run(store, ctx)
    assert cached == {"[2/5] COPY a.txt /a.txt", "[3/5] RUN cat /a.txt > /a.copy"}
    assert done == {"[4/5] COPY src/ /src/", "[5/5] RUN ls /src > /listing"}


def test_touching_without_change_is_a_hit(store: Store, ctx: Path) -> None:
    run(store, ctx)
    for name in ("a.txt", "src/one", "src/sub/two"):
        os.utime(ctx / name, (1, 1))
    cached, done, _ = run(store, ctx)
    assert cached == STEPS and done == set()


def test_renaming_a_file_is_a_miss(store: Store, ctx: Path) -> None:
    run(store, ctx)
    (ctx / "src" / "one").rename(ctx / "src" / "uno")
    cached, done, _ = run(store, ctx)
    assert "[4/5] COPY src/ /src/" in done and "[5/5] RUN ls /src > /listing" in done
    assert "[2/5] COPY a.txt /a.txt" in cached


def test_mode_change_is_a_miss(store: Store, ctx: Path) -> None:
    run(store, ctx)
    os.chmod(ctx / "a.txt", 0o600)
    cached, done, _ = run(store, ctx)
    assert "[2/5] COPY a.txt /a.txt" in done and cached == set()


def test_env_and_build_arg_changes_invalidate_run(store: Store, tmp_path: Path) -> None:
    ctx = tmp_path / "envctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nARG V\nRUN echo $V > /v\n")
    run(store, ctx, build_args={"V": "1"})
    cached, done, _ = run(store, ctx, build_args={"V": "1"})
    assert cached == {"[2/2] RUN echo $V > /v"}
    cached, done, _ = run(store, ctx, build_args={"V": "2"})
    assert done == {"[2/2] RUN echo $V > /v"}


def test_no_cache_runs_everything(store: Store, ctx: Path) -> None:
    run(store, ctx)
    cached, done, _ = run(store, ctx, no_cache=True)
    assert cached == set() and done == STEPS


def test_gc_collected_layers_are_rebuilt_or_restored(store: Store, ctx: Path) -> None:
    _c, _d, first = run(store, ctx, tags=["keep"])
    store.remove_image("keep")
    store.gc()
    cached, done, second = run(store, ctx, tags=["keep"])
    assert first == second
    assert cached | done == STEPS
    assert store.check() == []


def test_reproducible_digests_across_two_stores(
    tmp_path: Path, busybox_tar: Path, ctx: Path
) -> None:
    digests = []
    for name in ("one", "two"):
        store = new_store(tmp_path / name, busybox_tar)
        result = build(store, ctx, tags=["r"], epoch=EPOCH)
        digests.append((result.digest, result.image_id))
        os.utime(ctx / "a.txt")  # a later mtime must not matter either
    assert digests[0] == digests[1]
