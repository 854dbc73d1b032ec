"""Docker's container defaults, as data: capabilities, mounts, devices, masked/readonly paths.

These are the values ``docker run`` (moby's default OCI spec) gives an unprivileged container,
restated from its documentation and from ``docker inspect``/``config.json`` output; the native
fallback applies the same tables, so both runtimes give a process the same view.

Invariant: everything here is immutable (tuples of read-only mappings); :mod:`spec` copies
entries before putting them into a document.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

#: PATH when the image sets none (Docker's default)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Docker's default capability set, in the order Docker lists it
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: Linux capability numbers (capability.h), for the native runtime's capset/bounding drops
CAPABILITY_NUMBERS: Mapping[str, int] = MappingProxyType(
    {
        "CAP_CHOWN": 0,
        "CAP_DAC_OVERRIDE": 1,
        "CAP_DAC_READ_SEARCH": 2,
        "CAP_FOWNER": 3,
        "CAP_FSETID": 4,
        "CAP_KILL": 5,
        "CAP_SETGID": 6,
        "CAP_SETUID": 7,
        "CAP_SETPCAP": 8,
        "CAP_LINUX_IMMUTABLE": 9,
        "CAP_NET_BIND_SERVICE": 10,
        "CAP_NET_BROADCAST": 11,
        "CAP_NET_ADMIN": 12,
        "CAP_NET_RAW": 13,
        "CAP_IPC_LOCK": 14,
        "CAP_IPC_OWNER": 15,
        "CAP_SYS_MODULE": 16,
        "CAP_SYS_RAWIO": 17,
        "CAP_SYS_CHROOT": 18,
        "CAP_SYS_PTRACE": 19,
        "CAP_SYS_PACCT": 20,
        "CAP_SYS_ADMIN": 21,
        "CAP_SYS_BOOT": 22,
        "CAP_SYS_NICE": 23,
        "CAP_SYS_RESOURCE": 24,
        "CAP_SYS_TIME": 25,
        "CAP_SYS_TTY_CONFIG": 26,
        "CAP_MKNOD": 27,
        "CAP_LEASE": 28,
        "CAP_AUDIT_WRITE": 29,
        "CAP_AUDIT_CONTROL": 30,
        "CAP_SETFCAP": 31,
        "CAP_MAC_OVERRIDE": 32,
        "CAP_MAC_ADMIN": 33,
        "CAP_SYSLOG": 34,
        "CAP_WAKE_ALARM": 35,
        "CAP_BLOCK_SUSPEND": 36,
        "CAP_AUDIT_READ": 37,
        "CAP_PERFMON": 38,
        "CAP_BPF": 39,
        "CAP_CHECKPOINT_RESTORE": 40,
    }
)

#: paths hidden from the container (a /dev/null bind over files, an empty ro tmpfs over dirs)
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

#: paths remounted read-only
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def _ro(d: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(d)


#: the default mounts, in mount order
MOUNTS: tuple[Mapping[str, Any], ...] = (
    _ro({"destination": "/proc", "type": "proc", "source": "proc",
         "options": ("nosuid", "noexec", "nodev")}),
    _ro({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ("nosuid", "strictatime", "mode=755", "size=65536k")}),
    _ro({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")}),
    _ro({"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ("nosuid", "noexec", "nodev", "ro")}),
    _ro({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ("ro", "nosuid", "noexec", "nodev")}),
    _ro({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ("nosuid", "noexec", "nodev")}),
    _ro({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")}),
)  # fmt: skip


def _char(path: str, major: int, minor: int) -> Mapping[str, Any]:
    return _ro(
        {"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666, "uid": 0,
         "gid": 0}
    )  # fmt: skip


#: device nodes created in /dev (the runtime also adds the /dev/fd, stdio and ptmx links)
DEVICES: tuple[Mapping[str, Any], ...] = (
    _char("/dev/null", 1, 3),
    _char("/dev/zero", 1, 5),
    _char("/dev/full", 1, 7),
    _char("/dev/random", 1, 8),
    _char("/dev/urandom", 1, 9),
    _char("/dev/tty", 5, 0),
)


def _rule(allow: bool, type_: str | None, major: int | None, minor: int | None,
          access: str) -> Mapping[str, Any]:  # fmt: skip
    rule: dict[str, Any] = {"allow": allow, "access": access}
    if type_ is not None:
        rule["type"] = type_
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return _ro(rule)


#: the device cgroup: deny all, then Docker's allow list (mknod of any, the default nodes,
#: ptys, tun)
DEVICE_CGROUP_RULES: tuple[Mapping[str, Any], ...] = (
    _rule(False, None, None, None, "rwm"),
    _rule(True, "c", None, None, "m"),
    _rule(True, "b", None, None, "m"),
    _rule(True, "c", 1, 3, "rwm"),
    _rule(True, "c", 1, 5, "rwm"),
    _rule(True, "c", 1, 7, "rwm"),
    _rule(True, "c", 1, 8, "rwm"),
    _rule(True, "c", 1, 9, "rwm"),
    _rule(True, "c", 5, 0, "rwm"),
    _rule(True, "c", 5, 1, "rwm"),
    _rule(True, "c", 5, 2, "rwm"),
    _rule(True, "c", 136, None, "rwm"),
    _rule(True, "c", 10, 200, "rwm"),
)
