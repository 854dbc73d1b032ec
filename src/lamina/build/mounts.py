"""``RUN --mount=...`` -> runtime bind and tmpfs mounts, plus what they add to the cache key.

- ``bind``: a directory or file of the build context (default) or of a stage/image
  (``from=``), read-only unless ``rw``; ``rw`` writes go to a throwaway overlay (BuildKit
  discards them too). Key: the content key of the context source, or the source chain id.
- ``cache``: a persistent directory ``<root>/buildcache/mounts/<sha256(id)>`` (``id``
  defaults to the target), created with ``mode``/``uid``/``gid`` (0755, 0:0 by default);
  ``sharing=locked`` holds an flock on it for the RUN. Its content never enters a key.
- ``tmpfs``: a tmpfs, ``size`` passed on.
- ``secret``: a private 0400 copy (``mode``/``uid``/``gid`` applied) bind-mounted read-only at
  ``/run/secrets/<id>`` or ``target``; with ``env=`` it becomes an environment variable
  instead. A secret that was not given is skipped, unless ``required``.
- ``ssh``: the agent of ``--ssh ID`` (``id`` defaults to ``default``) relayed through a new
  socket (:func:`lamina.build.ssh.forward_agent`; ``mode``/``uid``/``gid``, 0600 0:0 by
  default) bind-mounted at ``target`` or ``/run/buildkit/ssh_agent.N`` (N counts the RUN's
  ssh mounts from 0); ``SSH_AUTH_SOCK`` names the first one (even over an image ENV). A
  missing id skips the mount, unless ``required``. The key holds the id and mount options,
  never the socket path or keys.

Relative targets are taken from the step's working directory. Everything that must be undone
(overlays, locks) is registered on the caller's ExitStack, so the mounts live exactly as long
as the RUN.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from dataclasses import field
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.lock import flocked
from lamina._internal.rootpath import resolve_in_root
from lamina.build.ssh import forward_agent
from lamina.build.steps.base import BuildEnv
from lamina.build.workspace import open_overlay, open_view
from lamina.dockerfile.mounts import Mount
from lamina.errors import BuildError
from lamina.runtime import BindMount, TmpfsMount


@lazy_dataclass
class RunMounts:
    """The runtime mounts of one RUN and extra env (secrets given as ``env=``)."""

    binds: list[BindMount] = field(default_factory=list)
    tmpfs: list[TmpfsMount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _target(m: Mount, workdir: str, default: str = "") -> str:
    target = m.target or default
    if not target:
        raise BuildError(f"mount target is required for {m.type} mounts")
    return posixpath.normpath(posixpath.join(workdir or "/", target))


def prepare_mounts(
    env: BuildEnv,
    mounts: tuple[Mount, ...],
    workdir: str,
    scratch: Path,
    stack: contextlib.ExitStack,
) -> RunMounts:
    """Prepare every mount of one RUN (see the module docstring). Call :func:`mount_key`
    first: it validates what this function relies on."""
    out = RunMounts()
    ssh = [m for m in mounts if m.type == "ssh"]
    for i, m in enumerate(mounts):
        if m.type == "bind":
            _bind(env, m, workdir, stack, out)
        elif m.type == "cache":
            _cache(env, m, workdir, stack, out)
        elif m.type == "tmpfs":
            opts = (f"size={m.size_limit}",) if m.size_limit else ()
            out.tmpfs.append(TmpfsMount(destination=_target(m, workdir), options=opts))
        elif m.type == "secret":
            _secret(env, m, workdir, scratch / f"secret-{i}", out)
        elif m.type == "ssh":
            _ssh(env, m, workdir, ssh.index(m), scratch / f"ssh-{i}", stack, out)
    return out


def mount_key(env: BuildEnv, mounts: tuple[Mount, ...], workdir: str) -> list[object]:
    """What the mounts add to a RUN's cache key (cheap: metadata and stat-cached hashes)."""
    key: list[object] = []
    for m in mounts:
        target = _target(m, workdir) if m.type not in ("secret", "ssh") else m.target
        if m.type == "bind" and m.from_:
            chain = env.find_source(m.from_).chain
            key.append(["bind", target, m.from_, str(chain), m.source, m.read_only])
        elif m.type == "bind":
            from lamina.build.sourcekey import hash_sources  # loads the stat cache

            ctx = env.require_context("RUN --mount=type=bind")
            digest = hash_sources(None, ctx.resolve([m.source or "."]), cache=env.stat_cache())
            key.append(["bind", target, "context", m.source, str(digest), m.read_only])
        elif m.type == "cache":
            key.append(["cache", target, m.cache_id or target, m.read_only])
        elif m.type == "tmpfs":
            key.append(["tmpfs", target, m.size_limit])
        elif m.type == "secret":
            key.append(["secret", m.cache_id, target, m.env, m.required])
        elif m.type == "ssh":
            key.append(["ssh", m.cache_id or "default", m.target, m.required, m.mode, m.uid, m.gid])
        else:
            raise BuildError(
                f"RUN --mount=type={m.type} is not supported",
                hint="use type=bind, cache, tmpfs, secret or ssh",
            )
    return key


