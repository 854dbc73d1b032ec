"""Turning registry answers and connection failures into lamina errors.

Classification is by HTTP status, the spec's error ``code`` and exception type (never by
message text). Every message is one line: ``CONTEXT: STATUS CODE: registry message``, with the
registry message flattened, cut to 200 characters and scrubbed of known secrets; URLs are
redacted (:mod:`lamina.registry.redaction`).
"""

from __future__ import annotations

import email.utils
import errno
import json
import socket
import ssl
import time
from collections.abc import Iterable

import httpx

from lamina.errors import AuthError, RegistryError, RegistryNotFound
from lamina.registry.redaction import one_line, redact_url, scrub

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ERROR_BODY = 64 << 10


def parse_errors(body: bytes) -> tuple[str | None, str]:
    """``(code, message)`` of the first entry of a spec error body, or ``(None, "")``."""
    try:
        obj = json.loads(body)
        first = obj["errors"][0]
        code = first.get("code")
        message = first.get("message") or ""
        return (code if isinstance(code, str) else None), str(message)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, ""


def read_error_body(resp: httpx.Response) -> bytes:
    """Up to 64 KiB of an error response's body (works for streamed responses too)."""
    if not resp.is_stream_consumed:
        data = bytearray()
        try:
            for chunk in resp.iter_raw():
                data += chunk
                if len(data) >= MAX_ERROR_BODY:
                    break
        except httpx.HTTPError:
            pass
        finally:
            resp.close()
        return bytes(data[:MAX_ERROR_BODY])
    try:
        return resp.content[:MAX_ERROR_BODY]
    except httpx.ResponseNotRead:
        return b""


def retry_after(resp: httpx.Response, limit: float) -> float | None:
    """Seconds the server asks us to wait (``Retry-After``: seconds or HTTP date), capped."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), limit)


def status_error(
    resp: httpx.Response,
    context: str,
    *,
    host: str,
    secrets: Iterable[str] = (),
    had_credentials: bool = False,
) -> RegistryError:
    """The error for an unexpected status of ``resp`` (whose body is read here, bounded)."""
    status = resp.status_code
    code, server_message = parse_errors(read_error_body(resp))
    url = redact_url(str(resp.request.url))
    label = (code or resp.reason_phrase or "error").lower().replace("_", " ")
    detail = scrub(one_line(server_message), secrets)
    text = f"{context}: {status} {label}" + (f": {detail}" if detail and detail != label else "")
    kw = {"status": status, "code": code, "url": url}
    if status == 401:
        if had_credentials:
            return AuthError(
                f"{context}: authentication failed for {host} (401 {label})",
                hint=f"check the credentials, e.g. run `lamina login {host}`",
                **kw,  # type: ignore[arg-type]
            )
        return AuthError(
            f"{context}: authentication required for {host}: run `lamina login {host}`",
            hint=f"run `lamina login {host}`",
            **kw,  # type: ignore[arg-type]
        )
    if status == 403:
        return AuthError(text, hint=f"check your access rights on {host}", **kw)  # type: ignore[arg-type]
    if status == 404:
        return RegistryNotFound(text, **kw)  # type: ignore[arg-type]
    if status in RETRY_STATUSES:
        return RegistryError(text, retryable=True, **kw)  # type: ignore[arg-type]
    return RegistryError(text, **kw)  # type: ignore[arg-type]


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def connection_error(
    exc: httpx.TransportError, context: str, url: str, *, peer: str = "registry"
) -> RegistryError:
    """The error for a request that got no answer (DNS, refused, TLS, timeout, dropped);
    ``peer`` names the other side in hints (``ADD URL`` talks to any web server)."""
    host = httpx.URL(url).netloc.decode()
    safe = redact_url(url)
    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            retry = cause.errno == socket.EAI_AGAIN
            return RegistryError(
                f"{context}: unknown host {host}", url=safe, retryable=retry,
                hint=f"check the {peer} name and your DNS",
            )  # fmt: skip
        if isinstance(cause, ConnectionRefusedError):
            return RegistryError(
                f"{context}: connection refused by {host}", url=safe, retryable=True,
                hint=f"is the {peer} running on that port?",
            )  # fmt: skip
        if isinstance(cause, ssl.SSLCertVerificationError):
            return RegistryError(
                f"{context}: tls certificate of {host} is not trusted",
                url=safe,
                hint=f"put its CA in /etc/docker/certs.d/{host}/ca.crt or disable tls verification",
            )
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return RegistryError(f"{context}: {host} is unreachable", url=safe, retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return RegistryError(f"{context}: timed out talking to {host}", url=safe, retryable=True)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return RegistryError(f"{context}: connection to {host} dropped", url=safe, retryable=True)
    kind = type(exc).__name__
    return RegistryError(f"{context}: connection to {host} failed ({kind})", url=safe)
