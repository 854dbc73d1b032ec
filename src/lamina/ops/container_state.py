"""Container state: Docker's ``State`` object, liveness checks and the stale-state rule.

There is no daemon, so the truth about a container is re-derived whenever it is read
(:func:`refresh`): a state that says "running" is believed only while

- the boot id recorded with it is this boot's (``/proc/sys/kernel/random/boot_id``), and
- its init process (pid + start time from ``/proc/<pid>/stat``) is alive, or the pid is not
  known yet (starting) / already gone but its monitor (pid + start time) is still alive and
  about to record the exit status.

Otherwise the state is stale (the monitor was ``kill -9``'d, or the host rebooted): it
becomes ``exited`` with exit code 255 under the container lock, the runtime's container is
deleted, the rootfs unmounted, and an ``--rm`` container removed — the same clean-up the
monitor would have done. :func:`refresh` is safe to call from any number of processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from lamina.errors import ContainerError, LaminaError, LockTimeout, NotFound
from lamina.runtime import select_runtime
from lamina.runtime.model import Runtime
from lamina.runtime.monitor import now_rfc3339
from lamina.runtime.procstat import process_starttime
from lamina.store import Store

ZERO_TIME = "0001-01-01T00:00:00Z"
#: State keys that ``inspect`` shows (the rest are lamina's private bookkeeping)
PUBLIC_KEYS = (
    "Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
    "Error", "StartedAt", "FinishedAt",
)  # fmt: skip
STALE_EXIT = 255


def boot_id() -> str:
    """This boot's id ("" when unknown)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def new_state() -> dict[str, Any]:
    """The state of a created, never started container."""
    return {
        "Status": "created", "Running": False, "Paused": False, "Restarting": False,
        "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
        "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME,
    }  # fmt: skip


def public_state(state: dict[str, Any]) -> dict[str, Any]:
    """The ``State`` object as ``docker inspect`` prints it."""
    return {k: state.get(k) for k in PUBLIC_KEYS}


def process_alive(pid: int, starttime: int | None) -> bool:
    """True when ``pid`` runs and (if given) started at ``starttime`` (not a reused pid)."""
    if pid <= 0:
        return False
    try:
        current = process_starttime(pid)
    except (OSError, ValueError, IndexError):
        return False
    if _is_zombie(pid):
        return False
    return starttime is None or current == starttime


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def process_identity(pid: int) -> int | None:
    """The start time of ``pid`` (to recognise it later), None if it is gone."""
    try:
        return process_starttime(pid)
    except (OSError, ValueError, IndexError):
        return None


def is_live(state: dict[str, Any]) -> bool:
    """True while a "running" state is still true (see the module docstring)."""
    if state.get("Status") != "running":
        return False
    if state.get("BootId") and state.get("BootId") != boot_id():
        return False
    pid = int(state.get("Pid") or 0)
    if pid > 0 and process_alive(pid, state.get("PidStart")):
        return True
    return process_alive(int(state.get("MonitorPid") or 0), state.get("MonitorStart"))


def container_runtime(store: Store, config: dict[str, Any]) -> Runtime:
    """The runtime the container was (or will be) started with."""
    name = config.get("HostConfig", {}).get("Runtime") or None
    return select_runtime(name, state_dir=store.root / "runtime")


def refresh(store: Store, cid: str) -> dict[str, Any]:
    """The container's state, with a stale "running" turned into "exited" (and cleaned up)."""
    state = store.containers.read(cid, "state.json")
    if state.get("Status") != "running" or is_live(state):
        return state
    try:
        with store.containers.locked(cid, timeout=2.0):
            state = refresh_locked(store, cid)
            config = store.containers.read(cid)
    except LockTimeout:
        return state  # someone else is on it (the monitor finishing, an rm)
    if state.get("Error") == STALE_ERROR and config.get("HostConfig", {}).get("AutoRemove"):
        with contextlib.suppress(LaminaError, OSError):
            store.containers.remove(cid)
    return state


STALE_ERROR = "the container's monitor is gone (killed, or the host rebooted)"


def refresh_locked(store: Store, cid: str) -> dict[str, Any]:
    """:func:`refresh` for a caller that holds the container lock (no --rm removal)."""
    state = store.containers.read(cid, "state.json")
    if state.get("Status") != "running" or is_live(state):
        return state
    state.update(
        Status="exited", Running=False, Pid=0, ExitCode=STALE_EXIT, FinishedAt=now_rfc3339(),
        Error=STALE_ERROR, MonitorPid=0,
    )  # fmt: skip
    store.containers.write(cid, state, "state.json")
    release_rootfs(store, cid, store.containers.read(cid))
    return state


def release_rootfs(store: Store, cid: str, config: dict[str, Any]) -> None:
    """Delete the runtime's container and unmount the rootfs (idempotent, under the lock)."""
    with contextlib.suppress(LaminaError, OSError, subprocess.SubprocessError):
        runtime = container_runtime(store, config)
        runtime.delete(cid, force=True)
    store.backend.unmount(store.containers.dirs(cid).merged)


def wait_stopped(store: Store, cid: str, timeout: float | None) -> dict[str, Any] | None:
    """Poll until the container is not running; its state, or None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            state = refresh(store, cid)
        except NotFound:
            return None if deadline is not None else {"Status": "removed", "ExitCode": 0}
        if state.get("Status") != "running":
            return state
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def require_running(store: Store, cid: str) -> dict[str, Any]:
    """The state of a running container; ContainerError when it is not running."""
    state = refresh(store, cid)
    if state.get("Status") != "running" or int(state.get("Pid") or 0) <= 0:
        raise ContainerError(f"container {cid} is not running")
    return state


def rootfs_of(store: Store, cid: str) -> Path:
    """Where the container's merged tree is (its upper dir with the vfs driver)."""
    dirs = store.containers.dirs(cid)
    return dirs.upper if store.backend.copies else dirs.merged


def ensure_mounted(store: Store, cid: str, *, volatile: bool = False) -> Path:
    """Mount the container's rootfs if needed (caller holds the lock); return the rootfs.

    ``volatile`` (for ``--rm`` containers, whose upper dir is thrown away): no sync of the
    upper fs ever, so the unmount does not wait for a sync of the whole disk. A volatile mount
    leaves ``work/incompat/volatile`` behind, which refuses any later mount: the work dir of an
    unmounted overlay is scratch, so it is emptied first then.
    """
    from lamina.unionfs import syscall

    dirs = store.containers.dirs(cid)
    if store.backend.copies:
        return dirs.upper
    if not syscall.is_mountpoint(dirs.merged):
        lowers = dirs.lower_links if not store.backend.name.startswith("fuse") else dirs.lower
        if (dirs.work / "incompat").exists():
            shutil.rmtree(dirs.work)
            dirs.work.mkdir(mode=0o700)
        store.backend.mount(lowers, dirs.upper, dirs.work, dirs.merged, volatile=volatile)
    return dirs.merged


def unmount_unless_running(store: Store, cid: str) -> None:
    """Unmount the rootfs of a container that is not running (caller holds the lock)."""
    state = store.containers.read(cid, "state.json")
    if state.get("Status") != "running":
        store.backend.unmount(store.containers.dirs(cid).merged)


def os_pid_namespace(pid: int) -> str | None:
    """The pid namespace of ``pid`` (``pid:[...]``), None if unreadable."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
