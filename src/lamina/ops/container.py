"""Container lifecycle verbs: ``create``, ``start``, ``run``, ``rm`` (no daemon).

A container is created from an image as Docker's overlay2 driver would (see
:mod:`lamina.store.containers`); its options become Docker's ``Config``/``HostConfig``
objects in ``config.v2.json``. Starting it (:func:`start`):

1. under the container lock: refresh a stale state, mount the rootfs, write the
   hosts/resolv.conf/hostname files into the container dir, write the OCI bundle, check the
   command (127/126 before anything runs) and mark the state "running" (pid 0 = starting,
   the starting process as its monitor);
2. outside any lock: the monitor — this process for an attached run, a double-forked
   daemon (:func:`lamina.runtime.monitor.daemonize`) for a detached one — runs
   :func:`lamina.runtime.monitor.supervise`, records the pid when the process runs and the
   exit status when it ends, unmounts, and removes an ``--rm`` container.

Failures after step 1 undo it: the rootfs is unmounted and the state says "exited" with the
error; nothing is left mounted and no runtime state remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import field
from typing import Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ContainerError, LaminaError, NotFound, UsageError
from lamina.ops import container_state as cs
from lamina.ops.container_spec import container_spec
from lamina.runtime import Runtime, open_bundle, resolve_command, write_bundle
from lamina.runtime.monitor import JsonLog, daemonize, now_rfc3339, supervise
from lamina.store import Store
from lamina.store.containers import new_container_id


@lazy_dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Options of ``create``/``run`` (docker's flags, already split)."""

    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    env: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None
    hostname: str | None = None
    network: str = "none"
    read_only: bool = False
    init: bool = False
    auto_remove: bool = False
    tty: bool = False
    interactive: bool = False
    runtime: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: the pass-through flags of :mod:`lamina.ops.runflags`, unparsed
    add_hosts: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    shm_size: str | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    stop_signal: str | None = None
    stop_timeout: int | None = None
    #: ``--cidfile``: must not exist; receives the id once the container is created
    cidfile: str | None = None


def create(store: Store, opts: RunOptions) -> str:
    """``docker create``: the container's layers and record; returns its id."""
    from lamina.ops.container_config import build_config, random_name

    if opts.cidfile is not None and os.path.lexists(opts.cidfile):
        raise ContainerError(
            f"container ID file found, make sure the other container isn't running or delete "
            f"{opts.cidfile}"
        )
    image = store.get_image(opts.image)
    cid = new_container_id()
    config = build_config(store, cid, image, opts)
    # As Docker, HostConfig.Runtime names the runtime from create on (an unknown one fails
    # here); the first start then has no config.v2.json to rewrite.
    config["HostConfig"]["Runtime"] = cs.container_runtime(store, config).name
    name = opts.name or random_name()
    if opts.name is not None:
        _check_name(opts.name)
    config["Name"] = f"/{name}"
    store.containers.create(cid, image.record.top_layer, config, cs.new_state())
    if opts.cidfile is not None:
        try:
            with open(opts.cidfile, "x") as f:  # exclusive: a racing run must not share it
                f.write(cid)
        except OSError as exc:
            remove(store, cid, force=True)
            raise ContainerError(f"writing --cidfile {opts.cidfile}: {exc.strerror}") from None
    return cid


def _check_name(name: str) -> None:
    ok = name[:1].isalnum() and all(c.isalnum() or c in "_.-" for c in name)
    if not ok:
        raise UsageError(
            f'invalid container name "{name}", only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
        )


@lazy_dataclass
class Attach:
    """Where an attached container's streams go (fds owned by the caller)."""

    stdin: int | None = None
    stdout: int | None = 1
    stderr: int | None = 2


