"""From ``run``/``create`` options and an image to Docker's container record (``config.v2.json``).

The record holds what ``docker inspect`` shows and is fixed at create time (only ``Name``
changes, on rename): ``Id``, ``Created``, ``Path``/``Args`` (entrypoint + command, split as
Docker does), ``Image`` (the image id), ``Name``, ``Config`` (the image's config merged with
the options), ``HostConfig``, ``Mounts``; plus lamina's ``LayerChain`` (the image's chain ids,
so gc keeps them while the container exists).

Rules (Docker's): ``--entrypoint`` replaces the image's ENTRYPOINT and drops its CMD; a
command replaces CMD; ``-e K=V`` overrides the image's ``K`` in place; ``-v SRC:DST[:OPTS]``
needs an absolute, existing SRC (a missing one is an error here, as with ``--mount``); OPTS
may hold ``ro``/``rw``, SELinux ``z``/``Z`` (accepted, meaningless here) and propagation
modes.
"""

from __future__ import annotations

import os
import posixpath
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.errors import ContainerError, UsageError
from lamina.runtime.monitor import now_rfc3339
from lamina.store import Store
from lamina.store.image import StoreImage

if TYPE_CHECKING:
    from lamina.ops.container import RunOptions

_VOLUME_OPTS = {"ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave",
                "rslave", "nocopy", "consistent", "cached", "delegated"}  # fmt: skip
_NETWORKS = {"none": "none", "host": "host", "bridge": "none", "default": "none"}

_LEFT = ("admiring", "brave", "calm", "eager", "festive", "gifted", "happy", "jolly", "keen",
         "loving", "modest", "nifty", "quirky", "serene", "tender", "vibrant", "wizardly",
         "zealous")  # fmt: skip
_RIGHT = ("babbage", "curie", "darwin", "euler", "franklin", "galois", "hopper", "hypatia",
          "lovelace", "noether", "pasteur", "ritchie", "shannon", "thompson", "turing",
          "wozniak")  # fmt: skip


def random_name() -> str:
    """A Docker-style ``adjective_scientist`` name with a random suffix (collisions are rare
    and :meth:`~lamina.store.containers.ContainerStore.reserve_name` refuses them anyway)."""
    rng = random.SystemRandom()
    return f"{rng.choice(_LEFT)}_{rng.choice(_RIGHT)}{rng.randrange(1000)}"


