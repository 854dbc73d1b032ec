"""One registry endpoint over HTTP: scheme choice, authentication, retries, redirects.

A :class:`Transport` owns an ``httpx.Client`` and an :class:`~lamina.registry.auth.AuthState`
for one API host. Invariants:

- Scheme: HTTPS, except plain HTTP for loopback hosts; an ``insecure`` host is tried over HTTPS
  without verification first and over HTTP if that fails (Docker's rule). Decided once, by a
  ``GET /v2/`` ping that also learns the auth challenge.
- Retries: connection failures, 429 and 5xx are retried ``RetryPolicy.attempts`` times in all,
  with exponential backoff, honouring ``Retry-After`` up to ``max_delay`` seconds per wait.
  Request bodies are always ``bytes``, so every retry resends the same content.
- Redirects (GET/HEAD only, when asked): followed up to 5 times; the ``Authorization`` header is
  sent only to the registry's own origin, never to another host, and never downgraded to
  plain HTTP for a host that is not allowed it.
- The environment is never consulted (``trust_env=False``); nothing secret is logged (filters on the
  ``httpx``/``httpcore`` loggers redact the URLs those libraries log themselves).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import httpx

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import RegistryError
from lamina.registry.auth import AuthState, Credential, Scope, TokenRequest
from lamina.registry.endpoint import is_loopback, plain_http_allowed
from lamina.registry.redaction import redact_url
from lamina.registry.response import (
    RETRY_STATUSES,
    connection_error,
    retry_after,
    status_error,
)
from lamina.registry.tls import DEFAULT_CERTS_DIRS, ssl_context

log = logging.getLogger(__name__)
USER_AGENT = "lamina/0.1"


_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+")


class _RedactingFilter(logging.Filter):
    """Redacts every URL in httpx's and httpcore's own log lines (pre-signed storage URLs in
    ``Location`` headers, upload ``_state``), whatever the level the application enables."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "://" in text:
            record.msg = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
            record.args = ()
        return True


_FILTER = _RedactingFilter()
for _name in (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactingFilter) for f in _logger.filters):
        _logger.addFilter(_FILTER)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5