def _prepare(store: Store, cid: str) -> tuple[Runtime, Any, dict[str, Any]]:
    """Step 1 of the module docstring; returns (runtime, bundle, config)."""
    with store.containers.locked(cid):
        state = cs.refresh_locked(store, cid)
        if state.get("Status") == "running":
            raise ContainerError(f"container {cid[:12]} is already running")
        config = store.containers.read(cid)
        runtime = cs.container_runtime(store, config)
        with contextlib.suppress(LaminaError, OSError, subprocess.SubprocessError):
            runtime.delete(cid, force=True)  # a leftover of a crash
        store.backend.unmount(store.containers.dirs(cid).merged)
        auto_remove = bool(config.get("HostConfig", {}).get("AutoRemove"))
        rootfs = cs.ensure_mounted(store, cid, volatile=auto_remove)
        try:
            spec = container_spec(store, cid, config, rootfs)
            bundle = write_bundle(store.containers.dir(cid) / "bundle", spec, container_id=cid)
            cfg = bundle.read_config()
            resolve_command(bundle.rootfs, cfg["process"], cfg.get("mounts"))
        except LaminaError as exc:
            store.backend.unmount(store.containers.dirs(cid).merged)
            code = exc.exit_code if exc.exit_code in (126, 127) else 125
            state.update(Status="exited" if state["StartedAt"] != cs.ZERO_TIME else "created",
                         ExitCode=code, Error=exc.message)  # fmt: skip
            store.containers.write(cid, state, "state.json")
            raise
        host = config.setdefault("HostConfig", {})
        if host.get("Runtime") != runtime.name:  # recorded at the first start only
            host["Runtime"] = runtime.name
            store.containers.write(cid, config)
        me = os.getpid()
        state.update(
            Status="running", Running=True, Pid=0, ExitCode=0, Error="", MonitorPid=me,
            MonitorStart=cs.process_identity(me), BootId=cs.boot_id(), StartedAt=now_rfc3339(),
            FinishedAt=cs.ZERO_TIME,
        )  # fmt: skip
        store.containers.write(cid, state, "state.json")
    return runtime, bundle, config


def _set_state(store: Store, cid: str, **changes: Any) -> None:
    with store.containers.locked(cid):
        state = store.containers.read(cid, "state.json")
        state.update(changes)
        store.containers.write(cid, state, "state.json")


def _monitor(
    store: Store, cid: str, runtime: Runtime, bundle: Any, config: dict[str, Any],
    attach: Attach | None, report: int | None,
) -> int:  # fmt: skip
    """Supervise the container to its end; record everything; return its status."""
    me = os.getpid()
    started: list[int] = []

    def on_started(pid: int) -> None:
        started.append(pid)
        _set_state(store, cid, Pid=pid, PidStart=cs.process_identity(pid), MonitorPid=me,
                   MonitorStart=cs.process_identity(me))  # fmt: skip
        if report is not None:
            _report(report, {"ok": True, "pid": pid})

    log = JsonLog(store.containers.log_path(cid))
    tty = bool(config["Config"].get("Tty"))
    stdin, keep = _stdin(attach, config)
    error, status = "", 0
    restore = _proxy_signals(started) if attach is not None else None
    try:
        status = supervise(
            runtime, bundle, cid, log=log, on_started=on_started, stdin=stdin, terminal=tty,
            forward_out=attach.stdout if attach else None,
            forward_err=attach.stderr if attach else None, checked=True,
        )  # fmt: skip
    except LaminaError as exc:
        status = exc.exit_code if exc.exit_code in (126, 127) else 125
        error = exc.message
        if report is not None and not started:
            _report(report, {"error": exc.message, "code": status})
        if attach is not None and not started:
            raise
    finally:
        log.close()
        if keep is not None:
            os.close(keep)
        if restore is not None:
            restore()
        _finish(store, cid, config, status, error)
    return status


def _stdin(attach: Attach | None, config: dict[str, Any]) -> tuple[int | None, int | None]:
    """(the container's stdin fd, an fd to close afterwards)."""
    if attach is not None and attach.stdin is not None:
        return attach.stdin, None
    if config["Config"].get("OpenStdin") or config["Config"].get("Tty"):
        r, w = os.pipe()  # kept open by the monitor: the container's stdin never ends
        return r, w
    return None, None


def _proxy_signals(started: list[int]) -> Any:
    """Forward SIGINT/SIGTERM/SIGHUP to the container's init (docker's --sig-proxy)."""

    def forward(signum: int, _frame: object) -> None:
        if started:
            with contextlib.suppress(OSError):
                os.kill(started[0], signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def _report(fd: int, doc: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(doc) + "\n").encode())


def _finish(store: Store, cid: str, config: dict[str, Any], status: int, error: str) -> None:
    """Record the exit, release the rootfs, remove an --rm container."""
    try:
        with store.containers.locked(cid):
            state = store.containers.read(cid, "state.json")
            state.update(Status="exited", Running=False, Pid=0, ExitCode=status, Error=error,
                         FinishedAt=now_rfc3339(), MonitorPid=0)  # fmt: skip
            store.containers.write(cid, state, "state.json")
            with contextlib.suppress(OSError):
                remove_bundle_mountpoints(store, cid)
            store.backend.unmount(store.containers.dirs(cid).merged)
    except NotFound:  # removed meanwhile (rm -f): make sure nothing stays mounted
        with contextlib.suppress(LaminaError, OSError):
            store.containers.remove_layers(cid)
        return
    if config.get("HostConfig", {}).get("AutoRemove"):
        store.containers.remove(cid)


