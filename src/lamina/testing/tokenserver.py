"""A bearer-token server for the test registry: issues RS256 JWTs as docker-registry's
``auth: token`` expects them.

:class:`TokenServer` serves ``GET /token?service=...&scope=...`` on 127.0.0.1 (``http.server`` in
a daemon thread), checks basic credentials against ``users`` and grants every requested action to
a user, only ``pull`` to anonymous callers. The tokens are signed with a throw-away RSA key whose
self-signed certificate (:attr:`Signer.cert_path`) the registry trusts as its
``rootcertbundle``. Keys come from the ``cryptography`` package, else the ``openssl`` CLI. Never
imported by the lamina package itself.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import threading
import time
import uuid
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.testing.command import run_command

SERVICE = "lamina-test-registry"
ISSUER = "lamina-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """An RSA key and self-signed certificate; signs JWS inputs with RS256."""

    def __init__(self, directory: Path) -> None:
        self.key_path = directory / "token.key"
        self.cert_path = directory / "token.crt"
        run_command(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", "/CN=lamina-token", "-keyout", str(self.key_path)),
                *("-out", str(self.cert_path)),
            ],
        )
        pem = self.cert_path.read_text()
        body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
        self.cert_der_b64 = "".join(body.split())
        self._key: Any = None
        with contextlib.suppress(ImportError):
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            self._key = load_pem_private_key(self.key_path.read_bytes(), None)

    def sign(self, data: bytes) -> bytes:
        """RS256 (PKCS#1 v1.5, SHA-256) signature of ``data``."""
        if self._key is not None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            return bytes(self._key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        return run_command(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_path)], stdin=data
        ).raw


@lazy_dataclass
class TokenServer:
    """Issues registry bearer tokens; records each request's scopes and account.

    Fault knobs: ``garbage`` answers with HTML instead of JSON; ``expire_next`` issues that many
    tokens that are already expired (while claiming a 300 s lifetime).
    """

    signer: Signer
    users: dict[str, str]
    anonymous_pull: bool = True
    garbage: bool = False
    expire_next: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        """The token endpoint URL."""
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, account: str | None, scopes: list[str]) -> str:
        """A signed JWT granting ``scopes`` (all actions to users, pull to anonymous)."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = actions.split(",") if account else ["pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        exp = now + 300
        if self.expire_next > 0:  # an already-expired token (the registry will answer 401)
            self.expire_next -= 1
            exp = now - 120  # the registry allows 60 s of clock skew
        claims = {"iss": ISSUER, "sub": account or "", "aud": SERVICE, "exp": exp}
        claims |= {"nbf": now - 300, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.signer.cert_der_b64]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        return f"{signing_input}.{_b64url(self.signer.sign(signing_input.encode()))}"

    def _account(self, authorization: str | None) -> tuple[bool, str | None]:
        if not authorization:
            return self.anonymous_pull, None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return self.users.get(user) == password, user

    def handle(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        """Answer one token request."""
        query = parse_qs(urlsplit(path).query)
        ok, account = self._account(authorization)
        self.requests.append({"account": account, "scopes": query.get("scope", []), "ok": ok})
        if not ok:
            return 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
        if self.garbage:
            return 200, b"<html>this is not a token</html>"
        token = self.issue(account, query.get("scope", []))
        body = {"token": token, "access_token": token, "expires_in": 300}
        return 200, json.dumps(body).encode()

    def start(self) -> None:
        """Serve in a daemon thread."""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = owner.handle(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
