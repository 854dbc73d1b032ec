"""Registry host names: Docker Hub aliases, loopback detection and the plain-HTTP policy.

Pure functions, no I/O. Docker's rules: ``docker.io`` (and ``index.docker.io``) is served by
``registry-1.docker.io`` and its credentials are stored under ``https://index.docker.io/v1/``;
plain HTTP is allowed only for loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``) unless
the caller marks a registry insecure.
"""

from __future__ import annotations

import ipaddress
import re

from lamina.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# distribution-spec: <name> and <reference> (tag) grammars
_NAME = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


def check_repository(name: str) -> str:
    """``name`` if it is a valid repository name (so it is safe in a URL path)."""
    if len(name) > 255 or not _NAME.fullmatch(name):
        raise InvalidReference(f"invalid repository name {name[:80]!r}")
    return name


def check_tag(tag: str) -> str:
    """``tag`` if it is a valid tag (so it is safe in a URL path)."""
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid tag {tag[:80]!r}")
    return tag


def normalize_host(host: str) -> str:
    """The registry as users name it: lowercase host, ``docker.io`` for every Hub alias.

    Strips a scheme and trailing path (``https://r:5000/v2/`` -> ``r:5000``).
    """
    text = host.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].rpartition("@")[2]
    hostname, port = split_port(text)
    hostname = f"[{hostname.lower()}]" if ":" in hostname else hostname.lower()
    text = hostname + (f":{port}" if port else "")
    return DOCKER_HUB if text in _HUB_ALIASES else text


def api_host(host: str) -> str:
    """The host that serves the distribution API for ``host`` (Hub -> registry-1.docker.io)."""
    host = normalize_host(host)
    return DOCKER_HUB_API if host == DOCKER_HUB else host


def split_port(host: str) -> tuple[str, str | None]:
    """``("r", "5000")`` for ``r:5000``, ``("::1", "5000")`` for ``[::1]:5000``."""
    if host.startswith("["):
        addr, _, rest = host[1:].partition("]")
        return addr, rest[1:] if rest.startswith(":") else None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, port
    return host, None


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (with or without a port)."""
    name, _ = split_port(host)
    if name.lower() == "localhost" or name.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_allowed(host: str, insecure: frozenset[str] | bool = False) -> bool:
    """Whether plain HTTP may be used for ``host``: loopback, or listed as insecure."""
    if isinstance(insecure, bool):
        return insecure or is_loopback(host)
    return is_loopback(host) or normalize_host(host) in {normalize_host(h) for h in insecure}


def auth_keys(host: str) -> list[str]:
    """Keys under which config files may store credentials for ``host``, most usual first."""
    host = normalize_host(host)
    if host == DOCKER_HUB:
        return [DOCKER_HUB_AUTH_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def auth_key(host: str) -> str:
    """The key ``login`` writes for ``host`` (Docker's choice)."""
    return auth_keys(host)[0]
