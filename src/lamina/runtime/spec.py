"""What to run, as frozen values, and its OCI runtime-spec (1.0.2) ``config.json`` form.

:class:`ContainerSpec` describes one container: a rootfs *path*, a :class:`ProcessSpec`,
hostname, network mode, extra mounts, optional user namespace. :func:`build_config` turns it
into the runtime-spec document with Docker's defaults (the tables in
:mod:`lamina.runtime.defaults`); the native fallback reads the same document, so there is one
source of truth for what a container looks like.

Invariants:

- rlimits in the output never exceed the caller's current hard limits (read with
  ``resource.getrlimit`` when the config is built): without ``CAP_SYS_RESOURCE`` asking for
  more makes the runtime fail, so requests are clamped, soft <= hard.
- ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` are only ever *bind mounts* of
  files the caller prepared outside the rootfs (:class:`EtcFiles`); nothing is written into
  the rootfs for them.
- Non-root processes get empty effective/permitted capability sets (as Docker does), so a
  ``USER`` switch really drops privilege; the bounding set stays the default one.
- Output is plain JSON data with a stable key order; building it does no I/O except
  ``getrlimit``.
"""

from __future__ import annotations

import resource
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ContainerError
from lamina.runtime import defaults
from lamina.runtime.idmap import IDMapping, validate_mappings

OCI_VERSION = "1.0.2"

NetworkMode = Literal["none", "host"]


@lazy_dataclass(frozen=True, kw_only=True)
class BindMount:
    """Bind ``source`` (a host path) at ``destination`` (absolute, inside the container)."""

    source: Path
    destination: str
    readonly: bool = False


@lazy_dataclass(frozen=True, kw_only=True)
class TmpfsMount:
    """A tmpfs at ``destination``; ``options`` are appended to Docker's ``nosuid,nodev,noexec``."""

    destination: str
    options: tuple[str, ...] = ()


@lazy_dataclass(frozen=True, kw_only=True)
class Rlimit:
    """A resource limit; ``type`` is ``RLIMIT_NOFILE`` or Docker's short ``nofile`` form."""

    type: str
    soft: int
    hard: int


@lazy_dataclass(frozen=True, kw_only=True)
class EtcFiles:
    """Files prepared by the caller (outside the rootfs) to bind over the container's copies."""

    hosts: Path | None = None
    resolv_conf: Path | None = None
    hostname: Path | None = None
    readonly: bool = False


