"""Acceptance 4: 50 detached containers started, exec'd, stopped and removed concurrently
(several lamina processes on one store at once) leave no mounts, processes or dirs behind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lamina.testing.capabilities import mount_points_under
from lamina.testing.cli import Result

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

COUNT = 50
PARALLEL = 6


def _lifecycle(cli: Callable[..., Result], i: int) -> str:
    name = f"c{i}"
    cid = cli("run", "-d", "--name", name, "busybox", "sleep", "600").out.strip()
    res = cli("exec", name, "sh", "-c", f"echo {i} > /mark && cat /mark")
    assert res.out == f"{i}\n"
    cli("stop", "-t", "1", name)
    cli("rm", name)
    return cid


def test_fifty_concurrent_containers_leave_nothing(cli: Callable[..., Result],
                                                  busybox_tar: Path) -> None:  # fmt: skip
    cli("import", str(busybox_tar), "busybox")
    root: Path = cli.root  # type: ignore[attr-defined]
    overlay_before = set(os.listdir(root / "overlay2"))
    links_before = set(os.listdir(root / "overlay2" / "l"))
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        ids = list(pool.map(lambda i: _lifecycle(cli, i), range(COUNT)))
    elapsed = time.monotonic() - started
    assert len(set(ids)) == COUNT
    assert cli("ps", "-aq").out == ""
    assert mount_points_under(root) == []
    assert set(os.listdir(root / "overlay2")) == overlay_before
    assert set(os.listdir(root / "overlay2" / "l")) == links_before
    assert os.listdir(root / "containers" / "names") == []
    assert [e for e in os.listdir(root / "containers") if e != "names"] == []
    leftovers = (
        os.listdir(root / "runtime" / "runc") if (root / "runtime" / "runc").exists() else []
    )
    assert [e for e in leftovers if len(e) == 64] == []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                assert not os.readlink(f"/proc/{entry}/root").startswith(str(root))
            except OSError:
                continue
    assert cli("system", "check").code == 0
    print(f"{COUNT} containers in {elapsed:.1f}s")
