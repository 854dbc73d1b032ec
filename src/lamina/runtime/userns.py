"""Rootless mode: one user + mount namespace pair per (user, store), held open by a pause process.

An unprivileged lamina needs mounts (the overlay rootfs of ``run``/``exec``/``build``) and ids
other than its own (image files owned by root or by uid 1000). As podman does, it gets both
from a user namespace whose maps are: container id 0 -> the caller, ids 1.. -> the caller's
``/etc/subuid`` (``/etc/subgid``) range, written by the setuid ``newuidmap``/``newgidmap``
helpers. A user without ranges gets a single-id map (0 -> the caller, nothing else; the
caller is told so through :attr:`Entered.single_id`).

Which process is in which namespace:

- the *pause process* (``lamina-pause``, an exec of ``sleep infinity`` with stdio on
  /dev/null, cwd ``/``, in its own session) unshares the user and mount namespaces itself and
  then only sleeps, so the pair outlives every lamina invocation. Its identity — pid, start
  time, boot id and the two namespaces' inode numbers — is recorded in
  ``<state>/pause.json`` (the CLI uses ``<store root>/userns``). The mount namespace starts as
  a copy of the host's mounts; shared ones become slaves (the kernel's rule for a namespace
  owned by a less privileged user namespace), so later host mounts appear in it only below
  shared mounts, and mounts made in it never leak out.
- every lamina CLI process of that user working on that store calls :func:`enter` before
  anything else, while single-threaded: it joins the pause's namespaces with setns(2) and
  from then on is uid 0 of the namespace with full capabilities there. Everything it starts
  (detached monitors, runc, containers, build steps) inherits both namespaces, so overlay
  mounts live in the pause's mount namespace: every later invocation sees them, the host does
  not (it reaches them through ``/proc/<pause>/root``). Containers get no nested user
  namespace: their ids are this namespace's ids.

Who creates and who destroys: :func:`enter` creates the pause process, under the flock
``<state>/lock``, when none is recorded or the recorded one is stale, so concurrent
invocations never make two pairs. Nothing stops it implicitly; :func:`stop_pause` kills it.
The namespaces, and every mount in them, vanish with their last process.

Stale pids: a recorded pause is stale when its boot id is not this boot's, or its pid is gone,
or the pid now has another start time or another user namespace (a reused pid). Then, if a
process of the caller still runs in the recorded namespaces (a detached container's monitor),
:func:`enter` joins them through that process and starts a new pause inside, so running
containers, their mounts and ``exec`` keep working; otherwise it creates a new pair — the old
mounts died with the old namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from lamina._internal.fileio import write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.lock import flocked
from lamina.errors import ContainerError
from lamina.runtime import linux
from lamina.runtime.idmap import IDMapping, rootless_mappings
from lamina.runtime.procstat import process_starttime

RECORD = "pause.json"
#: seconds one invocation waits for another that is creating the namespace
LOCK_TIMEOUT = 60.0
#: seconds a helper (newuidmap, newgidmap) may take
HELPER_TIMEOUT = 30


@lazy_dataclass(frozen=True, kw_only=True)
class HostUser:
    """The unprivileged caller, as the host sees it."""

    uid: int
    gid: int
    name: str


@lazy_dataclass(frozen=True, kw_only=True)
class Entered:
    """What :func:`enter` did: the pause pid, whether it made the pair or a new pause, and
    whether the namespace has the single-id map (only reported when ``created``)."""

    pause_pid: int
    created: bool
    single_id: bool


def enter(
    state_dir: Path, user: HostUser, *, newuidmap: str | None, newgidmap: str | None,
    subuid: Path = Path("/etc/subuid"), subgid: Path = Path("/etc/subgid"),
) -> Entered:  # fmt: skip
    """Join (creating it when needed) the namespace pair recorded in ``state_dir``.

    Must run while the process is single-threaded. Afterwards the process is uid 0 of the
    namespace and its working directory is the same path as before. ``newuidmap``/``newgidmap``
    are the helpers' paths (None: not installed). Raises ContainerError with a hint when the
    pair cannot be made (no helpers for a user with ranges, user namespaces disabled).
    """
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with flocked(state_dir / "lock", timeout=LOCK_TIMEOUT):
        record = read_record(state_dir)
        pid = live_pause(record)
        if pid is not None:
            _join(pid)
            result = Entered(pause_pid=pid, created=False, single_id=False)
        else:
            result = _replace(state_dir, record, user, newuidmap, newgidmap, subuid, subgid)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    return result


def _replace(
    state_dir: Path, record: dict[str, Any] | None, user: HostUser, newuidmap: str | None,
    newgidmap: str | None, subuid: Path, subgid: Path,
) -> Entered:  # fmt: skip
    """A stale or missing pause: adopt a survivor's namespaces, or make a new pair; join."""
    survivor = find_survivor(record) if record is not None else None
    if survivor is not None:
        _join(survivor)
        pid = _spawn_pause(unshare=False)
        _write_record(state_dir, pid)
        return Entered(pause_pid=pid, created=False, single_id=False)
    uid_maps, gid_maps = rootless_mappings(
        uid=user.uid, gid=user.gid, name=user.name, subuid=subuid, subgid=subgid
    )
    single = len(uid_maps) == 1
    if not single and (newuidmap is None or newgidmap is None):
        raise ContainerError(
            f"creating the rootless user namespace for {user.name}: newuidmap/newgidmap not found",
            hint="install them (apt-get install uidmap), or remove the user's /etc/subuid "
            "ranges to run with a single-id map",
        )
    pid = _spawn_pause(unshare=True, maps=(uid_maps, gid_maps, newuidmap, newgidmap, user))
    try:
        _write_record(state_dir, pid)
        _join(pid)
    except BaseException:
        _kill(pid)
        raise
    return Entered(pause_pid=pid, created=True, single_id=single)


