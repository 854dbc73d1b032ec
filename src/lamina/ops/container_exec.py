"""Verbs on running containers: ``exec``, ``kill``, ``stop``, ``wait``, ``top``, ``logs``.

None of them holds the container lock while waiting: ``stop`` sends its signals through the
runtime and polls :func:`~lamina.ops.container_state.wait_stopped`, which trusts the monitor
to record the exit (or declares a state stale when the monitor is gone). ``exec`` processes
are not logged (as Docker); their status is returned. ``top`` finds the container's processes
by pid namespace (every process whose ``/proc/<pid>/ns/pid`` is the init's) and shows the
host's ``ps`` output for them, as Docker does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal as _signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from typing import Any

from lamina.errors import ContainerError, LaminaError, UsageError
from lamina.ops import container_state as cs
from lamina.ops.container_spec import process_spec
from lamina.store import Store

#: seconds ``stop`` waits by default before SIGKILL (Docker's default)
STOP_TIMEOUT = 10


def parse_signal(sig: str | int) -> int:
    """``KILL``, ``SIGKILL``, ``9`` -> 9; UsageError when unknown."""
    text = str(sig).upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else f"SIG{text}"
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise UsageError(f"invalid signal: {sig}") from None


def exec_(
    store: Store, ref: str, argv: tuple[str, ...], *, user: str | None = None,
    workdir: str | None = None, env: tuple[str, ...] = (), tty: bool = False,
    interactive: bool = False, detach: bool = False,
) -> int:  # fmt: skip
    """``docker exec``: run ``argv`` in the running container; its status (0 when detached)."""
    if not argv:
        raise UsageError("exec: no command given")
    cid = store.containers.resolve(ref)
    cs.require_running(store, cid)
    config = store.containers.read(cid)
    rootfs = cs.rootfs_of(store, cid)
    proc = process_spec(
        rootfs, config["Config"], argv, user=user, workdir=workdir, env=env, tty=tty,
        host=config["HostConfig"],
    )  # fmt: skip
    runtime = cs.container_runtime(store, config)
    if detach:
        from lamina.runtime.monitor import daemonize

        def body(fd: int) -> None:
            os.close(fd)
            with contextlib.suppress(LaminaError, OSError):
                runtime.exec(cid, proc, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip

        _pid, report = daemonize(body)
        os.close(report)
        return 0
    stdin: Any = None if interactive else subprocess.DEVNULL
    return runtime.exec(cid, proc, stdin=stdin, stdout=None, stderr=None)


def kill(store: Store, ref: str, sig: int = _signal.SIGKILL) -> str:
    """``docker kill``: send ``sig`` to the container's init; ContainerError if not running."""
    cid = store.containers.resolve(ref)
    state = cs.require_running(store, cid)
    config = store.containers.read(cid)
    try:
        cs.container_runtime(store, config).kill(cid, sig)
    except ContainerError:
        # The runtime may have forgotten it already; signal the recorded pid directly.
        pid = int(state.get("Pid") or 0)
        if not cs.process_alive(pid, state.get("PidStart")):
            raise ContainerError(f"container {ref} is not running") from None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return cid


def stop(store: Store, ref: str, timeout: int | None = None, *, signal: int | None = None) -> str:
    """``docker stop``: the stop signal (``signal``, else the container's ``StopSignal``, else
    SIGTERM), then SIGKILL after ``timeout`` seconds. Idempotent."""
    cid = store.containers.resolve(ref)
    state = cs.refresh(store, cid)
    if state.get("Status") != "running":
        return cid
    config = store.containers.read(cid)
    sig = (
        signal
        if signal is not None
        else parse_signal(config["Config"].get("StopSignal") or "SIGTERM")
    )
    if timeout is None:  # `run --stop-timeout`, else Docker's 10 s
        timeout = config["Config"].get("StopTimeout")
    wait = STOP_TIMEOUT if timeout is None else timeout
    with contextlib.suppress(ContainerError):
        kill(store, cid, sig)
    # as Docker, a negative timeout waits for the container however long, never SIGKILLs
    if cs.wait_stopped(store, cid, None if wait < 0 else float(wait)) is not None:
        return cid
    with contextlib.suppress(ContainerError):
        kill(store, cid, _signal.SIGKILL)
    if cs.wait_stopped(store, cid, 30.0) is None:
        raise ContainerError(f"stopping container {ref}: it did not stop after SIGKILL")
    return cid