@lazy_dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all per request, waits from ``backoff`` doubling,
    each wait (including a server's ``Retry-After``) at most ``max_delay`` seconds;
    ``resumes`` bounds how often a dropped blob download is resumed."""

    attempts: int = 4
    backoff: float = 0.5
    max_delay: float = 10.0
    resumes: int = 5

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based), with jitter."""
        base = self.backoff * (2 ** (attempt - 1))
        return float(min(self.max_delay, base * (0.75 + random.random() / 2)))


@lazy_dataclass(frozen=True, kw_only=True)
class TransportOptions:
    """Connection settings shared by every endpoint of a client."""

    insecure: frozenset[str] | bool = False
    tls_verify: bool = True
    certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS
    retry: RetryPolicy = RetryPolicy()
    timeout: float = 60.0
    user_agent: str = USER_AGENT


class Transport:
    """HTTP to one registry API host (``name[:port]``). Thread-safe; close() when done."""

    def __init__(
        self,
        host: str,
        credential: Credential | None = None,
        options: TransportOptions | None = None,
        *,
        name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.name = name or host
        self.options = options or TransportOptions()
        self.sleep = sleep
        self._plain_ok = plain_http_allowed(host, self.options.insecure)
        self.auth = AuthState(
            host,
            credential,
            plain_http_ok=lambda h: plain_http_allowed(h, self.options.insecure),
        )
        verify = self.options.tls_verify and not (self._plain_ok and not is_loopback(host))
        self._client = httpx.Client(
            verify=ssl_context(host, verify=verify, certs_dirs=self.options.certs_dirs),
            timeout=httpx.Timeout(self.options.timeout, connect=min(10.0, self.options.timeout)),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": self.options.user_agent},
        )
        self._base: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close pooled connections (idempotent)."""
        self._client.close()

    def url(self, path: str) -> str:
        """Absolute URL of an API path such as ``/v2/name/tags/list``."""
        return self._ensure_base() + path

    def _ensure_base(self) -> str:
        with self._lock:
            if self._base is None:
                self._base = self._ping()
            return self._base

    def _ping(self) -> str:
        if is_loopback(self.host):
            schemes = ["http"]
        elif self._plain_ok:
            schemes = ["https", "http"]
        else:
            schemes = ["https"]
        error: RegistryError | None = None
        for scheme in schemes:
            base = f"{scheme}://{self.host}"
            try:
                resp = self._send("GET", base + "/v2/", {}, None, "pinging " + self.host)
            except RegistryError as exc:
                error = exc
                continue
            resp.close()
            if resp.status_code == 401:
                self.auth.on_unauthorized(resp.headers.get("WWW-Authenticate"), None)
            return base
        assert error is not None
        raise error

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        context: str,
        *,
        stream: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        """One request with retries on connection failures, 429 and 5xx; no auth handling."""
        policy = self.options.retry
        attempts = policy.attempts if retry else 1
        for attempt in range(1, attempts + 1):
            request = self._client.build_request(method, url, headers=headers, content=content)
            try:
                resp = self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                err = connection_error(exc, context, url)
                if not err.retryable or attempt == attempts:
                    raise err from None
                log.debug("%s %s: %s; retrying", method, redact_url(url), type(exc).__name__)
                self.sleep(policy.delay(attempt))
                continue
            log.debug("%s %s -> %d", method, redact_url(url), resp.status_code)
            if resp.status_code not in RETRY_STATUSES or attempt == attempts:
                return resp
            wait = retry_after(resp, policy.max_delay)
            resp.close()
            self.sleep(policy.delay(attempt) if wait is None else wait)
        raise AssertionError("unreachable")

    def _fetch_token(self, req: TokenRequest, context: str) -> None:
        headers = {"Authorization": req.authorization} if req.authorization else {}
        url, content = req.url, None
        if req.method == "GET":
            url = str(httpx.URL(req.url).copy_merge_params(list(req.params)))
        else:
            content = str(httpx.QueryParams(list(req.params))).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        resp = self._send(req.method, url, headers, content, context)
        try:
            body = resp.read()[: 1 << 20]
        finally:
            resp.close()
        self.auth.accept_token(req, resp.status_code, body)

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: Iterable[Scope],
        context: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        """Send an authenticated request; answer 401s; optionally follow redirects.

        Returns any non-401 response (the caller checks the status; a streamed response must
        be closed by the caller). Raises AuthError when authentication cannot succeed.
        """
        base = self._ensure_base()
        url = path_or_url if "://" in path_or_url else base + path_or_url
        if not same_origin(httpx.URL(url), httpx.URL(base)):
            # e.g. an upload location on a storage host: never send our credentials there
            return self._send(method, url, dict(headers or {}), content, context, stream=stream)
        scope_set = frozenset(scopes)
        sent: str | None = None
        for attempt in range(3):
            token_req = self.auth.token_request(scope_set)
            if token_req is not None:
                self._fetch_token(token_req, context)
            sent = self.auth.authorization(scope_set)
            all_headers = dict(headers or {})
            if sent:
                all_headers["Authorization"] = sent
            resp = self._send(
                method, url, all_headers, content, context, stream=stream, retry=retry
            )
            if resp.status_code == 401:
                challenge = resp.headers.get("WWW-Authenticate")
                if self.auth.on_unauthorized(challenge, sent) and attempt < 2:
                    resp.close()
                    continue
                raise self.error(resp, context, had_credentials=sent is not None)
            if follow_redirects and resp.status_code in _REDIRECTS and method in ("GET", "HEAD"):
                return self._follow(resp, method, all_headers, context, stream)
            return resp
        raise AssertionError("unreachable")

    def _follow(
        self,
        resp: httpx.Response,
        method: str,
        headers: dict[str, str],
        context: str,
        stream: bool,
    ) -> httpx.Response:
        origin = resp.request.url
        for _ in range(_MAX_REDIRECTS):
            location = resp.headers.get("Location")
            resp.close()
            if not location:
                raise RegistryError(
                    f"{context}: redirect without a location", status=resp.status_code
                )
            target = resp.request.url.join(location)
            if target.scheme not in ("http", "https"):
                raise RegistryError(f"{context}: redirect to a non-http url")
            netloc = target.netloc.decode()
            if (
                target.scheme == "http"
                and origin.scheme == "https"
                and not plain_http_allowed(netloc, self.options.insecure)
            ):
                raise RegistryError(
                    f"{context}: refusing redirect to plain http at {netloc}",
                    url=redact_url(str(target)),
                )
            same = same_origin(target, origin)
            hop_headers = dict(headers) if same else {
                k: v for k, v in headers.items() if k.lower() != "authorization"
            }  # fmt: skip
            resp = self._send(method, str(target), hop_headers, None, context, stream=stream)
            if resp.status_code not in _REDIRECTS:
                return resp
        resp.close()
        raise RegistryError(f"{context}: too many redirects", url=redact_url(str(resp.request.url)))

    def error(
        self, resp: httpx.Response, context: str, *, had_credentials: bool | None = None
    ) -> RegistryError:
        """The error describing an unexpected ``resp`` (reads and closes its body)."""
        if had_credentials is None:
            had_credentials = "Authorization" in resp.request.headers
        return status_error(
            resp,
            context,
            host=self.name,
            secrets=self.auth.secrets(),
            had_credentials=had_credentials
            and self.auth.credential is not None
            and bool(self.auth.credential.secrets()),
        )


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """True if both URLs have the same scheme, host and port."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
