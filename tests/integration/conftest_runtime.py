"""Fixtures for the runtime tests, loaded by ``test_runtime_*.py`` through ``pytest_plugins``.

- ``busybox_tar``: the busybox rootfs tarball from ``scripts/make-busybox-rootfs.sh``, made
  once per session with a fixed ``SOURCE_DATE_EPOCH``;
- ``rootfs``: a fresh extraction of it per test (so tests may change it);
- ``runtime_state``: a per-test state directory;
- ``rt``: the runtime under test, parametrized over runc and native; containers a failing test
  left behind are force-deleted;
- ``tree_snapshot``: a function giving (mode, size, mtime, link) of everything in a tree;
- ``no_runtime_leaks``: asserts after the test that no mount is left under the test's tmp dir,
  that no proc/sysfs/devpts/mqueue/tmpfs/cgroup mount appeared anywhere in the host mount
  table, and that no process has its root inside the test's tmp dir.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina.runtime import Runtime, select_runtime
from lamina.testing.capabilities import mount_points_under

REPO = Path(__file__).resolve().parents[2]
_CONTAINER_FSTYPES = {"proc", "sysfs", "devpts", "mqueue", "tmpfs", "cgroup", "cgroup2"}


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs tarball (session-scoped)."""
    out = tmp_path_factory.mktemp("busybox") / "rootfs.tar"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    subprocess.run(
        [str(REPO / "scripts" / "make-busybox-rootfs.sh"), str(out)], check=True, env=env
    )
    return out


@pytest.fixture
def rootfs(tmp_path: Path, busybox_tar: Path) -> Path:
    """A fresh busybox rootfs directory for this test."""
    root = tmp_path / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(busybox_tar), "-C", str(root)], check=True)
    return root


@pytest.fixture
def runtime_state(tmp_path: Path) -> Path:
    """A per-test runtime state directory."""
    return tmp_path / "state"


@pytest.fixture(params=[pytest.param("runc", marks=pytest.mark.needs_runtime), "native"])
def rt(request: pytest.FixtureRequest, runtime_state: Path) -> Iterator[Runtime]:
    """Each test runs with runc and with the native runtime; leftovers are force-deleted."""
    runtime = select_runtime(request.param, state_dir=runtime_state)
    yield runtime
    root = runtime_state / request.param
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.is_dir() and runtime.exists(entry.name):
            runtime.delete(entry.name, force=True)


def container_mounts() -> set[tuple[str, str]]:
    """(mount point, fstype) of every container-ish filesystem in this mount namespace."""
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split(" ", 1)[0]
            if fstype in _CONTAINER_FSTYPES:
                found.add((left.split(" ")[4], fstype))
    return found


def processes_rooted_under(path: Path) -> list[int]:
    """pids whose root directory is ``path`` or below it."""
    prefix = str(path)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if root == prefix or root.startswith(prefix + "/"):
            pids.append(int(entry))
    return pids


@pytest.fixture
def no_runtime_leaks(tmp_path: Path) -> Iterator[None]:
    """Assert that a test leaves no mounts and no processes behind (see module docstring)."""
    before = container_mounts()
    yield
    assert mount_points_under(tmp_path) == []
    # Another worker may mount overlays/tmpfs meanwhile; only new container-type mounts that
    # point into *our* tmp dir, or a new proc/sysfs anywhere, count as ours.
    new = {
        (mp, t)
        for mp, t in container_mounts() - before
        if mp.startswith(str(tmp_path)) or t in ("proc", "sysfs", "devpts", "mqueue")
    }
    assert new == set()
    deadline = time.monotonic() + 5
    while processes_rooted_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_rooted_under(tmp_path) == []


@pytest.fixture
def tree_snapshot() -> Callable[[Path], dict[str, tuple[int, int, int, str]]]:
    """``tree_snapshot(root)``: path -> (mode, size, mtime_ns, link target) under ``root``."""
    return snapshot


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (mode, size, mtime_ns, link target) for everything under ``root``."""
    snap: dict[str, tuple[int, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if os.path.islink(p) else ""
            snap[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, link)
    st = os.lstat(root)
    snap["."] = (st.st_mode, 0, st.st_mtime_ns, "")
    return snap
