"""The container sub-store on real dirs: overlay2 layout, names, gc/check, removal, and ``cp``
that never follows a symlink out of the rootfs (both directions)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lamina.errors import ContainerError, NotFound
from lamina.ops import container as ops
from lamina.ops.container_cp import copy_in, copy_out
from lamina.ops.container_fs import diff
from lamina.ops.container_state import ensure_mounted
from lamina.store import Store
from lamina.store.containers import INIT_ENTRIES
from lamina.testing.capabilities import mount_points_under
from lamina.testing.layers import directory, file


@pytest.fixture
def store(tmp_path: Path, make_image: object) -> Store:
    """An overlay store holding a two-layer image named ``base``."""
    s = Store(tmp_path / "root", driver="overlay")
    image = make_image(  # type: ignore[operator]
        [
            [directory("bin"), file("bin/sh", b"#!", mode=0o755), directory("etc")],
            [file("etc/os-release", b"base\n")],
        ]
    )
    s.put_image(image, ["base"])
    return s


pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def test_layout_matches_docker_overlay2(store: Store) -> None:
    cid = ops.create(store, ops.RunOptions(image="base", command=("/bin/sh",), name="x"))
    image = store.get_image("base")
    top = store.layers.layer_dirs(image.record.layers[-1])
    dirs = store.containers.dirs(cid)
    assert dirs.lower == [store.layout.layer_dir(f"{cid}-init") / "diff", top.upper, *top.lower]
    for name in (cid, f"{cid}-init"):
        d = store.layout.layer_dir(name)
        short = (d / "link").read_text()
        assert len(short) == 26
        assert os.readlink(store.layout.links / short) == f"../{name}/diff"
        assert sorted(os.listdir(d))[:3] == ["diff", "link", "lower"]
    lower = (store.layout.layer_dir(cid) / "lower").read_text().split(":")
    assert len(lower) == 3 and all(x.startswith("l/") for x in lower)
    init = dirs.init
    for rel, kind in INIT_ENTRIES:
        p = init / rel
        assert p.is_dir() if kind == "dir" else (p.is_file() or p.is_symlink())
    assert os.readlink(init / "etc/mtab") == "/proc/mounts"
    assert store.containers.resolve("x") == cid == store.containers.resolve(cid[:8])


def test_gc_and_check_keep_container_layers(store: Store) -> None:
    cid = ops.create(store, ops.RunOptions(image="base", command=("/bin/sh",)))
    store.remove_image("base", force=True)
    store.gc()
    assert store.layout.layer_dir(cid).is_dir()
    assert store.layout.layer_dir(f"{cid}-init").is_dir()
    assert store.containers.dirs(cid).lower[-1].is_dir()  # the image layers are held too
    assert not [p for p in store.check() if cid in p]
    ops.remove(store, cid)
    assert not store.layout.layer_dir(cid).exists()
    assert not store.layout.layer_dir(f"{cid}-init").exists()
    assert [
        p for p in os.listdir(store.layout.links) if not (store.layout.links / p).exists()
    ] == []
    with pytest.raises(NotFound):
        store.containers.resolve(cid)


def test_name_race_has_one_winner(store: Store) -> None:
    results: list[str] = []
    errors: list[Exception] = []

    def attempt() -> None:
        try:
            results.append(ops.create(store, ops.RunOptions(image="base", command=("sh",),
                                                            name="dup")))  # fmt: skip
        except ContainerError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and len(errors) == 5
    assert "already in use" in str(errors[0])
    assert store.containers.ids() == results


def test_cp_never_leaves_the_rootfs(store: Store, tmp_path: Path) -> None:
    """A container symlink to a host path is resolved inside the rootfs, both ways."""
    host = tmp_path / "host-secret"
    host.mkdir()
    (host / "secret").write_text("host data")
    cid = ops.create(store, ops.RunOptions(image="base", command=("/bin/sh",)))
    with store.containers.locked(cid):
        rootfs = ensure_mounted(store, cid)
    try:
        os.symlink(str(host), rootfs / "escape")
        os.symlink(str(host / "secret"), rootfs / "leak")
        (rootfs / str(host).lstrip("/")).mkdir(parents=True)
        (rootfs / str(host).lstrip("/") / "secret").write_text("container data")
        out = tmp_path / "out"
        out.mkdir()
        copy_out(rootfs, "/escape/secret", out / "a")
        assert (out / "a").read_text() == "container data"
        copy_out(rootfs, "/leak", out / "b")  # the link itself, not its target
        assert os.readlink(out / "b") == str(host / "secret")
        src = tmp_path / "payload"
        src.write_text("written")
        copy_in(src, rootfs, "/escape/payload")
        assert not (host / "payload").exists()
        assert (rootfs / str(host).lstrip("/") / "payload").read_text() == "written"
        copy_in(src, rootfs, "/leak")  # replaces the link inside, never writes the target
        assert (host / "secret").read_text() == "host data"
        assert (rootfs / "leak").read_text() == "written"
        changes = [str(c) for c in diff(store, cid)]
        assert "A /escape" in changes and "A /leak" in changes
    finally:
        store.backend.unmount(store.containers.dirs(cid).merged)
        ops.remove(store, cid)
    assert mount_points_under(tmp_path) == []


def test_prune_skips_a_container_started_meanwhile(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container that starts between prune's listing and its ``rm`` is left alone; any
    other removal failure is reported, not swallowed."""
    from lamina.ops import system

    old = ops.create(store, ops.RunOptions(image="base", command=("/bin/sh",), name="old"))
    racer = ops.create(store, ops.RunOptions(image="base", command=("/bin/sh",), name="racer"))
    real_remove = ops.remove

    def remove(s: Store, ref: str, *, force: bool = False) -> str:
        if ref == racer:  # as if its `run` started it just now: rm (no force) refuses
            raise ContainerError(f"cannot remove container {ref}: container is running")
        return real_remove(s, ref, force=force)

    monkeypatch.setattr(ops, "remove", remove)
    monkeypatch.setattr(system, "_running", lambda s, cid: cid == racer)
    ids, _ = system.prune_containers(store)
    assert ids == [old] and store.containers.ids() == [racer]
    monkeypatch.setattr(system, "_running", lambda s, cid: False)
    with pytest.raises(ContainerError, match="container is running"):
        system.prune_containers(store)
    monkeypatch.setattr(ops, "remove", real_remove)
    assert system.prune_containers(store)[0] == [racer]
    assert store.check() == []
