"""EXPOSE port specs -> image-config ``ExposedPorts`` keys (``<port>/<proto>``).

Accepts ``port``, ``port/proto``, ranges ``a-b``, and (with a lint warning elsewhere)
``ip:hostport:port`` forms, whose IP and host port are validated then dropped. The protocol
defaults to ``tcp`` and is lower-cased. Invariant: output order follows input order, one key
per port of a range.
"""

from __future__ import annotations

import ipaddress


class PortError(ValueError):
    """A port spec that cannot be parsed."""


def split_parts(raw: str) -> tuple[str, str, str]:
    """(ip, host port, container port[/proto]) of a spec, like go-connections ``splitParts``."""
    parts = raw.split(":")
    n = len(parts)
    if n == 1:
        return "", "", parts[0]
    if n == 2:
        return "", parts[0], parts[1]
    if n == 3:
        return parts[0], parts[1], parts[2]
    return ":".join(parts[: n - 2]), parts[n - 2], parts[n - 1]


def split_proto_port(raw: str) -> tuple[str, str]:
    """(proto, port) of ``port[/proto]``; ("", "") when no port is given."""
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _port_range(text: str) -> tuple[int, int]:
    start_text, dash, end_text = text.partition("-")
    try:
        start = int(start_text, 10) if start_text.isdigit() else -1
        end = int(end_text, 10) if dash and end_text.isdigit() else (start if not dash else -1)
    except ValueError:
        start = end = -1
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
        raise PortError(f"invalid containerPort: {text}")
    return start, end


def _check_ip(ip: str) -> None:
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if "%" in ip:
        raise PortError(f"invalid IP address: {ip}")
    try:
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise PortError(f"invalid IP address: {ip}") from exc


def parse_port_spec(raw: str) -> list[str]:
    """The ``port/proto`` keys one EXPOSE word stands for; raises PortError."""
    ip, _host_port, container = split_parts(raw)
    proto, port = split_proto_port(container)
    try:
        if ip:
            _check_ip(ip)
        if not port:
            raise PortError("no port specified")
        start, end = _port_range(port)
    except PortError as exc:
        raise PortError(f"invalid port: {_quote(raw)}: {exc}") from exc
    proto = proto.lower()
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def parse_ports(specs: list[str] | tuple[str, ...]) -> list[str]:
    """All keys for several EXPOSE words, duplicates removed, first occurrence kept."""
    seen: dict[str, None] = {}
    for spec in specs:
        for key in parse_port_spec(spec):
            seen.setdefault(key, None)
    return list(seen)


def has_host_part(raw: str) -> bool:
    """True when a spec carries an IP or host-port mapping (lint ExposeInvalidFormat)."""
    return ":" in raw


def _quote(s: str) -> str:
    from lamina.dockerfile.dump import go_quote

    return go_quote(s)