def parse_volume(spec: str) -> dict[str, Any]:
    """``SRC:DST[:OPTS]`` -> Docker's ``Mounts`` entry; UsageError/ContainerError when bad."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume specification: {spec!r}", hint="use SRC:DST[:ro]")
    src, dst = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 and parts[2] else []
    bad = [o for o in opts if o not in _VOLUME_OPTS]
    if bad:
        raise UsageError(f"invalid volume specification {spec!r}: unknown option {bad[0]!r}")
    if not src.startswith("/"):
        raise UsageError(
            f"invalid volume specification {spec!r}: named volumes are not supported",
            hint="give an absolute host path as the source",
        )
    if not dst.startswith("/"):
        raise UsageError(f"invalid volume specification {spec!r}: {dst} is not absolute")
    if not os.path.exists(src):
        raise ContainerError(f"invalid mount config for type \"bind\": bind source path does not "
                             f"exist: {src}")  # fmt: skip
    propagation = next((o for o in opts if "private" in o or "shared" in o or "slave" in o), "")
    return {
        "Type": "bind",
        "Source": os.path.normpath(src),
        "Destination": posixpath.normpath(dst),
        "Mode": ",".join(opts),
        "RW": "ro" not in opts,
        "Propagation": propagation or "rprivate",
    }


def parse_tmpfs(spec: str) -> tuple[str, str]:
    """``PATH[:OPTS]`` -> (path, options)."""
    path, _, opts = spec.partition(":")
    if not path.startswith("/"):
        raise UsageError(f"invalid tmpfs {spec!r}: {path!r} is not absolute")
    return posixpath.normpath(path), opts


def merge_env(base: list[str], extra: tuple[str, ...]) -> list[str]:
    """``base`` with each ``K=V`` of ``extra`` replacing ``K`` in place or appended."""
    out = list(base)
    for item in extra:
        key = item.partition("=")[0]
        if not key:
            raise UsageError(f"invalid environment variable {item!r}")
        for i, old in enumerate(out):
            if old.partition("=")[0] == key:
                out[i] = item
                break
        else:
            out.append(item)
    return out


def _command(img: dict[str, Any], opts: RunOptions) -> tuple[list[str], list[str]]:
    """(Entrypoint, Cmd) as the container will have them."""
    entrypoint = list(img.get("Entrypoint") or [])
    cmd = list(img.get("Cmd") or [])
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = []
    if opts.command:
        cmd = list(opts.command)
    if not entrypoint and not cmd:
        raise ContainerError("no command specified", hint="give a command after the image")
    return entrypoint, cmd


def volumes_from(store: Store, specs: Sequence[str], taken: set[str]) -> list[dict[str, Any]]:
    """``--volumes-from CTR[:ro|:rw]``: the mounts of each container, as Docker copies them
    (the Jenkins plugin passes its agent's container when the agent runs in one). A suffix
    sets every copied mount's mode; without one each keeps its own. Destinations already
    mounted (``-v``, an earlier ``--volumes-from``) win, as in Docker."""
    out: list[dict[str, Any]] = []
    for spec in specs:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise UsageError(f"invalid --volumes-from {spec!r}: mode must be ro or rw")
        record = store.containers.read(store.containers.resolve(ref))
        for mount in record.get("Mounts") or []:
            if mount.get("Destination") in taken:
                continue
            copied = dict(mount)
            if mode:
                copied["RW"] = mode == "rw"
                opts = [
                    o for o in str(copied.get("Mode", "")).split(",") if o not in ("", "ro", "rw")
                ]
                copied["Mode"] = ",".join([*opts, mode])
            taken.add(copied["Destination"])
            out.append(copied)
    return out


def build_config(store: Store, cid: str, image: StoreImage, opts: RunOptions) -> dict[str, Any]:
    """The ``config.v2.json`` record for a new container (see the module docstring)."""
    img = dict(image.config().config or {})
    entrypoint, cmd = _command(img, opts)
    argv = entrypoint + cmd
    mounts = [parse_volume(v) for v in opts.volumes]
    mounts += volumes_from(store, opts.volumes_from, {m["Destination"] for m in mounts})
    tmpfs = dict(parse_tmpfs(t) for t in opts.tmpfs)
    network = _NETWORKS.get(opts.network)
    if network is None:
        raise UsageError(f"network {opts.network!r} is not supported", hint="use none or host")
    labels = {**(img.get("Labels") or {}), **opts.labels}
    from lamina.ops import runflags

    runflags.capabilities(opts.cap_add, opts.cap_drop)  # names checked at create, as Docker
    if opts.stop_signal:
        from lamina.ops.container_exec import parse_signal

        parse_signal(opts.stop_signal)
    config = {
        "Hostname": opts.hostname or cid[:12],
        "Domainname": "",
        "User": opts.user if opts.user is not None else img.get("User", ""),
        "AttachStdin": opts.interactive,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": opts.tty,
        "OpenStdin": opts.interactive,
        "StdinOnce": opts.interactive,
        "Env": merge_env(list(img.get("Env") or []), opts.env),
        "Cmd": cmd or None,
        "Image": opts.image,
        "Volumes": None,
        "WorkingDir": opts.workdir or img.get("WorkingDir", "") or "",
        "Entrypoint": entrypoint or None,
        "OnBuild": None,
        "Labels": labels,
    }
    if opts.stop_signal or img.get("StopSignal"):
        config["StopSignal"] = opts.stop_signal or img["StopSignal"]
    if opts.stop_timeout is not None:
        config["StopTimeout"] = opts.stop_timeout
    return {
        "Id": cid,
        "Created": now_rfc3339(),
        "Path": argv[0],
        "Args": argv[1:],
        "Image": str(image.id()),
        "Name": "",
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "Mounts": mounts,
        "Config": config,
        "HostConfig": {
            "Binds": list(opts.volumes) or None,
            "VolumesFrom": list(opts.volumes_from) or None,
            "NetworkMode": network if opts.network in ("none", "host") else opts.network,
            "ReadonlyRootfs": opts.read_only,
            "Tmpfs": tmpfs or None,
            "AutoRemove": opts.auto_remove,
            "Init": opts.init,
            "Runtime": opts.runtime or "",
            "ExtraHosts": [runflags.parse_add_host(h) for h in opts.add_hosts] or None,
            "Dns": runflags.parse_dns(opts.dns),
            "DnsSearch": list(opts.dns_search),
            "DnsOptions": list(opts.dns_options),
            "ShmSize": runflags.parse_size(opts.shm_size) if opts.shm_size else 64 << 20,
            "CapAdd": list(opts.cap_add) or None,
            "CapDrop": list(opts.cap_drop) or None,
            "GroupAdd": list(opts.group_add) or None,
        },
        "LayerChain": [str(c) for c in image.record.layers],
        "StoreDriver": store.driver,
    }


def host_paths(store: Store, cid: str) -> dict[str, str]:
    """``ResolvConfPath``, ``HostnamePath``, ``HostsPath`` and ``LogPath`` of a container."""
    d: Path = store.containers.dir(cid)
    return {
        "ResolvConfPath": str(d / "resolv.conf"),
        "HostnamePath": str(d / "hostname"),
        "HostsPath": str(d / "hosts"),
        "LogPath": str(store.containers.log_path(cid)),
    }