def remove_bundle_mountpoints(store: Store, cid: str) -> None:
    """Remove mount points the runtime made in the rootfs (when its delete did not)."""
    from lamina.runtime.bundle import remove_mountpoints

    path = store.containers.dir(cid) / "bundle"
    # No record, nothing to remove (the usual case): the config need not be read then.
    if (path / "mountpoints.json").exists() and (path / "config.json").exists():
        remove_mountpoints(open_bundle(path))


def start(store: Store, cid: str, *, attach: Attach | None = None) -> int:
    """Start ``cid``: attached (returns its exit status) or detached (returns 0 once running).

    Detached: returns after the monitor reports the process running; a start failure is
    raised here (CommandNotFound etc.) with the monitor's message.
    """
    runtime, bundle, config = _prepare(store, cid)
    if attach is not None:
        return _monitor(store, cid, runtime, bundle, config, attach, None)
    try:
        _pid, report = daemonize(
            lambda fd: _exit_after(_monitor, store, cid, runtime, bundle, config, None, fd)
        )
    except BaseException:
        _finish(store, cid, config, 125, "the monitor could not start")
        raise
    with os.fdopen(report, "rb") as f:
        line = f.readline()
    doc = json.loads(line) if line.strip() else {"error": "the monitor exited early", "code": 125}
    if "error" in doc:
        exc: ContainerError = ContainerError(f"starting container {cid[:12]}: {doc['error']}")
        exc.exit_code = int(str(doc.get("code", 125)))
        raise exc
    return 0


def _exit_after(func: Any, *args: Any) -> None:
    """Run the monitor in the daemon; never raise into the forked child's cleanup."""
    with contextlib.suppress(BaseException):
        func(*args)


def run(store: Store, opts: RunOptions, *, detach: bool, attach: Attach | None) -> tuple[str, int]:
    """``docker run``: create + start; returns (id, status) — status 0 when detached."""
    cid = create(store, opts)
    try:
        status = start(store, cid, attach=None if detach else attach or Attach())
    except LaminaError:
        if opts.auto_remove:
            with contextlib.suppress(LaminaError, OSError):
                remove(store, cid, force=True)
        raise
    return cid, status


def remove(store: Store, ref: str, *, force: bool = False) -> str:
    """``docker rm [-f]``: stop (with ``force``), unmount and delete everything; returns id."""
    cid = store.containers.resolve(ref)
    state = cs.refresh(store, cid)
    if state.get("Status") == "running":
        if not force:
            exc = ContainerError(
                f"cannot remove container {ref}: container is running",
                hint="stop the container before removing or force remove (rm -f)",
            )
            exc.exit_code = 1
            raise exc
        from lamina.ops.container_exec import kill

        with contextlib.suppress(ContainerError):
            kill(store, cid, signal.SIGKILL)
        cs.wait_stopped(store, cid, 30.0)
    try:
        with store.containers.locked(cid):
            config = store.containers.read(cid)
            cs.release_rootfs(store, cid, config)
            store.containers.remove(cid)
    except NotFound:
        pass
    return cid


def list_ids(store: Store, *, all_: bool) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(id, config, refreshed state) of containers, newest first (running only unless all_)."""
    out = []
    for cid in store.containers.ids():
        try:
            config = store.containers.read(cid)
            state = cs.refresh(store, cid)
        except NotFound:
            continue
        if all_ or state.get("Status") == "running":
            out.append((cid, config, state))
    out.sort(key=lambda item: str(item[1].get("Created", "")), reverse=True)
    return out


def resolve_many(store: Store, refs: Sequence[str]) -> list[str]:
    """Ids for ``refs``; NotFound names every missing one."""
    ids, missing = [], []
    for ref in refs:
        try:
            ids.append(store.containers.resolve(ref))
        except NotFound:
            missing.append(ref)
    if missing:
        raise NotFound(f"no such container: {', '.join(missing)}")
    return ids


__all__ = ["Attach", "RunOptions", "create", "list_ids", "remove", "run", "start"]
