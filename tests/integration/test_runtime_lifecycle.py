"""Detached containers (start, state, exec, kill, delete), runtime selection, user namespaces."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina.errors import CommandNotFound, ContainerError
from lamina.runtime import (
    ContainerSpec,
    NativeRuntime,
    ProcessSpec,
    Runtime,
    select_runtime,
    single_id_mappings,
    write_bundle,
)
from lamina.runtime.oci_runtime import _probe_cache, find_binary, probe

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("no_runtime_leaks")]

ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)
SERVER = "trap 'echo bye; exit 3' TERM; echo started; while true; do sleep 0.05; done"
_ids = itertools.count()


def new_id() -> str:
    return f"d{os.getpid()}-{next(_ids)}"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def exec_out(rt: Runtime, cid: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    out = tmp_path / f"exec-{next(_ids)}.out"
    with out.open("wb") as f:
        status = rt.exec(
            cid, ProcessSpec(args=args, env=(*ENV, "X=from-exec")), stdin=subprocess.DEVNULL,
            stdout=f, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return status, out.read_text()


def test_detached_start_state_exec_kill_delete(
    rt: Runtime, rootfs: Path, tmp_path: Path, tree_snapshot: Callable[[Path], object]
) -> None:
    before = tree_snapshot(rootfs)
    cid = new_id()
    spec = ContainerSpec(rootfs=rootfs, process=ProcessSpec(args=("sh", "-c", SERVER), env=ENV),
                         hostname="svc")  # fmt: skip
    bundle = write_bundle(tmp_path / "bundle", spec, container_id=cid)
    log = tmp_path / "log"
    with log.open("wb") as f:
        st = rt.start_detached(bundle, cid, stdout=f, stderr=subprocess.STDOUT)
    assert (st.id, st.status, st.bundle) == (cid, "running", bundle.path)
    assert st.pid > 1 and os.path.exists(f"/proc/{st.pid}")
    wait_for(lambda: "started" in log.read_text())

    assert exec_out(rt, cid, tmp_path, "sh", "-c", "echo $X; hostname; echo hi > /dev/shm/m") == (
        0,
        "from-exec\nsvc\n",
    )
    assert exec_out(rt, cid, tmp_path, "cat", "/dev/shm/m") == (0, "hi\n")  # same mounts
    assert exec_out(rt, cid, tmp_path, "sh", "-c", "exit 5")[0] == 5
    with (tmp_path / "tty.out").open("wb") as f:
        tty = ProcessSpec(args=("sh", "-c", "tty; exit 6"), env=ENV, terminal=True)
        assert rt.exec(cid, tty, stdin=subprocess.DEVNULL, stdout=f) == 6
    assert (tmp_path / "tty.out").read_text().startswith("/dev/pts/")
    with pytest.raises(CommandNotFound):
        exec_out(rt, cid, tmp_path, "no-such-tool")

    with pytest.raises(ContainerError):
        rt.delete(cid)  # running, not forced
    rt.kill(cid, signal.SIGTERM)
    wait_for(lambda: rt.state(cid).status == "stopped")
    assert log.read_text() == "started\nbye\n"
    if isinstance(rt, NativeRuntime):
        assert rt.exit_status(cid) == 3
    with pytest.raises(ContainerError):
        rt.exec(cid, ProcessSpec(args=("true",), env=ENV))
    rt.delete(cid)
    assert not rt.exists(cid)
    rt.delete(cid)  # idempotent
    with pytest.raises(ContainerError):
        rt.state(cid)
    assert tree_snapshot(rootfs) == before


def test_force_delete_kills_a_running_container(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    cid = new_id()
    spec = ContainerSpec(rootfs=rootfs, process=ProcessSpec(args=("sleep", "300"), env=ENV))
    bundle = write_bundle(tmp_path / "bundle", spec, container_id=cid)
    st = rt.start_detached(bundle, cid, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with pytest.raises(ContainerError):
        rt.start_detached(bundle, cid)  # the id is taken
    assert rt.state(cid).status == "running"  # and the failed start left it alone
    rt.delete(cid, force=True)
    assert not rt.exists(cid)
    wait_for(lambda: not os.path.exists(f"/proc/{st.pid}/root"))


def test_detached_missing_command_leaves_nothing(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    cid = new_id()
    spec = ContainerSpec(rootfs=rootfs, process=ProcessSpec(args=("nope",), env=ENV))
    bundle = write_bundle(tmp_path / "bundle", spec, container_id=cid)
    with pytest.raises(CommandNotFound):
        rt.start_detached(bundle, cid)
    assert not rt.exists(cid)


@pytest.fixture
def public_rootfs(busybox_tar: Path) -> Iterator[Path]:
    """A busybox rootfs whose parents are traversable by others (pytest's tmp dir is 0700),
    so an unprivileged id mapped as container root can reach it."""
    base = Path(tempfile.mkdtemp(prefix="lamina-userns-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        (base / "rootfs").mkdir()
        subprocess.run(["tar", "-xf", str(busybox_tar), "-C", str(base / "rootfs")], check=True)
        yield base / "rootfs"
    finally:
        shutil.rmtree(base)


@pytest.mark.needs_runtime
def test_user_namespace_single_id_map_with_runc(
    public_rootfs: Path, tmp_path: Path, runtime_state: Path
) -> None:
    rootfs = public_rootfs
    uids, gids = single_id_mappings(100000, 100000)
    script = "id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox; touch /etc/x || echo denied"
    spec = ContainerSpec(rootfs=rootfs, process=ProcessSpec(args=("sh", "-c", script), env=ENV),
                         uid_mappings=uids, gid_mappings=gids)  # fmt: skip
    cid = new_id()
    bundle = write_bundle(tmp_path / "bundle", spec, container_id=cid)
    runc = select_runtime("runc", state_dir=runtime_state)
    out, err = tmp_path / "out", tmp_path / "err"
    # (runc copies a user namespace's stdio through pipes: keep the streams apart to keep order)
    with out.open("wb") as o, err.open("wb") as e:
        assert runc.run(bundle, cid, stdout=o, stderr=e) == 0
    lines = [ln.split() for ln in out.read_text().splitlines()]
    # root inside is 100000 outside; the host's root-owned files show as the overflow id
    assert lines == [["0"], ["0", "100000", "1"], ["65534"], ["denied"]]
    assert "Permission denied" in err.read_text()
    assert not (rootfs / "etc" / "x").exists()


def _is_hybrid_cgroup_host() -> bool:
    with open("/proc/self/mountinfo") as f:
        table = [(ln.split(" ")[4], ln.partition(" - ")[2].split(" ")[0]) for ln in f]
    return ("/sys/fs/cgroup/unified", "cgroup2") in table and any(
        t == "cgroup" and mp.startswith("/sys/fs/cgroup/") for mp, t in table
    )


@pytest.mark.needs_runtime
def test_crun_probe_and_fallback_to_runc(tmp_path: Path) -> None:
    crun = find_binary("crun")
    if crun is None:
        pytest.skip("crun is not installed (apt-get install crun)")
    version = subprocess.run([crun, "--version"], capture_output=True, text=True).stdout
    _probe_cache.clear()  # another test in this worker may have probed crun already
    works = probe("crun", crun, tmp_path / "crun")
    if _is_hybrid_cgroup_host() and "crun version 1.8." in version:
        assert works is False  # "cgroups in hybrid mode not supported"
    chosen = select_runtime("crun", state_dir=tmp_path)
    assert chosen.name == ("crun" if works else "runc")
    # cached: in memory, and on disk for the next process
    record = tmp_path / "crun" / "probe.json"
    mtime = record.stat().st_mtime_ns
    _probe_cache.clear()
    assert probe("crun", crun, tmp_path / "crun") is works
    assert record.stat().st_mtime_ns == mtime


@pytest.mark.needs_runtime
def test_broken_crun_falls_back_to_runc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "crun"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'cgroups in hybrid mode not supported' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
    assert select_runtime("crun", state_dir=tmp_path / "state").name == "runc"
    assert select_runtime(None, state_dir=tmp_path / "state").name == "runc"
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.setattr("lamina.runtime.oci_runtime.FALLBACK_PATH", str(fake.parent))
    assert select_runtime(None, state_dir=tmp_path / "state").name == "native"
    with pytest.raises(ContainerError):
        select_runtime("runc", state_dir=tmp_path / "state")
