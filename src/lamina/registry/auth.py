"""Registry authentication as an I/O-free state machine (challenge -> token -> header).

The transport drives an :class:`AuthState` per registry host:

1. ``token_request(scopes)``: if the registry's bearer challenge is known and no cached token
   covers ``scopes``, a :class:`TokenRequest` to perform (GET, or POST for OAuth2 refresh tokens);
   the transport sends it and hands the answer to ``accept_token``.
2. ``authorization(scopes)``: the ``Authorization`` value to send now (Basic, Bearer or None).
3. ``on_unauthorized(www_authenticate, sent)`` after a 401: learns the challenge, drops a
   rejected token, and says whether one more attempt can succeed.

Invariants: tokens are cached per (realm, service) and reused for any request whose scopes
they cover, until 10 s before they expire; a rejected token is never sent again; credentials
are sent to a token realm only over HTTPS or to a host allowed plain HTTP. No secret ever
appears in a ``repr`` or error message (:meth:`AuthState.secrets` lists them for scrubbing).
Thread-safe: the token cache is guarded by a lock.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import field
from urllib.parse import urlsplit

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import AuthError
from lamina.registry.redaction import redact_url

_TOKEN_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(,?)')
_EXPIRY_MARGIN = 10.0
_DEFAULT_TTL = 60.0
MAX_TOKEN_RESPONSE = 1 << 20


@lazy_dataclass(frozen=True)
class Credential:
    """What a user authenticates with; the secret fields never show in ``repr``."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    def secrets(self) -> list[str]:
        """The secret strings (for scrubbing text)."""
        return [s for s in (self.password, self.identity_token, self.registry_token) if s]

    def basic(self) -> str:
        """The ``Basic`` Authorization value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@lazy_dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: lowercase ``scheme`` and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str:
        """The ``realm`` parameter ('' if absent)."""
        return self.params.get("realm", "")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value (RFC 7235: several challenges, quoted params)."""
    out: list[Challenge] = []
    pos, text = 0, header or ""
    while pos < len(text):
        match = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)").match(text, pos)
        if not match:
            break
        scheme, pos = match.group(1).lower(), match.end()
        params: dict[str, str] = {}
        while True:
            param = _TOKEN_PARAM.match(text, pos)
            if not param:
                break
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            pos = param.end()
            if not param.group(3):
                break
        out.append(Challenge(scheme, params))
    return out


