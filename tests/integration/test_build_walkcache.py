"""Remembered walks of COPY sources (lamina.build.walkcache) on real directories."""

from __future__ import annotations

import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from lamina.build import walkcache
from lamina.build.context import BuildContext, resolve_sources
from lamina.build.copytree import iter_source
from lamina.build.sourcekey import hash_sources
from lamina.build.statcache import StatCache
from lamina.build.walkcache import (
    COARSE_NS,
    MAX_WALKS,
    Signature,
    WalkStore,
    is_racy,
    plain_signatures,
)
from lamina.errors import BuildError
from lamina.oci.digest import Digest


def _settle() -> None:
    """Wait until files written so far are older than a clock tick (no longer racy)."""
    time.sleep(COARSE_NS / 1e9 + 0.05)


def _hash(ctx: Path, db: Path, names: list[str] | None = None) -> tuple[Digest, StatCache]:
    with BuildContext.open(ctx) as context, StatCache(db) as cache:
        return hash_sources(context, names or ["."], cache=cache), cache


def _walk_files(db: Path) -> list[Path]:
    return sorted((db.parent / f"{db.stem}-walks").iterdir())


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    for d in range(3):
        sub = root / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(5):
            (sub / f"f{f}.txt").write_bytes(b"%d/%d\n" % (d, f))
    (root / "d0" / "link").symlink_to("inner/f0.txt")
    (root / "big.bin").write_bytes(os.urandom(1 << 20))
    _settle()
    return root


def test_plain_walk_order_is_the_copiers(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    names = ["b", "a.b", "a", "Z", "é", "a-b", "a0", "z"]
    for n in names:
        (root / n / "a").mkdir(parents=True)
        (root / n / "a" / "x").write_text(n)
        (root / n / "B").write_text(n)
        (root / n / "a.").symlink_to("a")
    os.mkdir(os.fsencode(root) + b"/\xff\xfe")  # a name that is not UTF-8
    (root / "empty").mkdir()
    (source,) = resolve_sources(root, ["."])
    sigs: list[Signature] = []
    plain_signatures(0, str(root), sigs)
    assert [s[1] for s in sigs] == [sub for sub, _st, _d in iter_source(source, None)]
    assert len(sigs) == 8 * 5 + 2


def test_a_vanished_directory_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"reading build context: .*gone: no such file"):
        plain_signatures(0, str(tmp_path / "gone"), [])