def wait(store: Store, ref: str) -> int:
    """``docker wait``: block until the container stops; its exit code."""
    cid = store.containers.resolve(ref)
    state = cs.wait_stopped(store, cid, None)
    return int((state or {}).get("ExitCode", 0))


def container_pids(state: dict[str, Any]) -> list[int]:
    """Pids (host view) of every process in the container's pid namespace, sorted."""
    init = int(state.get("Pid") or 0)
    ns = cs.os_pid_namespace(init) if init > 0 else None
    if ns is None:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and cs.os_pid_namespace(int(entry)) == ns:
            pids.append(int(entry))
    return sorted(pids)


def top(store: Store, ref: str, ps_args: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]]]:
    """``docker top``: (titles, rows) of ``ps ARGS`` (default ``-ef``) for the container."""
    cid = store.containers.resolve(ref)
    state = cs.require_running(store, cid)
    pids = set(container_pids(state))
    args = list(ps_args) or ["-ef"]
    proc = subprocess.run(["ps", *args], capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise ContainerError(f"top: ps {' '.join(args)} failed: {err}")
    lines = proc.stdout.decode(errors="replace").splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise ContainerError(f"top: ps {' '.join(args)}: no PID column in its output")
    col = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        with contextlib.suppress(IndexError, ValueError):
            if int(fields[col]) in pids:
                rows.append(fields)
    return titles, rows


def iter_logs(store: Store, ref: str, *, follow: bool = False, tail: int | None = None,
              since: str | None = None, until: str | None = None,
              ) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The container's log entries (``log``, ``stream``, ``time``) in order; with ``follow``,
    new ones as they come until the container stops. ``since``/``until`` (RFC 3339 UTC, as
    :func:`log_time` makes them) keep entries at or after / before those times; ``tail``
    counts what is left. The file is read line by line (only ``tail`` lines are held)."""
    import collections

    cid = store.containers.resolve(ref)
    path = store.containers.log_path(cid)
    offset = 0
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        kept: collections.deque[dict[str, Any]] = collections.deque(maxlen=tail)
        for entry in _decode(f):
            if _in_window(entry, since, until):
                if tail is None:
                    yield entry
                else:
                    kept.append(entry)
        offset = f.tell()
        yield from kept
    if until is not None:
        return
    while follow:
        stopped = cs.refresh(store, cid).get("Status") != "running"
        with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            new = _decode(complete.splitlines(keepends=True))
            yield from (e for e in new if _in_window(e, since, None))
        if stopped:
            return
        time.sleep(0.1)


def log_time(text: str, now: float | None = None) -> str:
    """``--since``/``--until`` as Docker takes them — RFC 3339 (``2026-11-29T03:00:00Z``, a
    date, or with an offset), Unix seconds (``1764385200.5``), or a duration before now
    (``10m``, ``1h30m``, ``42s``) — as a UTC time comparable with log entry times."""
    import datetime
    import re

    from lamina.runtime.monitor import rfc3339_ns

    now = time.time() if now is None else now
    value = text.strip()
    stamp: float | None = None
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", value)
    if value and m is not None and any(m.groups()):
        h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
        stamp = now - (h * 3600 + mi * 60 + sec)
    elif re.fullmatch(r"\d+(?:\.\d+)?", value):
        stamp = float(value)
    else:
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"invalid time {text!r}", hint="use RFC 3339, Unix seconds or a duration (10m)"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        stamp = parsed.timestamp()
    whole = int(stamp // 1)
    return rfc3339_ns(whole * 1_000_000_000 + round((stamp - whole) * 1e9))


def _in_window(entry: dict[str, Any], since: str | None, until: str | None) -> bool:
    when = _fixed_width(str(entry.get("time", "")))
    return (since is None or when >= since) and (until is None or when < until)


def _fixed_width(stamp: str) -> str:
    """Entry times with nine fractional digits compare as strings (lamina writes nine)."""
    head, dot, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{(frac if dot else '').ljust(9, '0')[:9]}Z"


def _decode(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                yield doc
