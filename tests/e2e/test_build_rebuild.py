"""Rebuild correctness through the CLI (issue 4, acceptance 4).

Editing one file rebuilds exactly the steps that depend on it; touching a file without
changing it is a cache hit; renaming a file is a miss. Steps are read from ``--progress
plain`` (``#N [i/n] INSTR`` then ``#N CACHED`` or ``#N DONE``); with SOURCE_DATE_EPOCH fixed
(as :func:`~lamina.testing.cli.run_cli` sets it) a fully cached rebuild gives the same image id.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from lamina.testing.cli import run_cli
from lamina.testing.corpus import export_tree, import_busybox, read_text

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_runtime]

DOCKERFILE = """\
FROM busybox
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
COPY dir /dir/
RUN ls /dir > /dir.list
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy
"""
STEPS = ["COPY a.txt", "RUN cat /a.txt", "COPY dir", "RUN ls /dir", "COPY b.txt", "RUN cat /b.txt"]


def build(root: Path, ctx: Path) -> tuple[str, list[str]]:
    """Build ``ctx`` as ``rb``; (image id, the steps that ran rather than hit the cache)."""
    res = run_cli(root, "build", "--progress", "plain", "-t", "rb", str(ctx))
    names = dict(re.findall(r"^#(\d+) \[\d+/\d+\] (.+)$", res.err + res.out, re.M))
    cached = set(re.findall(r"^#(\d+) CACHED$", res.err + res.out, re.M))
    ran = [
        step for num, instr in names.items() if num not in cached and not instr.startswith("FROM")
        for step in STEPS if instr.startswith(step)
    ]  # fmt: skip
    [data] = json.loads(run_cli(root, "inspect", "rb").out)
    return str(data["Id"]), ran


@pytest.fixture
def setup(tmp_path: Path, busybox_tar: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    import_busybox(root, busybox_tar)
    ctx = tmp_path / "ctx"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text("b\n")
    (ctx / "dir" / "x.txt").write_text("x\n")
    return root, ctx


def test_edit_touch_rename(setup: tuple[Path, Path], tmp_path: Path) -> None:
    root, ctx = setup
    first, ran = build(root, ctx)
    assert ran == STEPS
    # Unchanged: every step cached, same image.
    assert build(root, ctx) == (first, [])
    # Touch (new mtime, same content): still every step cached, same image.
    os.utime(ctx / "a.txt", (1_800_000_000, 1_800_000_000))
    os.utime(ctx / "dir" / "x.txt", (1_800_000_000, 1_800_000_000))
    assert build(root, ctx) == (first, [])
    # Edit b.txt: only its COPY and the RUN after it.
    (ctx / "b.txt").write_text("b, edited\n")
    edited, ran = build(root, ctx)
    assert ran == ["COPY b.txt", "RUN cat /b.txt"] and edited != first
    # Edit a.txt (same size): everything from its COPY on.
    (ctx / "a.txt").write_text("A\n")
    _, ran = build(root, ctx)
    assert ran == STEPS
    # Rename inside a copied directory: a miss from that COPY on, and the new name lands.
    (ctx / "dir" / "x.txt").rename(ctx / "dir" / "y.txt")
    _, ran = build(root, ctx)
    assert ran == STEPS[2:]
    tree = export_tree(root, "rb", tmp_path / "tree")
    assert read_text(tree, "dir.list") == "y.txt\n"
    assert read_text(tree, "b.copy") == "b, edited\n" and read_text(tree, "a.copy") == "A\n"
    # Editing back restores the cached result: same id as the first build with that content.
    (ctx / "dir" / "y.txt").rename(ctx / "dir" / "x.txt")
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text("b\n")
    assert build(root, ctx) == (first, [])
