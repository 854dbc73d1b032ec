"""User-namespace id mappings: single-id maps and ``/etc/subuid``/``/etc/subgid`` ranges.

A mapping says "ids ``container_id .. container_id+size-1`` inside are ``host_id ..`` outside",
the triple of ``/proc/<pid>/uid_map`` and of the runtime-spec ``linux.uidMappings`` entries.

Rootless containers use one of two shapes (as podman and rootless Docker do):

- :func:`single_id_mappings`: container root is the calling user; nothing else is mapped. No
  helper binary is needed (an unprivileged process may write a one-line map for itself).
- :func:`subid_mappings`: container root is the calling user and ids ``1..n`` come from the
  user's ``/etc/subuid`` range; writing such a map needs the setuid ``newuidmap``/``newgidmap``
  helpers, which runc and crun call themselves when they run rootless.

Invariants: mappings are validated on construction (non-negative, size >= 1, no overflow of
the 32-bit id space); :func:`validate_mappings` rejects overlapping ranges on either side.
This module does no I/O except :func:`read_subid_ranges`, which reads one small file.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ContainerError

#: ids are 32-bit; (uid_t)-1 is reserved
MAX_ID = 2**32 - 2


@lazy_dataclass(frozen=True, kw_only=True)
class IDMapping:
    """One line of a uid/gid map: ``size`` ids from ``container_id`` map to ``host_id``."""

    container_id: int
    host_id: int
    size: int

    def __post_init__(self) -> None:
        if self.container_id < 0 or self.host_id < 0 or self.size < 1:
            raise ContainerError(f"invalid id mapping {self}: ids must be >= 0 and size >= 1")
        if max(self.container_id, self.host_id) + self.size - 1 > MAX_ID:
            raise ContainerError(f"invalid id mapping {self}: range exceeds the 32-bit id space")

    def to_spec(self) -> dict[str, Any]:
        """The runtime-spec form: ``{"containerID", "hostID", "size"}``."""
        return {"containerID": self.container_id, "hostID": self.host_id, "size": self.size}

    def to_host(self, container_id: int) -> int | None:
        """The host id for ``container_id``, or None when this mapping does not cover it."""
        if self.container_id <= container_id < self.container_id + self.size:
            return self.host_id + (container_id - self.container_id)
        return None


@lazy_dataclass(frozen=True, kw_only=True)
class SubIDRange:
    """One ``name:start:count`` line of ``/etc/subuid`` or ``/etc/subgid``."""

    start: int
    count: int


def validate_mappings(mappings: tuple[IDMapping, ...], kind: str) -> None:
    """Raise ContainerError when ranges overlap inside or outside, or there are more than 340.

    340 is the kernel's limit of lines in one map (since 4.15).
    """
    if len(mappings) > 340:
        raise ContainerError(f"{kind} mappings: {len(mappings)} lines, the kernel allows 340")
    for side in ("container_id", "host_id"):
        spans = sorted((getattr(m, side), getattr(m, side) + m.size) for m in mappings)
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start < end:
                raise ContainerError(f"{kind} mappings overlap on the {side.split('_')[0]} side")


def single_id_mappings(uid: int, gid: int) -> tuple[tuple[IDMapping, ...], tuple[IDMapping, ...]]:
    """(uid maps, gid maps) that make container root the host ``uid``/``gid``, and nothing else."""
    return (
        (IDMapping(container_id=0, host_id=uid, size=1),),
        (IDMapping(container_id=0, host_id=gid, size=1),),
    )


def subid_mappings(host_id: int, ranges: list[SubIDRange]) -> tuple[IDMapping, ...]:
    """Container 0 -> ``host_id``; container 1.. -> the sub-id ranges, in file order.

    Raises ContainerError when ``ranges`` is empty (the user has no sub-ids to map).
    """
    if not ranges:
        raise ContainerError(
            "mapping sub-ids: no ranges for this user",
            hint="add a line 'user:100000:65536' to /etc/subuid and /etc/subgid",
        )
    maps = [IDMapping(container_id=0, host_id=host_id, size=1)]
    next_id = 1
    for r in ranges:
        maps.append(IDMapping(container_id=next_id, host_id=r.start, size=r.count))
        next_id += r.count
    result = tuple(maps)
    validate_mappings(result, "sub-id")
    return result


def read_subid_ranges(path: Path, *, name: str, host_id: int) -> list[SubIDRange]:
    """The ranges in a subuid/subgid file for a user given by ``name`` or numeric ``host_id``.

    A missing file yields ``[]``. Malformed lines are skipped, as shadow-utils does. The file is
    read whole; it is limited to 1 MiB.
    """
    try:
        with path.open("rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return []
    ranges: list[SubIDRange] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) != 3 or fields[0] not in (name, str(host_id)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if start >= 0 and count >= 1:
            ranges.append(SubIDRange(start=start, count=count))
    return ranges


def rootless_mappings(
    *, uid: int, gid: int, name: str, subuid: Path = Path("/etc/subuid"),
    subgid: Path = Path("/etc/subgid"),
) -> tuple[tuple[IDMapping, ...], tuple[IDMapping, ...]]:  # fmt: skip
    """(uid maps, gid maps) for a rootless user: sub-id ranges when both files grant some
    (the runtime then needs newuidmap/newgidmap), else the single-id maps."""
    uid_ranges = read_subid_ranges(subuid, name=name, host_id=uid)
    gid_ranges = read_subid_ranges(subgid, name=name, host_id=gid)
    if uid_ranges and gid_ranges:
        return subid_mappings(uid, uid_ranges), subid_mappings(gid, gid_ranges)
    return single_id_mappings(uid, gid)
