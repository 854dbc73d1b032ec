"""OCIRuntime.run_watched: one foreground ``runc run``; the pid reported while the process runs.

What ``lamina run`` relies on: the reported pid is the container's init (another pid
namespace, alive when reported), the status passes through (128+N for a signal), nothing of
the runtime's state or mount points is left, the runtime runs in its own process group
(a terminal's ^C reaches only lamina, which forwards it once), and a runtime failure before
the process existed is a ContainerError, not a status.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from pathlib import Path

import pytest

from lamina.errors import ContainerError
from lamina.runtime import BindMount, ContainerSpec, ProcessSpec, select_runtime, write_bundle
from lamina.runtime.bundle import Bundle
from lamina.runtime.oci_runtime import OCIRuntime

pytest_plugins = ["conftest_runtime"]
pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.needs_runtime,
    pytest.mark.usefixtures("no_runtime_leaks"),
]

ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)
_ids = itertools.count()


@pytest.fixture
def runc(runtime_state: Path) -> OCIRuntime:
    rt = select_runtime("runc", state_dir=runtime_state)
    assert isinstance(rt, OCIRuntime)
    return rt


def bundle_for(tmp_path: Path, rootfs: Path, *args: str, **kw: object) -> tuple[Bundle, str]:
    cid = f"w{os.getpid()}-{next(_ids)}"
    spec = ContainerSpec(rootfs=rootfs, process=ProcessSpec(args=args, env=ENV), **kw)  # type: ignore[arg-type]
    return write_bundle(tmp_path / f"bundle-{cid}", spec, container_id=cid), cid


def test_pid_is_the_running_init_and_status_passes_through(
    runc: OCIRuntime, rootfs: Path, tmp_path: Path
) -> None:
    bundle, cid = bundle_for(tmp_path, rootfs, "sh", "-c", "read line; echo got $line; exit 7")
    seen: list[tuple[int, str, bool]] = []
    r, w = os.pipe()

    def on_started(pid: int) -> None:
        # The process is alive and waits for us: it is in its own pid namespace, and its
        # parent (the runtime) is not in our process group.
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        seen.append((pid, os.readlink(f"/proc/{pid}/ns/pid"), os.getpgid(ppid) == os.getpgrp()))
        assert runc.exists(cid)
        os.write(w, b"hello\n")
        os.close(w)

    out = tmp_path / "out"
    with out.open("wb") as f:
        status = runc.run_watched(
            bundle, cid, on_started=on_started, stdin=r, stdout=f, stderr=subprocess.STDOUT
        )
    os.close(r)
    assert status == 7
    assert out.read_text() == "got hello\n"
    assert len(seen) == 1
    pid, ns, same_group = seen[0]
    assert pid > 0 and ns != os.readlink("/proc/self/ns/pid")
    assert not same_group
    assert not runc.exists(cid)
    assert not (bundle.path / "mountpoints.json").exists()


def test_death_by_signal_is_128_plus_n(runc: OCIRuntime, rootfs: Path, tmp_path: Path) -> None:
    bundle, cid = bundle_for(tmp_path, rootfs, "sleep", "600")
    status = runc.run_watched(
        bundle, cid, on_started=lambda pid: os.kill(pid, signal.SIGKILL),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert status == 137
    assert not runc.exists(cid)


def test_a_failing_on_started_kills_the_container(
    runc: OCIRuntime, rootfs: Path, tmp_path: Path
) -> None:
    bundle, cid = bundle_for(tmp_path, rootfs, "sleep", "600")

    def fail(_pid: int) -> None:
        raise OSError("recording the state failed")

    with pytest.raises(OSError, match="recording the state failed"):
        runc.run_watched(
            bundle, cid, on_started=fail, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    assert not runc.exists(cid)  # no_runtime_leaks checks that no process is left


def test_runtime_failure_is_a_container_error(
    runc: OCIRuntime, rootfs: Path, tmp_path: Path
) -> None:
    missing = BindMount(source=tmp_path / "absent", destination="/mnt/x")
    bundle, cid = bundle_for(tmp_path, rootfs, "true", binds=(missing,))
    started: list[int] = []
    with pytest.raises(ContainerError) as info:
        runc.run_watched(
            bundle, cid, on_started=started.append, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    assert "the runtime failed" in info.value.message
    assert started == []
    assert not runc.exists(cid)
    assert not (rootfs / "mnt").exists()