def read_record(state_dir: Path) -> dict[str, Any] | None:
    """The recorded pause (``pid``, ``start``, ``boot``, ``userns``, ``mntns``), or None."""
    try:
        doc = json.loads((state_dir / RECORD).read_bytes())
    except (OSError, ValueError):
        return None
    keys = ("pid", "start", "userns", "mntns")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), int) for k in keys):
        return None
    return doc


def live_pause(record: dict[str, Any] | None) -> int | None:
    """The recorded pause's pid when it still runs (same boot, start time and namespace)."""
    if record is None or record.get("boot") != boot_id():
        return None
    pid = int(record["pid"])
    try:
        if process_starttime(pid) != record["start"]:
            return None
        if _ns_inode(pid, "user") != record["userns"] or _zombie(pid):
            return None
    except (OSError, ValueError, IndexError):
        return None
    return pid


def find_survivor(record: dict[str, Any] | None) -> int | None:
    """A process of this user still in the recorded namespaces (same boot), or None."""
    if record is None or record.get("boot") != boot_id():
        return None
    me = os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}").st_uid != me:
                continue
            inodes = (_ns_inode(pid, "user"), _ns_inode(pid, "mnt"))
            if inodes == (record["userns"], record["mntns"]) and not _zombie(pid):
                return pid
    return None


def stop_pause(state_dir: Path, *, timeout: float = 10.0) -> int | None:
    """Kill the recorded pause process (if it runs) and wait for it; returns its pid.

    The namespaces live on while other processes are in them (running containers).
    """
    pid = live_pause(read_record(state_dir))
    if pid is not None:
        _kill(pid, timeout=timeout)
    return pid


def boot_id() -> str:
    """This boot's id ("" when unknown)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _zombie(pid: int) -> bool:
    """True when ``pid`` has exited and waits to be reaped (its ``/proc`` entry remains)."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2 :].startswith(b"Z")