@lazy_dataclass(frozen=True, order=True)
class Scope:
    """A token scope ``type:name:actions`` such as ``repository:library/busybox:pull``."""

    kind: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse ``type:name:a,b`` (the name may contain ``:`` for a registry port)."""
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))

    @classmethod
    def repository(cls, name: str, *actions: str) -> Scope:
        """``repository:NAME:ACTIONS``."""
        return cls("repository", name, frozenset(actions))

    def covers(self, other: Scope) -> bool:
        """True if a token for this scope also grants ``other``."""
        return (self.kind, self.name) == (other.kind, other.name) and (
            other.actions <= self.actions or "*" in self.actions
        )

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}:{','.join(sorted(self.actions))}"


@lazy_dataclass(frozen=True)
class TokenRequest:
    """A token fetch the transport must perform: ``method`` to ``url`` with ``params``.

    For GET the params are the query; for POST they are the urlencoded form body.
    ``authorization`` carries credentials and is hidden from ``repr``.
    """

    method: str
    url: str
    params: tuple[tuple[str, str], ...]
    scopes: frozenset[Scope]
    authorization: str | None = field(default=None, repr=False)


@lazy_dataclass
class _Token:
    value: str = field(repr=False)
    scopes: frozenset[Scope]
    expires: float


class AuthState:
    """Authentication state for one registry host (see the module docstring for the protocol)."""

    def __init__(
        self,
        host: str,
        credential: Credential | None = None,
        *,
        plain_http_ok: Callable[[str], bool] = lambda _host: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.credential = credential
        self.challenge: Challenge | None = None
        self._plain_http_ok = plain_http_ok
        self._clock = clock
        self._tokens: list[_Token] = []
        self._lock = threading.Lock()

    def secrets(self) -> list[str]:
        """Every secret this state holds (credentials and cached tokens)."""
        with self._lock:
            tokens = [t.value for t in self._tokens]
        return (self.credential.secrets() if self.credential else []) + tokens

    def _cached(self, scopes: frozenset[Scope]) -> _Token | None:
        now = self._clock()
        with self._lock:
            self._tokens = [t for t in self._tokens if t.expires - _EXPIRY_MARGIN > now]
            for token in self._tokens:
                if all(any(have.covers(want) for have in token.scopes) for want in scopes):
                    return token
        return None

    def authorization(self, scopes: Iterable[Scope]) -> str | None:
        """The Authorization header value to send now, or None to go anonymous."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            cred = self.credential
            return cred.basic() if cred is not None and cred.username else None
        token = self._cached(frozenset(scopes))
        if token is not None:
            return f"Bearer {token.value}"
        if self.credential is not None and self.credential.registry_token:
            return f"Bearer {self.credential.registry_token}"
        return None

    def token_request(self, scopes: Iterable[Scope]) -> TokenRequest | None:
        """What to fetch before the next request, or None if nothing is needed."""
        wanted = frozenset(scopes) | self._challenge_scopes()
        if self.challenge is None or self.challenge.scheme != "bearer":
            return None
        if self._cached(frozenset(scopes)) is not None:
            return None
        cred = self.credential
        if cred is not None and cred.registry_token:
            return None
        realm = self.challenge.realm
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthError(f"{self.host}: invalid token realm {redact_url(realm)!r}")
        params: list[tuple[str, str]] = []
        if "service" in self.challenge.params:
            params.append(("service", self.challenge.params["service"]))
        sends_secret = cred is not None and bool(cred.identity_token or cred.username)
        if sends_secret and parts.scheme != "https" and not self._plain_http_ok(parts.netloc):
            raise AuthError(
                f"{self.host}: refusing to send credentials to {redact_url(realm)} over plain http"
            )
        scope_params = [("scope", str(s)) for s in sorted(wanted)]
        if cred is not None and cred.identity_token:
            form = [("grant_type", "refresh_token"), ("client_id", "lamina")]
            form += [("refresh_token", cred.identity_token), *params]
            if wanted:
                form.append(("scope", " ".join(str(s) for s in sorted(wanted))))
            return TokenRequest("POST", realm, tuple(form), wanted)
        basic = cred.basic() if cred is not None and cred.username else None
        if cred is not None and cred.username:
            params.append(("account", cred.username))
        return TokenRequest("GET", realm, tuple(params + scope_params), wanted, basic)

    def _challenge_scopes(self) -> frozenset[Scope]:
        if self.challenge is None or not self.challenge.params.get("scope"):
            return frozenset()
        return frozenset(Scope.parse(s) for s in self.challenge.params["scope"].split(" ") if s)

    def accept_token(self, request: TokenRequest, status: int, body: bytes) -> None:
        """Store the token from a token endpoint's answer; raise AuthError if there is none."""
        where = f"fetching a token for {self.host} from {redact_url(request.url)}"
        if status in (401, 403):
            raise AuthError(
                f"{where}: {status} {'unauthorized' if status == 401 else 'denied'}: "
                f"authentication failed for {self.host}",
                status=status,
                url=redact_url(request.url),
                hint=f"run `lamina login {self.host}`",
            )
        if status != 200:
            raise AuthError(f"{where}: unexpected status {status}", status=status, retryable=True)
        try:
            obj = json.loads(body)
            value = obj.get("token") or obj.get("access_token")
            ttl = float(obj.get("expires_in") or _DEFAULT_TTL)
        except (ValueError, AttributeError, TypeError):
            value, ttl = None, 0.0
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise AuthError(f"{where}: the token endpoint returned an invalid response")
        ttl = max(ttl, _DEFAULT_TTL)
        with self._lock:
            self._tokens.append(_Token(value, request.scopes, self._clock() + ttl))

    def on_unauthorized(self, www_authenticate: str | None, sent: str | None) -> bool:
        """Handle a 401; True if another attempt (with new auth) can succeed."""
        challenges = parse_challenges(www_authenticate or "")
        known = [c for c in challenges if c.scheme in ("bearer", "basic")]
        chosen = next((c for c in known if c.scheme == "bearer"), known[0] if known else None)
        if sent is not None and sent.startswith("Bearer "):
            value = sent.removeprefix("Bearer ")
            with self._lock:
                self._tokens = [t for t in self._tokens if t.value != value]
        if chosen is None:
            return False
        changed = chosen != self.challenge
        self.challenge = chosen
        if sent is None:
            return chosen.scheme == "bearer" or (
                self.credential is not None and bool(self.credential.username)
            )
        # A token was rejected: a fresh one may carry the scope the challenge now names.
        return changed or sent.startswith("Bearer ")