def _bind(
    env: BuildEnv, m: Mount, workdir: str, stack: contextlib.ExitStack, out: RunMounts
) -> None:
    target = _target(m, workdir)
    if m.from_:
        source = env.find_source(m.from_)
        env.ensure_layer(source.chain)
        root = stack.enter_context(open_view(env.store, source.chain))
        try:
            path = resolve_in_root(root, m.source or "/")
        except OSError as exc:
            raise BuildError(f"mounting {m.source or '/'} from {m.from_}: not found") from exc
        if not os.path.lexists(path):
            raise BuildError(f"mounting {m.source or '/'} from {m.from_}: not found")
    else:
        ctx = env.require_context("RUN --mount=type=bind")
        path = ctx.resolve([m.source or "."])[0].full_path
    if not m.read_only and path.is_dir():
        path = stack.enter_context(open_overlay(env.store, path))
    out.binds.append(BindMount(source=path, destination=target, readonly=m.read_only))


def _cache(
    env: BuildEnv, m: Mount, workdir: str, stack: contextlib.ExitStack, out: RunMounts
) -> None:
    target = _target(m, workdir)
    ident = m.cache_id or target
    path = env.cache.mount_dir(ident)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.mkdir(mode=0o755, exist_ok=True)
        os.chmod(tmp, m.mode if m.mode is not None else 0o755)
        os.chown(tmp, m.uid or 0, m.gid or 0)
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another build made it first
    if m.sharing == "locked":
        stack.enter_context(flocked(path.with_name(path.name + ".lock")))
    out.binds.append(BindMount(source=path, destination=target, readonly=m.read_only))


def _secret(env: BuildEnv, m: Mount, workdir: str, scratch: Path, out: RunMounts) -> None:
    ident = m.cache_id or (posixpath.basename(m.target) if m.target else "")
    if not ident:
        raise BuildError("secret mount needs an id (or a target)")
    if env.secrets.get(ident) is None:
        if m.required:
            raise BuildError(
                f"secret {ident} is required but was not given",
                hint=f"pass it with --secret id={ident},src=PATH",
            )
        return
    if m.env:
        out.env[m.env] = env.secrets.value_for(ident)
        if not m.target:
            return
    source = env.secrets.file_for(ident, scratch)
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = scratch / "value"
    shutil.copyfile(source, private)
    os.chmod(private, m.mode if m.mode is not None else 0o400)
    os.chown(private, m.uid or 0, m.gid or 0)
    dest = _target(m, workdir, default=f"/run/secrets/{ident}")
    out.binds.append(BindMount(source=private, destination=dest, readonly=True))


def _ssh(
    env: BuildEnv, m: Mount, workdir: str, n: int, scratch: Path, stack: contextlib.ExitStack,
    out: RunMounts,
) -> None:  # fmt: skip
    ident = m.cache_id or "default"
    dest = _target(m, workdir, default=f"/run/buildkit/ssh_agent.{n}")
    if n == 0:
        out.env.setdefault("SSH_AUTH_SOCK", dest)
    agent = env.ssh.socket_for(ident) if env.ssh is not None else None
    if agent is None:
        if m.required:
            raise BuildError(
                f"ssh required but no ssh with id {ident} found",
                hint=f"pass it with --ssh {ident} (agent of $SSH_AUTH_SOCK) or "
                f"--ssh {ident}=SOCKET|KEYFILE",
            )
        return
    scratch.mkdir(mode=0o711)
    sock = stack.enter_context(
        forward_agent(agent, scratch / "agent.sock", mode=m.mode if m.mode is not None else 0o600,
                      uid=m.uid or 0, gid=m.gid or 0)
    )  # fmt: skip
    out.binds.append(BindMount(source=sock, destination=dest, readonly=False))