def _kill(pid: int, *, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _zombie(pid):
                return
        except (OSError, ValueError):
            return
        time.sleep(0.01)


def _write_record(state_dir: Path, pid: int) -> None:
    doc = {
        "pid": pid,
        "start": process_starttime(pid),
        "boot": boot_id(),
        "userns": _ns_inode(pid, "user"),
        "mntns": _ns_inode(pid, "mnt"),
    }
    write_atomic(state_dir / RECORD, json.dumps(doc).encode(), mode=0o600, durable=False)


def _join(pid: int) -> None:
    """setns(2) into ``pid``'s user then mount namespace (skipping one already joined)."""
    fds = [
        os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in ("user", "mnt")
    ]
    try:
        for fd, kind, flag in ((fds[0], "user", linux.CLONE_NEWUSER),
                               (fds[1], "mnt", linux.CLONE_NEWNS)):  # fmt: skip
            if os.fstat(fd).st_ino == _ns_inode("self", kind):
                continue
            try:
                linux.setns(fd, flag)
            except OSError as exc:
                raise ContainerError(
                    f"joining the rootless {kind} namespace of process {pid}: {exc.strerror}"
                ) from None
    finally:
        for fd in fds:
            os.close(fd)


_Maps = tuple[tuple[IDMapping, ...], tuple[IDMapping, ...], str | None, str | None, HostUser]


def _spawn_pause(*, unshare: bool, maps: _Maps | None = None) -> int:
    """Fork (twice, new session) the pause process; return its pid once it is ready.

    With ``unshare`` it makes new user + mount namespaces and waits for ``maps`` to be written
    (here, from outside, as the kernel requires) before it execs; a failure kills it.
    """
    pid_r, pid_w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked children
        try:
            os.close(pid_r)
            os.close(go_w)
            _pause_child(pid_w, go_r, unshare)
        finally:
            os._exit(1)
    os.close(pid_w)
    os.close(go_r)
    try:
        os.waitpid(child, 0)
        with os.fdopen(pid_r, "rb") as f:
            report = f.read().decode()
        if not report.startswith("pid "):
            errno = int(report.split()[1]) if report.startswith("errno ") else 0
            raise ContainerError(
                "creating the rootless user namespace: unshare: "
                f"{os.strerror(errno) if errno else 'the helper process died'}",
                hint="unprivileged user namespaces must be enabled "
                "(sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)",
            )
        pid = int(report.split()[1])
        try:
            if maps is not None:
                _write_maps(pid, *maps)
            os.write(go_w, b"go")
        except BaseException:
            _kill(pid)
            raise
    finally:
        os.close(go_w)
    return pid


def _pause_child(pid_w: int, go_r: int, unshare: bool) -> None:  # pragma: no cover - forked
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    if unshare:
        try:
            linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
        except OSError as exc:
            os.write(pid_w, f"errno {exc.errno}".encode())
            os._exit(1)
    os.write(pid_w, f"pid {os.getpid()}".encode())
    os.close(pid_w)
    if os.read(go_r, 2) != b"go":
        os._exit(1)
    os.close(go_r)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 1 << 16)
    sleep = shutil.which("sleep", path="/usr/bin:/bin")
    if sleep is not None:
        with contextlib.suppress(OSError):
            os.execv(sleep, ["lamina-pause", "infinity"])
    while True:
        signal.pause()


def _write_maps(
    pid: int, uid_maps: tuple[IDMapping, ...], gid_maps: tuple[IDMapping, ...],
    newuidmap: str | None, newgidmap: str | None, user: HostUser,
) -> None:  # fmt: skip
    """Write ``pid``'s uid/gid maps: directly for one id, else through the setuid helpers."""
    if len(uid_maps) == 1 and len(gid_maps) == 1 and uid_maps[0].size == 1:
        try:
            Path(f"/proc/{pid}/setgroups").write_text("deny")
            Path(f"/proc/{pid}/uid_map").write_text(f"0 {user.uid} 1\n")
            Path(f"/proc/{pid}/gid_map").write_text(f"0 {user.gid} 1\n")
        except OSError as exc:
            raise ContainerError(
                f"creating the rootless user namespace: writing the id map: {exc.strerror}"
            ) from None
        return
    for helper, mappings in ((newuidmap, uid_maps), (newgidmap, gid_maps)):
        assert helper is not None
        args = [str(v) for m in mappings for v in (m.container_id, m.host_id, m.size)]
        proc = subprocess.run(
            [helper, str(pid), *args], capture_output=True, timeout=HELPER_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ContainerError(
                f"creating the rootless user namespace: {os.path.basename(helper)}: "
                f"{lines[-1] if lines else f'exit status {proc.returncode}'}",
                hint=f"check the ranges of {user.name} in /etc/subuid and /etc/subgid",
            )
