"""``RUN``: a container on the step's filesystem, through the runtime; its upper dir is the layer.

The process gets the image's Env plus the ARGs in scope that ENV does not set (BuildKit's
rule), ``PATH`` and ``HOME`` defaulted when absent, the image's ``User`` (resolved in the
rootfs), its ``WorkingDir`` (created first, as BuildKit does) and argv: exec form as
written, shell form through ``SHELL`` (default ``/bin/sh -c``); heredocs as BuildKit runs them
(a single heredoc starting with ``#!`` becomes a script mounted at ``/dev/pipes/<name>``).
/proc, /dev, /sys, /dev/shm, /etc/hosts, /etc/resolv.conf and /etc/hostname come from the
runtime as mounts whose mount points live in the step's init layer, so none reaches the layer
(those the image lacks are found before the step's overlay is mounted: it is mounted once).
Network: ``--network`` of the instruction, else the build's (host by default, as Kaniko).

The cache key holds the parent chain, argv, the full process env, user, workdir, network and
the mounts' keys. A non-zero exit is a BuildError with BuildKit's wording and the last output
lines as its hint.
"""

from __future__ import annotations

import collections
import contextlib
import os
import stat
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lamina.build.imageconfig import DEFAULT_SHELL
from lamina.build.mounts import RunMounts, mount_key, prepare_mounts
from lamina.build.progress import Vertex
from lamina.build.steps.base import BuildEnv, StageState, lookup, record
from lamina.build.workspace import StepFS
from lamina.dockerfile.heredoc import chomp_heredoc_content, maybe_heredoc
from lamina.dockerfile.instructions import Run
from lamina.errors import BuildError, ContainerError
from lamina.runtime import BindMount, ContainerSpec, ProcessSpec, Runtime, resolve_user
from lamina.runtime import select_runtime as _select
from lamina.runtime.bundle import resolve_partial, write_bundle
from lamina.runtime.defaults import MOUNTS
from lamina.runtime.etcfiles import write_etc_files
from lamina.runtime.spec import NetworkMode, mount_destinations

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME = "buildkitsandbox"
TAIL_LINES = 10
#: the files every RUN gets bound over (:func:`lamina.runtime.etcfiles.write_etc_files`)
ETC_MOUNTPOINTS = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")
_runtime_lock = threading.Lock()


def known_mountpoints() -> list[tuple[str, bool]]:
    """The mount points of every RUN's bundle, known before it is written: the runtime's
    default mounts (those not below another) and the /etc files. The step's ``init`` lower
    is planned with them, so the overlay is mounted once; the bundle's own list is checked
    after it is written (``RUN --mount`` targets, anything the plan could not settle)."""
    dirs = mount_destinations({"mounts": [dict(m) for m in MOUNTS]})
    return [*dirs, *((path, False) for path in ETC_MOUNTPOINTS)]


def run_argv(instr: Run, config: Mapping[str, Any]) -> tuple[list[str], tuple[str, str] | None]:
    """(argv, script) for a RUN: ``script`` = (name, data) of a ``#!`` heredoc to mount."""
    args = list(instr.cmdline or ())
    script = None
    if instr.files:
        if len(args) == 1 and instr.prepend_shell and maybe_heredoc(args[0]) is not None:
            first = instr.files[0]
            data = chomp_heredoc_content(first.data) if first.chomp else first.data
            if data.startswith("#!"):
                script = (first.name, data)
                args = [f"/dev/pipes/{first.name}"]
            else:
                args = [data]
        else:
            text = args[0] if args else ""
            for f in instr.files:
                text += "\n" + f.data + f.name
            args = [text]
    if instr.prepend_shell:
        shell = list(config.get("Shell") or DEFAULT_SHELL)
        args = [*shell, " ".join(args)]
    return args, script


def process_env(config: Mapping[str, Any], visible: Mapping[str, str]) -> list[str]:
    """The RUN environment: image Env, then ARGs in scope not set by ENV; PATH defaulted."""
    env = list(config.get("Env") or [])
    keys = {e.partition("=")[0] for e in env}
    env += [f"{k}={v}" for k, v in visible.items() if k not in keys]
    if "PATH" not in keys and "PATH" not in visible:
        env.append(f"PATH={DEFAULT_PATH}")
    return env


def history_text(argv: list[str], state: StageState, visible: Mapping[str, str]) -> str:
    """``RUN |2 A=1 B=2 /bin/sh -c make`` (BuildKit's runCommandString)."""
    seen: dict[str, str] = {}
    for name in state.arg_names:
        seen[name] = f"{name}={visible.get(name, '')}"
    prefix = [f"|{len(seen)}", *seen.values()] if seen else []
    return "RUN " + " ".join([*prefix, *argv])


def runtime_for(env: BuildEnv) -> Runtime:
    """The runtime this build uses (chosen once; ``--isolation``/``--runtime``)."""
    with _runtime_lock:
        cached: Runtime | None = getattr(env, "_runtime", None)
        if cached is not None:
            return cached
        state_dir = env.store.root / "runtime"
        if env.isolation == "chroot":
            runtime = _select("native", state_dir=state_dir)
        elif env.isolation == "oci":
            runtime = _select(env.runtime_name or "crun", state_dir=state_dir)
        else:
            runtime = _select(env.runtime_name, state_dir=state_dir)
        env._runtime = runtime  # type: ignore[attr-defined]
        return runtime