def test_unchanged_walk_is_reused_without_reads_or_writes(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    first, cache = _hash(ctx, db)
    assert (cache.hits, cache.misses) == (0, 16)
    (record,) = _walk_files(db)
    before = record.stat()
    again, cache = _hash(ctx, db)
    assert again == first
    assert (cache.hits, cache.misses, cache.walked_count) == (16, 0, 1)
    after = record.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert hash_sources(BuildContext.open(ctx), ["."]) == first  # no cache: the same key


def test_touch_rereads_one_file_and_keeps_the_key(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    first, _ = _hash(ctx, db)
    os.utime(ctx / "d1/inner/f3.txt", ns=(10**18, 10**18))
    _settle()
    touched, cache = _hash(ctx, db)
    assert touched == first
    assert (cache.hits, cache.misses) == (15, 1)
    again, cache = _hash(ctx, db)  # the touched entry was remembered
    assert again == first and cache.misses == 0


def test_a_fresh_touch_rereads_the_file_and_writes_nothing(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    first, _ = _hash(ctx, db)
    (record,) = _walk_files(db)
    before = record.stat()
    later = time.time_ns() + 10 * 10**9  # as the benchmark's touch: ahead of the clock
    for n in range(2):
        os.utime(ctx / "d1/inner/f3.txt", ns=(later + n, later + n))
        touched, cache = _hash(ctx, db)
        assert touched == first and (cache.hits, cache.misses) == (15, 1)
    after = record.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_edits_renames_modes_and_new_files_change_the_key(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    base, _ = _hash(ctx, db)
    target = ctx / "d2/inner/f1.txt"
    target.write_bytes(b"2/9\n")  # same size, new content
    edited, cache = _hash(ctx, db)
    assert edited != base and cache.misses == 1
    target.write_bytes(b"2/1\n")
    assert _hash(ctx, db)[0] == base
    target.rename(ctx / "d2/inner/g1.txt")
    assert _hash(ctx, db)[0] != base
    (ctx / "d2/inner/g1.txt").rename(target)
    assert _hash(ctx, db)[0] == base
    os.chmod(target, 0o600)
    assert _hash(ctx, db)[0] != base
    os.chmod(target, 0o644)
    (ctx / "d0/new.txt").write_text("new")
    assert _hash(ctx, db)[0] != base
    (ctx / "d0/new.txt").unlink()
    assert _hash(ctx, db)[0] == base
    assert len(_walk_files(db)) == 1  # one record per walk identity, replaced


def test_a_fresh_file_is_racy_and_read_again(ctx: Path, tmp_path: Path) -> None:
    """A file changed less than a clock tick before it was read may change again without
    changing its stat signature: such an entry is never trusted, in the walk or the rows."""
    db = tmp_path / "stat.db"
    _hash(ctx, db)
    fresh = ctx / "d0/inner/f2.txt"
    fresh.write_bytes(b"0/7\n")
    st = fresh.stat()
    assert is_racy(st.st_mtime_ns, st.st_ctime_ns, time.time_ns())
    edited, cache = _hash(ctx, db)
    assert cache.misses == 1
    again, cache = _hash(ctx, db)  # unchanged, but still racy (or just settled): read again
    assert again == edited and cache.misses == 1
    _settle()
    _hash(ctx, db)  # read once more, now remembered as clean
    final, cache = _hash(ctx, db)
    assert final == edited and cache.misses == 0


def test_racy_rules() -> None:
    now = time.time_ns()
    old = now - 10 * 10**9
    assert not is_racy(old + 1, old + 1, now)
    assert is_racy(old, now - COARSE_NS // 2, now)  # ctime within a tick
    assert is_racy(now + 10**10, old, now)  # a future mtime (touch -d)
    whole = (now // 10**9 - 1) * 10**9  # whole-second stamps: 2 s granularity
    assert is_racy(whole, whole, now)
    assert not is_racy(whole - 3 * 10**9, whole - 3 * 10**9, now)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "empty"])
def test_a_damaged_record_costs_only_speed(ctx: Path, tmp_path: Path, damage: str) -> None:
    db = tmp_path / "stat.db"
    first, _ = _hash(ctx, db)
    (record,) = _walk_files(db)
    data = bytearray(record.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "flip":
        data[-10] ^= 0xFF
    else:
        data = bytearray()
    record.write_bytes(bytes(data))
    assert WalkStore(record.parent).load(record.name) is None
    again, cache = _hash(ctx, db)
    assert again == first and cache.misses == 0  # the rows still serve the digests
    assert WalkStore(record.parent).load(record.name) is not None  # rewritten


def test_one_build_walks_the_same_sources_once(ctx: Path, tmp_path: Path) -> None:
    with BuildContext.open(ctx) as context, StatCache(tmp_path / "s.db") as cache:
        one = hash_sources(context, ["."], cache=cache)
        two = hash_sources(context, ["."], cache=cache)
        other = hash_sources(context, ["d1"], cache=cache)
        assert one == two != other
        assert cache.walked_count == 2


def test_concurrent_builds_share_records(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    keys: list[Digest] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            keys.append(_hash(ctx, db)[0])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(keys)) == 1
    again, cache = _hash(ctx, db)
    assert again == keys[0] and cache.misses == 0


def test_records_are_bounded(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    walks = db.parent / f"{db.stem}-walks"
    walks.mkdir()
    for n in range(MAX_WALKS + 1):
        (walks / f"{n:064x}").write_bytes(b"old")
        os.utime(walks / f"{n:064x}", ns=(n * 10**9, n * 10**9))
    _hash(ctx, db)
    left = {p.name for p in walks.iterdir()}
    assert len(left) == MAX_WALKS // 2
    assert f"{MAX_WALKS:064x}" in left and f"{0:064x}" not in left


@pytest.fixture
def ignoring(tmp_path: Path) -> Path:
    root = tmp_path / "ign"
    for d in ("src/pkg", "build/sub", "node_modules/x"):
        (root / d).mkdir(parents=True)
    (root / "src/main.py").write_text("print(1)\n")
    (root / "src/pkg/mod.pyc").write_bytes(b"\0")
    (root / "build/sub/out.o").write_bytes(b"\1")
    (root / "node_modules/x/index.js").write_text("x\n")
    (root / ".dockerignore").write_text("node_modules\n**/*.pyc\nbuild\n!build/sub/keep.txt\n")
    _settle()
    return root


def _no_cache_key(ctx: Path) -> Digest:
    with BuildContext.open(ctx) as context:
        return hash_sources(context, ["."])


def test_ignored_entries_change_nothing(ignoring: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    first, cache = _hash(ignoring, db)
    assert first == _no_cache_key(ignoring)
    assert cache.misses == 2  # main.py, .dockerignore
    (ignoring / "node_modules/x/index.js").write_text("changed\n")
    (ignoring / "node_modules/y.js").write_text("new\n")
    (ignoring / "src/pkg/mod.pyc").write_bytes(b"\0\0")
    (ignoring / "build/sub/out.o").write_bytes(b"\2")
    _settle()
    again, cache = _hash(ignoring, db)
    assert again == first and cache.misses == 0
    os.utime(ignoring / "src/pkg/mod.pyc", ns=(10**18, 10**18))
    again, cache = _hash(ignoring, db)
    assert again == first and cache.misses == 0


def test_a_re_included_file_deep_in_an_ignored_dir_is_seen(ignoring: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    first, _ = _hash(ignoring, db)
    (ignoring / "build/sub/keep.txt").write_text("kept\n")  # only build/sub's mtime changes
    added, _ = _hash(ignoring, db)
    assert added != first and added == _no_cache_key(ignoring)
    (ignoring / "build/sub/keep.txt").write_text("kept, edited\n")
    edited, cache = _hash(ignoring, db)
    assert edited not in (first, added) and edited == _no_cache_key(ignoring)
    assert cache.misses == 1


def test_edits_beside_ignored_entries_are_seen(ignoring: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    first, _ = _hash(ignoring, db)
    (ignoring / "src/main.py").write_text("print(2)\n")
    edited, cache = _hash(ignoring, db)
    assert edited != first and edited == _no_cache_key(ignoring) and cache.misses == 1
    (ignoring / "src/pkg/new.py").write_text("new\n")
    added, _ = _hash(ignoring, db)
    assert added not in (first, edited) and added == _no_cache_key(ignoring)


def test_records_are_bounded_by_size(
    ctx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "stat.db"
    walks = db.parent / f"{db.stem}-walks"
    walks.mkdir()
    for n in range(4):
        (walks / f"{n:064x}").write_bytes(b"x" * 1000)
        os.utime(walks / f"{n:064x}", ns=(n * 10**9, n * 10**9))
    monkeypatch.setattr(walkcache, "MAX_BYTES", 3000)
    _hash(ctx, db)  # its own record is larger than the budget: everything older goes
    assert [p.name for p in walks.iterdir()] == [_walk_files(db)[-1].name]
    assert not (walks / f"{3:064x}").exists()


def test_a_used_record_is_marked_used(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    _hash(ctx, db)
    (record,) = _walk_files(db)
    old = time.time() - 7200
    os.utime(record, (old, old))
    _hash(ctx, db)
    assert record.stat().st_mtime > old + 3600


def test_an_archive_context_keeps_no_record(ctx: Path, tmp_path: Path) -> None:
    archive = tmp_path / "ctx.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(ctx, arcname=".")
    db = tmp_path / "stat.db"
    with (
        open(archive, "rb") as f,
        BuildContext.open("-", stdin=f) as context,
        StatCache(db) as cache,
    ):
        key = hash_sources(context, ["d0"], cache=cache)
    assert key == _hash(ctx, db, ["d0"])[0]  # same content, same key
    assert len(_walk_files(db)) == 1  # the directory context's record only
