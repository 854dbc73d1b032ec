"""COPY reuse in a rootless store (user namespace, overlay with ``userxattr``): an edited
context links the unchanged files of the previous layer and gives the image a ``--no-cache``
build gives."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.testing import rootless
from lamina.testing.rootless import StoreCli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_rootless]


@pytest.fixture
def store(busybox_tar: Path) -> Iterator[StoreCli]:
    with rootless.ci_store(busybox_tar) as cli:
        yield cli


def _upper(store: StoreCli, tag: str) -> Path:
    info = json.loads(store("inspect", "--type", "image", tag).out)[0]
    return Path(info["GraphDriver"]["Data"]["UpperDir"])


def _image_id(store: StoreCli, tag: str) -> str:
    return str(json.loads(store("inspect", "--type", "image", tag).out)[0]["Id"])


def test_rootless_edit_links_unchanged_files(store: StoreCli) -> None:
    ctx = store.work / "ctx"
    for i in range(30):
        sub = ctx / f"d{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}").write_bytes(os.urandom(100 + i))
    (ctx / "big.bin").write_bytes(os.urandom(1 << 20))
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY . /data/\n")
    time.sleep(0.1)  # past the racy window: the first copy records every file
    store("build", "-t", "one", str(ctx))
    (ctx / "d0" / "f0").write_bytes(b"edited\n")
    store("build", "-t", "two", str(ctx))
    upper = _upper(store, "two")
    assert os.lstat(upper / "data" / "big.bin").st_nlink == 2
    assert os.lstat(upper / "data" / "d0" / "f0").st_nlink == 1
    store("build", "--no-cache", "-t", "cold", str(ctx))  # copies everything
    assert _image_id(store, "two") == _image_id(store, "cold")