def run_step(
    env: BuildEnv, state: StageState, instr: Run, visible: Mapping[str, str], vertex: Vertex
) -> None:
    """Execute one RUN (or take it from the cache) and update ``state``; adds history."""
    argv, script = run_argv(instr, state.config)
    penv = process_env(state.config, visible)
    user = str(state.config.get("User") or "")
    cwd = str(state.config.get("WorkingDir") or "/")
    network = instr.network if instr.network in ("host", "none") else env.network
    key = env.cache_key(
        "run", state.chain, argv, penv, user, cwd, network, script,
        mount_key(env, instr.mounts, cwd),
    )  # fmt: skip
    hit = lookup(env, state, key, vertex)
    if hit is None:
        env.ensure_layer(state.chain)
        with StepFS(env.store, state.chain, mountpoints=known_mountpoints()) as fs:
            _execute(env, fs, instr, argv, penv, user, cwd, network, script, vertex)
            added = record(env, state, key, fs.commit(epoch=env.epoch))
        hit = added
        vertex.done()
    state.add_history(
        history_text(argv, state, visible) + " # buildkit", env.created, empty=not hit
    )


def _execute(
    env: BuildEnv, fs: StepFS, instr: Run, argv: list[str], penv: list[str], user: str,
    cwd: str, network: str, script: tuple[str, str] | None, vertex: Vertex,
) -> None:  # fmt: skip
    scratch = fs.dir / "run"
    scratch.mkdir(mode=0o700)
    try:
        who = resolve_user(fs.rootfs, user)
    except ContainerError as exc:
        raise BuildError(exc.message) from exc
    if not _check_cwd(fs.rootfs, cwd):
        from lamina.build.copy import ensure_dir  # a missing WORKDIR is made as COPY makes it

        ensure_dir(fs.rootfs, cwd)
    with contextlib.ExitStack() as stack:
        mounts = prepare_mounts(env, instr.mounts, cwd, scratch, stack)
        if script is not None:
            mounts.binds.append(_script_mount(scratch, *script))
        if not any(e.startswith("HOME=") for e in penv):
            penv = [*penv, f"HOME={who.home}"]
        penv += [f"{k}={v}" for k, v in mounts.env.items()]
        process = ProcessSpec(
            args=tuple(argv), env=tuple(penv), cwd=cwd, uid=who.uid, gid=who.gid,
            additional_gids=who.additional_gids,
        )  # fmt: skip
        spec = _spec(fs.rootfs, process, network, mounts, scratch)
        cid = f"lamina-build-{os.urandom(8).hex()}"  # secrets.token_hex, without hmac
        bundle = write_bundle(scratch / "bundle", spec, container_id=cid)
        fs.provide_mountpoints(mount_destinations(bundle.read_config()))
        runtime = runtime_for(env)
        env.check_cancelled()
        env.track(cid, runtime)
        try:
            status, tail = _run_logged(runtime, bundle, cid, vertex)
        finally:
            env.track(cid, None)
        env.check_cancelled()
    if status != 0:
        raise BuildError(
            f'process "{" ".join(argv)}" did not complete successfully: exit code: {status}',
            hint="\n".join(tail) if tail else None,
        )


def _check_cwd(rootfs: Path, cwd: str) -> bool:
    """Refuse a working directory that resolves into /proc or /sys: those are the runtime's
    kernel mounts, and ``/proc/self/fd/N`` there would be a descriptor of the runtime itself
    (CVE-2024-21626). True when it already is a directory (every link resolved inside
    ``rootfs``): then there is nothing to create."""
    try:
        resolved = resolve_partial(rootfs, cwd)
        rel = resolved.relative_to(rootfs).as_posix()
    except (OSError, ValueError) as exc:
        raise BuildError(f"working directory {cwd}: cannot be resolved in the image") from exc
    top = rel.split("/", 1)[0]
    if top in ("proc", "sys"):
        raise BuildError(
            f"working directory {cwd} is inside /{top}, which the runtime mounts",
            hint="use a WORKDIR outside /proc and /sys",
        )
    try:
        return stat.S_ISDIR(os.lstat(resolved).st_mode)
    except OSError:
        return False


def _script_mount(scratch: Path, name: str, data: str) -> BindMount:
    path = scratch / "pipes" / name
    path.parent.mkdir(mode=0o755)
    path.write_text(data)
    path.chmod(0o755)
    return BindMount(source=path, destination=f"/dev/pipes/{name}", readonly=True)


def _spec(
    rootfs: Path, process: ProcessSpec, network: str, mounts: RunMounts, scratch: Path
) -> ContainerSpec:
    net: NetworkMode = "none" if network == "none" else "host"
    etc = write_etc_files(scratch / "etc", hostname=HOSTNAME, network=net)
    return ContainerSpec(
        rootfs=rootfs,
        process=process,
        hostname=HOSTNAME,
        network=net,
        binds=tuple(mounts.binds),
        tmpfs=tuple(mounts.tmpfs),
        etc_files=etc,
    )


def _run_logged(runtime: Runtime, bundle: Any, cid: str, vertex: Vertex) -> tuple[int, list[str]]:
    """Run the container, streaming each output line to ``vertex``; (status, last lines)."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    read_fd, write_fd = os.pipe()

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as r:
            for raw in r:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                tail.append(line)
                vertex.log(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        status = runtime.run(
            bundle, cid, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd
        )
    except ContainerError as exc:
        raise BuildError(exc.message, hint=exc.hint) from exc
    finally:
        os.close(write_fd)
        reader.join(timeout=30)
    return status, list(tail)
