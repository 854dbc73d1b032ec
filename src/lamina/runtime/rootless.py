"""The current process as a rootless one: is it, which ids it maps, what a spec must avoid.

Used where a runtime spec is made (:mod:`lamina.runtime.bundle`,
:mod:`lamina.ops.container_spec`) when lamina runs rootless — as a non-root user, or as uid 0
of a user namespace such as the one the CLI joins (:mod:`lamina.runtime.userns`). Reads only
``/proc/self/{uid,gid}_map``; nothing here changes the process.
"""

from __future__ import annotations

import os
from typing import Any

from lamina.errors import ContainerError


def is_rootless() -> bool:
    """True when not real root: euid != 0, or in a user namespace other than the initial one."""
    if os.geteuid() != 0:
        return True
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def adapt_config(config: dict[str, Any]) -> None:
    """Make a runtime-spec ``config`` startable in this (rootless) user namespace, as
    ``runc spec --rootless`` does: without a network namespace of its own the container
    cannot mount sysfs, so ``/sys`` becomes a read-only rbind of the host's; ``uid=``/``gid=``
    mount options naming ids this namespace does not map are dropped (devpts ``gid=5`` under
    a single-id map). Mutates ``config``."""
    namespaces = {ns.get("type") for ns in config.get("linux", {}).get("namespaces", [])}
    mapped = {kind: _mapped_ranges(kind) for kind in ("uid", "gid")}
    for mount in config.get("mounts", []):
        if mount.get("type") == "sysfs" and "network" not in namespaces:
            mount.update(type="none", source="/sys",
                         options=["rbind", "nosuid", "noexec", "nodev", "ro"])  # fmt: skip
            continue
        options = []
        for opt in mount.get("options", []):
            key, _, value = opt.partition("=")
            if key in mapped and value.isdigit() and not _covers(mapped[key], int(value)):
                continue
            options.append(opt)
        mount["options"] = options


def check_mapped(uid: int, gid: int) -> None:
    """Raise ContainerError when this (rootless) namespace maps ``uid`` or ``gid`` not."""
    for kind, value in (("uid", uid), ("gid", gid)):
        if not _covers(_mapped_ranges(kind), value):
            raise ContainerError(
                f"{kind} {value} is not mapped in the rootless user namespace",
                hint="give the user ranges in /etc/subuid and /etc/subgid (usermod "
                "--add-subuids/--add-subgids), then stop its lamina-pause process",
            )


def _mapped_ranges(kind: str) -> list[tuple[int, int]]:
    """(first id, count) ranges this process's user namespace maps (inside ids)."""
    try:
        with open(f"/proc/self/{kind}_map") as f:
            return [(int(ln.split()[0]), int(ln.split()[2])) for ln in f if ln.strip()]
    except (OSError, ValueError, IndexError):
        return []


def _covers(ranges: list[tuple[int, int]], value: int) -> bool:
    return any(lo <= value < lo + n for lo, n in ranges)
