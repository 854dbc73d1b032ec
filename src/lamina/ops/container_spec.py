"""From a container record to the runtime's :class:`~lamina.runtime.ContainerSpec`.

Done at every start (the record is fixed; the rootfs may have changed since create): the user
is resolved in the *mounted* rootfs (an unknown user name fails here, exit 125), ``HOME``,
``HOSTNAME`` and (with a terminal) ``TERM`` are added when the record's env lacks them, as
Docker does; hosts/resolv.conf/hostname are written into the container's record dir and bound
over the init layer's placeholders; bind sources must still exist.

``--init`` (``HostConfig.Init``): Docker's ``docker-init`` is tini, so is ours: a static tini
(Debian's ``tini`` package: ``/usr/bin/tini-static``; a ``docker-init`` also serves) is bound
read-only at ``/dev/init`` and runs ``/dev/init -- CMD...`` as PID 1, forwarding signals and
reaping zombies. ``/dev`` is the runtime's tmpfs, so its mount point never reaches the
container's upper dir (``diff`` stays clean), and a static binary runs in any image. ``Path``
and ``Args`` keep the command as given, as in Docker.

Rootless (euid != 0): the container gets a user namespace mapping its root to the caller
(:func:`lamina.runtime.single_id_mappings`) — other container uids are not mapped, so
``-u 1000`` needs root or a runtime started in a namespace with subordinate ids. The CLI runs
rootless commands in such a namespace (:mod:`lamina.runtime.userns`; euid 0 there, so no
extra mappings); a user that namespace does not map fails here with one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lamina.errors import ContainerError
from lamina.runtime import (
    BindMount,
    ContainerSpec,
    ProcessSpec,
    TmpfsMount,
    resolve_user,
    single_id_mappings,
)
from lamina.runtime.etcfiles import write_etc_files
from lamina.runtime.idmap import IDMapping
from lamina.runtime.rootless import check_mapped, is_rootless
from lamina.runtime.spec import NetworkMode
from lamina.store import Store


def _env(config: dict[str, Any], home: str, hostname: str) -> tuple[str, ...]:
    env = list(config.get("Env") or [])
    keys = {e.partition("=")[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if "HOSTNAME" not in keys:
        env.insert(1, f"HOSTNAME={hostname}")
    if config.get("Tty") and "TERM" not in keys:
        env.append("TERM=xterm")
    if "HOME" not in keys:
        env.append(f"HOME={home}")
    return tuple(env)


def process_spec(
    rootfs: Path, config: dict[str, Any], args: tuple[str, ...], *, user: str | None = None,
    workdir: str | None = None, env: tuple[str, ...] = (), tty: bool | None = None,
    host: dict[str, Any] | None = None,
) -> ProcessSpec:  # fmt: skip
    """A process for the container ``config`` (``Config``): the main one or an exec'd one.
    ``host`` (``HostConfig``) gives both the same capabilities and added groups, as Docker."""
    from lamina.ops.runflags import capabilities

    host = host or {}
    who = resolve_user(rootfs, user if user is not None else config.get("User") or "")
    groups = who.additional_gids
    if host.get("GroupAdd"):
        from lamina.runtime.user import resolve_groups

        added = resolve_groups(rootfs, tuple(map(str, host["GroupAdd"])))
        groups += tuple(g for g in added if g not in groups)
    if is_rootless():
        check_mapped(who.uid, who.gid)
    base = _env(config, who.home, str(config.get("Hostname", "")))
    from lamina.ops.container_config import merge_env

    return ProcessSpec(
        args=args,
        env=tuple(merge_env(list(base), env)),
        cwd=workdir or config.get("WorkingDir") or "/",
        uid=who.uid,
        gid=who.gid,
        additional_gids=groups,
        terminal=bool(config.get("Tty")) if tty is None else tty,
        capabilities=capabilities(host.get("CapAdd") or (), host.get("CapDrop") or ()),
    )


#: static init binaries, first found wins (a dynamically linked tini would need the image's libc)
INIT_CANDIDATES = (
    "/usr/bin/tini-static",
    "/usr/libexec/docker/docker-init",
    "/usr/bin/docker-init",
)
INIT_PATH = "/dev/init"


def init_binary() -> Path:
    """The host's static init for ``--init``; ContainerError (exit 125) when there is none."""
    for candidate in INIT_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ContainerError(
        f"--init: no static init binary found (looked for {', '.join(INIT_CANDIDATES)})",
        hint="install Debian's tini package (apt-get install tini)",
    )


def container_spec(store: Store, cid: str, record: dict[str, Any], rootfs: Path) -> ContainerSpec:
    """The runtime spec for starting ``cid`` whose rootfs is mounted at ``rootfs``."""
    config, host = record["Config"], record["HostConfig"]
    args = (str(record["Path"]), *map(str, record.get("Args") or []))
    init = init_binary() if host.get("Init") else None
    if init is not None:
        args = (INIT_PATH, "--", *args)
    process = process_spec(rootfs, config, args, host=host)
    network: NetworkMode = "host" if host.get("NetworkMode") == "host" else "none"
    hostname = str(config.get("Hostname") or cid[:12])
    from lamina.ops.runflags import extra_hosts

    etc = write_etc_files(
        store.containers.dir(cid), hostname=hostname, network=network,
        extra_hosts=extra_hosts(host.get("ExtraHosts") or ()), dns=host.get("Dns") or (),
        dns_search=host.get("DnsSearch") or (), dns_options=host.get("DnsOptions") or (),
    )  # fmt: skip
    binds = []
    for m in record.get("Mounts") or []:
        if not os.path.exists(m["Source"]):
            raise ContainerError(
                f"invalid mount config for type \"bind\": bind source path does not exist: "
                f"{m['Source']}"
            )  # fmt: skip
        binds.append(
            BindMount(source=Path(m["Source"]), destination=m["Destination"], readonly=not m["RW"])
        )
    if init is not None:  # after the /dev tmpfs the runtime mounts first
        binds.append(BindMount(source=init, destination=INIT_PATH, readonly=True))
    tmpfs = [
        TmpfsMount(destination=path, options=tuple(o for o in opts.split(",") if o))
        for path, opts in (host.get("Tmpfs") or {}).items()
    ]
    uid_maps: tuple[IDMapping, ...] = ()
    gid_maps: tuple[IDMapping, ...] = ()
    if os.geteuid() != 0:
        uid_maps, gid_maps = single_id_mappings(os.geteuid(), os.getegid())
    return ContainerSpec(
        rootfs=rootfs,
        process=process,
        hostname=hostname,
        network=network,
        readonly_rootfs=bool(host.get("ReadonlyRootfs")),
        binds=tuple(binds),
        tmpfs=tuple(tmpfs),
        etc_files=etc,
        uid_mappings=uid_maps,
        gid_mappings=gid_maps,
        shm_size=host.get("ShmSize"),
    )
