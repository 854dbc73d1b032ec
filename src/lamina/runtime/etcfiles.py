"""Content for a container's ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname``.

:func:`write_etc_files` writes the three files into a directory the caller owns (the container's
or build step's state directory, never the rootfs) and returns the
:class:`~lamina.runtime.spec.EtcFiles` that bind-mounts them. The content follows Docker:

- hosts: the localhost/IPv6 lines Docker writes, then ``extra_hosts`` (``--add-host``), then
  the hostname on 127.0.0.1 for network "none" (there is no other address) — with network
  "host", the host's ``/etc/hosts`` is copied instead, plus ``extra_hosts``;
- resolv.conf: the host's file with loopback nameservers (127.0.0.0/8, ::1) dropped, since
  they are unreachable from another network namespace; Google's public resolvers when none
  remain (Docker's fallback); ``dns``/``dns_search``/``dns_options`` replace their lines.
  With network "host" the host's file is used unchanged (loopback resolvers work there);
- hostname: the hostname and a newline.

Invariants: files are written atomically; the host files are read, never changed; pure
functions :func:`hosts_content` and :func:`resolv_content` do no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lamina._internal.fileio import write_atomic
from lamina.runtime.spec import EtcFiles, NetworkMode

DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def hosts_content(
    *, hostname: str, network: NetworkMode, extra_hosts: Sequence[tuple[str, str]] = (),
    host_hosts: str = "",
) -> str:  # fmt: skip
    """The ``/etc/hosts`` text; ``extra_hosts`` are (name, address) pairs."""
    text = host_hosts if network == "host" and host_hosts else DEFAULT_HOSTS
    if text and not text.endswith("\n"):
        text += "\n"
    for name, address in extra_hosts:
        text += f"{address}\t{name}\n"
    if network != "host" and hostname:
        text += f"127.0.0.1\t{hostname}\n"
    return text


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "0:0:0:0:0:0:0:1")


def resolv_content(
    host_resolv: str, *, network: NetworkMode, dns: Sequence[str] = (),
    dns_search: Sequence[str] = (), dns_options: Sequence[str] = (),
) -> str:  # fmt: skip
    """The ``/etc/resolv.conf`` text derived from the host's (see the module docstring)."""
    lines: list[str] = []
    nameservers = 0
    for raw in host_resolv.splitlines():
        fields = raw.split()
        key = fields[0] if fields else ""
        if key == "nameserver" and len(fields) > 1:
            if dns or (network != "host" and _is_loopback(fields[1])):
                continue
            nameservers += 1
        elif (key in ("search", "domain") and dns_search) or (key == "options" and dns_options):
            continue
        lines.append(raw)
    for server in dns:
        lines.append(f"nameserver {server}")
        nameservers += 1
    if nameservers == 0:
        lines.extend(f"nameserver {s}" for s in FALLBACK_NAMESERVERS)
    if dns_search:
        lines.append("search " + " ".join(dns_search))
    if dns_options:
        lines.append("options " + " ".join(dns_options))
    return "\n".join(lines) + "\n"


def _read_host(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def write_etc_files(
    directory: Path, *, hostname: str, network: NetworkMode,
    extra_hosts: Sequence[tuple[str, str]] = (), dns: Sequence[str] = (),
    dns_search: Sequence[str] = (), dns_options: Sequence[str] = (), readonly: bool = False,
    host_etc: Path = Path("/etc"),
) -> EtcFiles:  # fmt: skip
    """Write ``hosts``, ``resolv.conf`` and ``hostname`` into ``directory``; return EtcFiles."""
    directory.mkdir(parents=True, exist_ok=True)
    hosts = hosts_content(
        hostname=hostname, network=network, extra_hosts=extra_hosts,
        host_hosts=_read_host(host_etc / "hosts"),
    )  # fmt: skip
    resolv = resolv_content(
        _read_host(host_etc / "resolv.conf"), network=network, dns=dns, dns_search=dns_search,
        dns_options=dns_options,
    )  # fmt: skip
    write_atomic(directory / "hosts", hosts.encode(), durable=False)
    write_atomic(directory / "resolv.conf", resolv.encode(), durable=False)
    write_atomic(directory / "hostname", f"{hostname}\n".encode(), durable=False)
    return EtcFiles(
        hosts=directory / "hosts",
        resolv_conf=directory / "resolv.conf",
        hostname=directory / "hostname",
        readonly=readonly,
    )
