"""Redaction of URLs and text before they reach an error message or a log line.

Invariant: :func:`redact_url` never returns userinfo, and returns a query value only when its
parameter name is on a short allowlist of harmless registry parameters (``n``, ``last``,
``digest``, ``mount``, ``from``, ``service``, ``scope``); upload ``_state`` blobs, pre-signed
storage signatures and ``token=`` parameters are replaced by ``***``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

_SAFE_PARAMS = frozenset({"n", "last", "digest", "mount", "from", "service", "scope"})
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` without userinfo and with every non-allowlisted query value masked."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc.rpartition("@")[2]
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k)}={quote(v, safe=':,/') if k in _SAFE_PARAMS else MASK}" for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each (non-trivial) secret replaced by ``***``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace and cut to ``limit`` characters (for server-supplied messages)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
