"""``run``/``create`` flags that CI jobs pass through (``docker.image(...).inside('--shm-size=2g
--add-host db:10.0.0.5 --cap-add SYS_PTRACE')``), parsed into Docker's ``HostConfig`` values.

- ``--add-host NAME:IP`` (or ``NAME=IP``): ``ExtraHosts`` entries ``NAME:IP``; the address must
  be an IPv4/IPv6 literal (Docker's ``host-gateway`` needs a bridge network lamina does not
  make: refused with a hint).
- ``--dns``, ``--dns-search``, ``--dns-option``: the container's ``resolv.conf``
  (:mod:`lamina.runtime.etcfiles`); a ``--dns`` must be an address.
- ``--shm-size``: Docker's size syntax (``64m``, ``2g``, ``1.5GiB``, bytes without a unit;
  binary units), the ``/dev/shm`` tmpfs size; at least 1 byte.
- ``--cap-add``/``--cap-drop``: names with or without ``CAP_``, any case, or ``ALL``; the set
  is Docker's default set minus the drops plus the adds (``--cap-drop ALL --cap-add X``: only
  X; ``--cap-add ALL``: every capability this table knows). Unknown names are errors.
- ``--group-add``: names or gids, resolved in the container's ``/etc/group`` at start.
- ``--stop-signal``/``--stop-timeout``: ``Config.StopSignal``/``Config.StopTimeout``, used by
  ``stop`` when it is given no ``-t``.

Everything here is pure parsing: one :class:`~lamina.errors.UsageError` line per bad value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from lamina._internal.sizes import ram_in_bytes
from lamina.errors import UsageError
from lamina.runtime import defaults

_HOSTNAME = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"


def _address(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise UsageError(f"invalid {what}: {text!r} is not an IP address") from None


def parse_add_host(spec: str) -> str:
    """``NAME:IP`` or ``NAME=IP`` -> ``NAME:IP`` (an IPv6 address keeps its colons)."""
    sep = "=" if "=" in spec else ":"
    name, _, address = spec.partition(sep)
    if not name or not address or re.match(_HOSTNAME, name) is None:
        raise UsageError(f"invalid --add-host {spec!r}", hint="use NAME:IP, e.g. db:10.0.0.5")
    if address == "host-gateway":
        raise UsageError(
            "--add-host NAME:host-gateway needs a bridge network, which lamina does not make",
            hint="give the address itself (with --network host, 127.0.0.1 is the host)",
        )
    return f"{name}:{_address(address, '--add-host ' + spec)}"


def extra_hosts(entries: Sequence[str]) -> list[tuple[str, str]]:
    """``ExtraHosts`` entries -> (name, address) pairs for ``/etc/hosts``."""
    return [(e.partition(":")[0], e.partition(":")[2]) for e in entries]


def parse_dns(values: Sequence[str]) -> list[str]:
    """``--dns`` servers, each an IP address."""
    return [_address(v, "--dns") for v in values]


def parse_size(text: str, what: str = "--shm-size") -> int:
    """Docker's ``RAMInBytes`` (:mod:`lamina._internal.sizes`) -> bytes (>= 1)."""
    size = ram_in_bytes(text.strip())
    if size is None:
        raise UsageError(f"invalid {what} {text!r}", hint="use a size like 64m, 2g or 1048576")
    if size < 1:
        raise UsageError(f"invalid {what} {text!r}: must be greater than 0")
    return size


def normalize_cap(name: str) -> str:
    """``net_admin``, ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``; ``all`` -> ``ALL``."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in defaults.CAPABILITY_NUMBERS:
        raise UsageError(f"unknown capability {name!r}", hint="e.g. NET_ADMIN, SYS_PTRACE, ALL")
    return full


def capabilities(add: Sequence[str], drop: Sequence[str]) -> tuple[str, ...]:
    """The process's capability set for ``HostConfig.CapAdd``/``CapDrop`` (Docker's rules)."""
    adds = [normalize_cap(c) for c in add]
    drops = [normalize_cap(c) for c in drop]
    if "ALL" in adds:
        every = sorted(defaults.CAPABILITY_NUMBERS, key=defaults.CAPABILITY_NUMBERS.__getitem__)
        return tuple(c for c in every if c not in drops or c in adds)
    base = [] if "ALL" in drops else [c for c in defaults.CAPABILITIES if c not in drops]
    return tuple(base + [c for c in adds if c not in base])
