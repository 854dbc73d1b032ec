"""Content keys of COPY sources and the persistent stat cache, on real directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lamina.build.context import BuildContext, resolve_sources
from lamina.build.sourcekey import hash_sources
from lamina.build.statcache import StatCache
from lamina.build.walkcache import COARSE_NS
from lamina.oci.digest import Digest


def _key(ctx: Path, db: Path, names: list[str], **kw: object) -> Digest:
    with BuildContext.open(ctx) as context, StatCache(db) as cache:
        return hash_sources(context, names, cache=cache, **kw)  # type: ignore[arg-type]


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src/pkg").mkdir(parents=True)
    (root / "src/main.py").write_text("print('hi')\n")
    (root / "src/pkg/mod.py").write_text("X = 1\n")
    (root / "src/link").symlink_to("main.py")
    (root / "notes.txt").write_text("ignored\n")
    (root / ".dockerignore").write_text("notes.txt\n**/*.pyc\n")
    return root


def test_touch_keeps_the_key_and_edits_change_it(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    first = _key(ctx, db, ["src"])
    assert _key(ctx, db, ["src"]) == first
    os.utime(ctx / "src/main.py", ns=(10**18, 10**18))  # touch: new mtime and ctime
    assert _key(ctx, db, ["src"]) == first
    (ctx / "src/main.py").write_text("print('bye')\n")
    edited = _key(ctx, db, ["src"])
    assert edited != first
    (ctx / "src/main.py").write_text("print('hi')\n")
    assert _key(ctx, db, ["src"]) == first  # same content again: same key


def test_renames_modes_and_link_targets_change_the_key(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    base = _key(ctx, db, ["src"])
    (ctx / "src/pkg/mod.py").rename(ctx / "src/pkg/other.py")
    renamed = _key(ctx, db, ["src"])
    assert renamed != base
    (ctx / "src/pkg/other.py").rename(ctx / "src/pkg/mod.py")
    assert _key(ctx, db, ["src"]) == base
    os.chmod(ctx / "src/main.py", 0o755)
    assert _key(ctx, db, ["src"]) != base
    os.chmod(ctx / "src/main.py", 0o644)
    (ctx / "src/link").unlink()
    (ctx / "src/link").symlink_to("pkg")
    assert _key(ctx, db, ["src"]) != base


def test_source_names_matter_and_ignored_files_do_not(ctx: Path, tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    whole = _key(ctx, db, ["."])
    (ctx / "notes.txt").write_text("changed, but ignored\n")
    (ctx / "src/x.pyc").write_bytes(b"\0")
    assert _key(ctx, db, ["."]) == whole
    (ctx / "copy.py").write_text("print('hi')\n")
    assert _key(ctx, db, ["src/main.py"]) != _key(ctx, db, ["copy.py"])  # same bytes
    assert _key(ctx, db, ["src"], excludes=["pkg"]) != _key(ctx, db, ["src"])


def test_cache_is_only_an_optimisation(ctx: Path, tmp_path: Path) -> None:
    with_cache = _key(ctx, tmp_path / "a.db", ["src"])
    with BuildContext.open(ctx) as context:
        assert hash_sources(context, ["src"]) == with_cache
    (tmp_path / "a.db").unlink()
    assert _key(ctx, tmp_path / "a.db", ["src"]) == with_cache


def test_owner_counts_only_for_from_roots(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    root.mkdir()
    (root / "f").write_text("x")
    context_key = hash_sources(None, resolve_sources(root, ["f"]))
    from_key = hash_sources(None, resolve_sources(root, ["f"], preserve_owner=True))
    os.chown(root / "f", 7, 7)
    assert hash_sources(None, resolve_sources(root, ["f"])) == context_key
    assert hash_sources(None, resolve_sources(root, ["f"], preserve_owner=True)) != from_key


def test_twenty_thousand_unchanged_files_rehash_in_well_under_a_second(tmp_path: Path) -> None:
    ctx = tmp_path / "big"
    for d in range(100):
        sub = ctx / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(200):
            (sub / f"f{f:03}").write_bytes(b"%d-%d\n" % (d, f))
    time.sleep(COARSE_NS / 1e9 + 0.05)  # files younger than a clock tick are racy: re-read
    db = tmp_path / "stat.db"
    with BuildContext.open(ctx) as context:
        with StatCache(db) as cache:
            first = hash_sources(context, ["."], cache=cache)
            assert cache.misses == 20_000
        with StatCache(db) as cache:
            # CPU time, not wall time: the test host's CPUs are shared with other jobs.
            start = time.process_time()
            again = hash_sources(context, ["."], cache=cache)
            elapsed = time.process_time() - start
            assert (cache.hits, cache.misses) == (20_000, 0)
    assert again == first
    assert elapsed < 1.0, f"unchanged re-hash took {elapsed:.2f}s of CPU"