@lazy_dataclass(frozen=True, kw_only=True)
class ProcessSpec:
    """The process to run: argv, environment, working dir, credentials, terminal."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    terminal: bool = False
    capabilities: tuple[str, ...] = defaults.CAPABILITIES
    no_new_privileges: bool = False
    rlimits: tuple[Rlimit, ...] = ()

    def __post_init__(self) -> None:
        if not self.args:
            raise ContainerError("process spec: no command given")
        if not self.cwd.startswith("/"):
            raise ContainerError(f"process spec: working directory {self.cwd!r} is not absolute")

    def env_value(self, name: str) -> str | None:
        """The last value of ``name`` in ``env`` (later entries win), or None."""
        found = None
        for item in self.env:
            key, sep, value = item.partition("=")
            if sep and key == name:
                found = value
        return found


@lazy_dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    """One container. ``rootfs`` must be absolute; ``network`` "none" = own netns with only lo."""

    rootfs: Path
    process: ProcessSpec
    hostname: str = ""
    network: NetworkMode = "none"
    readonly_rootfs: bool = False
    binds: tuple[BindMount, ...] = ()
    tmpfs: tuple[TmpfsMount, ...] = ()
    etc_files: EtcFiles = field(default_factory=EtcFiles)
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()
    cgroups_path: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    #: bytes of the ``/dev/shm`` tmpfs (None: Docker's 64 MiB)
    shm_size: int | None = None

    def __post_init__(self) -> None:
        if not self.rootfs.is_absolute():
            raise ContainerError(f"container spec: rootfs {self.rootfs} is not absolute")
        if bool(self.uid_mappings) != bool(self.gid_mappings):
            raise ContainerError("container spec: uid and gid mappings must be given together")
        validate_mappings(self.uid_mappings, "uid")
        validate_mappings(self.gid_mappings, "gid")
        for dest in (*(b.destination for b in self.binds), *(t.destination for t in self.tmpfs)):
            if not dest.startswith("/"):
                raise ContainerError(f"container spec: mount point {dest!r} is not absolute")

    @property
    def user_namespace(self) -> bool:
        """True when the container gets its own user namespace."""
        return bool(self.uid_mappings)


def clamp_rlimits(rlimits: tuple[Rlimit, ...]) -> list[dict[str, Any]]:
    """Runtime-spec rlimits, each clamped to the current hard limit (soft <= hard).

    Raises ContainerError for an unknown limit name.
    """
    out: list[dict[str, Any]] = []
    for rl in rlimits:
        name = rl.type.upper()
        if not name.startswith("RLIMIT_"):
            name = "RLIMIT_" + name
        res = getattr(resource, name, None)
        if not isinstance(res, int):
            raise ContainerError(f"rlimit {rl.type!r}: unknown resource")
        cur_hard = resource.getrlimit(res)[1]
        hard = rl.hard if cur_hard == resource.RLIM_INFINITY else min(rl.hard, cur_hard)
        soft = min(rl.soft, hard)
        out.append({"type": name, "hard": hard, "soft": soft})
    return out


def process_config(proc: ProcessSpec) -> dict[str, Any]:
    """The runtime-spec ``process`` object (also what ``runc exec --process`` reads)."""
    caps = list(proc.capabilities)
    running_caps = caps if proc.uid == 0 else []
    config: dict[str, Any] = {
        "terminal": proc.terminal,
        "user": {"uid": proc.uid, "gid": proc.gid},
        "args": list(proc.args),
        "env": list(proc.env),
        "cwd": proc.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": running_caps,
            "permitted": running_caps,
        },
        "noNewPrivileges": proc.no_new_privileges,
    }
    if proc.additional_gids:
        config["user"]["additionalGids"] = list(proc.additional_gids)
    if proc.rlimits:
        config["rlimits"] = clamp_rlimits(proc.rlimits)
    return config


def _mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    mounts = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in m.items()} for m in defaults.MOUNTS
    ]
    if spec.shm_size is not None:
        for m in mounts:
            if m["destination"] == "/dev/shm":
                opts = [o for o in m["options"] if not o.startswith("size=")]
                m["options"] = [*opts, f"size={spec.shm_size}"]
    if spec.user_namespace and all(m.to_host(5) is None for m in spec.gid_mappings):
        # devpts refuses gid=5 (tty) when that gid is not mapped in the user namespace.
        for m in mounts:
            if m["type"] == "devpts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
    if spec.user_namespace and spec.network == "host":
        # sysfs belongs to the host netns, which a new user namespace does not own: bind it.
        for m in mounts:
            if m["destination"] == "/sys":
                m.update(type="bind", source="/sys", options=["rbind", "nosuid", "noexec", "ro"])
    etc = spec.etc_files
    for dest, src in (
        ("/etc/resolv.conf", etc.resolv_conf),
        ("/etc/hostname", etc.hostname),
        ("/etc/hosts", etc.hosts),
    ):
        if src is not None:
            opts = ["bind", "rprivate"] + (["ro"] if etc.readonly else [])
            mounts.append(
                {"destination": dest, "type": "bind", "source": str(src), "options": opts}
            )
    for t in spec.tmpfs:
        opts = ["nosuid", "nodev", "noexec", *t.options]
        mounts.append(
            {"destination": t.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}
        )
    for b in spec.binds:
        opts = ["rbind", "rprivate"] + (["ro"] if b.readonly else [])
        mounts.append(
            {"destination": b.destination, "type": "bind", "source": str(b.source), "options": opts}
        )
    return mounts


def _linux(spec: ContainerSpec) -> dict[str, Any]:
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if spec.network == "none":
        namespaces.append({"type": "network"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "devices": [dict(d) for d in defaults.DEVICES],
        "resources": {"devices": [dict(r) for r in defaults.DEVICE_CGROUP_RULES]},
        "maskedPaths": list(defaults.MASKED_PATHS),
        "readonlyPaths": list(defaults.READONLY_PATHS),
    }
    if spec.user_namespace:
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [m.to_spec() for m in spec.uid_mappings]
        linux["gidMappings"] = [m.to_spec() for m in spec.gid_mappings]
        # Device nodes cannot be created in a user namespace; runc bind-mounts them instead.
        linux["devices"] = []
    if spec.cgroups_path is not None:
        linux["cgroupsPath"] = spec.cgroups_path
    return linux


def build_config(spec: ContainerSpec) -> dict[str, Any]:
    """The runtime-spec ``config.json`` document for ``spec`` (root.path is absolute)."""
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process_config(spec.process),
        "root": {"path": str(spec.rootfs), "readonly": spec.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": _mounts(spec),
        "linux": _linux(spec),
    }
    if spec.annotations:
        config["annotations"] = dict(spec.annotations)
    return config


def mount_destinations(config: dict[str, Any]) -> list[tuple[str, bool]]:
    """Every mount point a config needs in the rootfs, in mount order: (path, is_directory).

    File mount points are the binds whose source is not a directory; the rest are directories.
    Paths below an earlier mount (``/dev/pts`` under the ``/dev`` tmpfs) are omitted: they are
    created on that mount, not in the rootfs.
    """
    result: list[tuple[str, bool]] = []
    covered: list[str] = []
    for m in config.get("mounts", []):
        dest = "/" + str(m["destination"]).strip("/")
        if any(dest.startswith(c.rstrip("/") + "/") for c in covered):
            continue
        is_dir = True
        if m.get("type") == "bind":
            is_dir = Path(m["source"]).is_dir()
        result.append((dest, is_dir))
        covered.append(dest)
    return result
