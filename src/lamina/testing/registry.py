"""A real OCI registry on 127.0.0.1 for tests: Debian's ``docker-registry`` plus a token server.

:func:`run_registry` starts ``/usr/bin/docker-registry serve CONFIG`` on a free loopback port
with a temporary storage directory and, optionally, htpasswd basic auth or bearer-token auth.
For token auth a tiny token server (``http.server`` in a thread) issues RS256 JWTs signed with a
throw-away key whose self-signed certificate is the registry's ``rootcertbundle``.

Invariants: everything listens on 127.0.0.1 only; the registry process and the token server
are stopped (and the storage removed with the temp dir the caller owns) when the context exits,
even on error. Passwords are hashed with bcrypt (``htpasswd -B`` from apache2-utils, or the
``bcrypt`` Python package). Keys come from the ``cryptography`` package, else the ``openssl``
CLI. Never imported by the lamina package itself.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lamina.testing.tls import CertAuthority

REGISTRY_BIN = "/usr/bin/docker-registry"
SERVICE = "lamina-test-registry"
ISSUER = "lamina-test-issuer"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    """True if the docker-registry binary is installed."""
    return os.access(REGISTRY_BIN, os.X_OK)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bcrypt_line(user: str, password: str) -> str:
    if shutil.which("htpasswd"):
        out = subprocess.run(
            ["htpasswd", "-nbB", "-C", "4", user, password],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.strip()
    import bcrypt  # type: ignore[import-not-found]

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    return f"{user}:{hashed}"


class _Signer:
    """An RSA key and self-signed certificate; signs JWS inputs with RS256."""

    def __init__(self, directory: Path) -> None:
        self.key_path = directory / "token.key"
        self.cert_path = directory / "token.crt"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", "/CN=lamina-token", "-keyout", str(self.key_path)),
                *("-out", str(self.cert_path)),
            ],
            check=True,
            capture_output=True,
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
        return subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
            input=data,
            check=True,
            capture_output=True,
        ).stdout


@dataclass
class TokenServer:
    """Issues registry bearer tokens; records each request's scopes and account.

    Fault knobs: ``garbage`` answers with HTML instead of JSON; ``expire_next`` issues that many
    tokens that are already expired (while claiming a 300 s lifetime).
    """

    signer: _Signer
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


@dataclass
class RegistryServer:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``users`` maps names to passwords."""

    host: str
    root: Path
    users: dict[str, str]
    token_server: TokenServer | None
    log_path: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://NAME:PORT`` with TLS)."""
        return f"{self.scheme}://{self.host}"

    def blob_gets(self, repository: str) -> list[str]:
        """Digests of the blobs fetched (GET) from ``repository`` so far, in order (needs
        ``access_log=True``)."""
        marker = f'"GET /v2/{repository}/blobs/'
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if marker in line:
                out.append(line.split(marker, 1)[1].split(" ", 1)[0])
        return out


def _config(
    root: Path,
    port: int,
    htpasswd: Path | None,
    token: TokenServer | None,
    *,
    access_log: bool = False,
    tls: tuple[Path, Path] | None = None,
) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        f"    disabled: {'false' if access_log else 'true'}",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'storage'}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: lamina-test-secret",
    ]
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd is not None:
        lines += ["auth:", "  htpasswd:", "    realm: lamina-test", f"    path: {htpasswd}"]
    elif token is not None:
        lines += ["auth:", "  token:", f"    realm: {token.realm}", f"    service: {SERVICE}"]
        lines += [f"    issuer: {ISSUER}", f"    rootcertbundle: {token.signer.cert_path}"]
    return "\n".join(lines) + "\n"


def _wait_ready(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, ca: Path | None = None
) -> None:
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log_path.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/v2/", timeout=1, context=context).close()
            return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for auth
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not become ready in 15 s")


@contextlib.contextmanager
def run_registry(
    directory: Path,
    *,
    users: dict[str, str] | None = None,
    token_auth: bool = False,
    anonymous_pull: bool = True,
    access_log: bool = False,
    tls: CertAuthority | None = None,
) -> Iterator[RegistryServer]:
    """Run a registry storing under ``directory`` (which the caller owns and removes).

    ``users`` without ``token_auth`` enables htpasswd basic auth; with ``token_auth`` the users
    authenticate at the token server instead (anonymous pulls allowed if ``anonymous_pull``).
    ``access_log`` writes the registry's access log into ``log_path``
    (:meth:`RegistryServer.blob_gets`). ``tls`` serves HTTPS with a certificate of that CA for
    :func:`lamina.testing.tls.loopback_name` (``host`` is then ``NAME:PORT``, not an IP
    literal, so clients take the HTTPS path they use for remote registries).
    """
    directory.mkdir(parents=True, exist_ok=True)
    users = dict(users or {})
    htpasswd = None
    token = None
    if token_auth:
        token = TokenServer(_Signer(directory), users, anonymous_pull)
        token.start()
    elif users:
        htpasswd = directory / "htpasswd"
        htpasswd.write_text("".join(_bcrypt_line(u, p) + "\n" for u, p in users.items()))
    port = free_port()
    host = f"127.0.0.1:{port}"
    server_cert = None
    if tls is not None:
        host = f"{tls.name}:{port}"
        server_cert = tls.server_cert(directory / "tls")
    config = directory / "config.yml"
    config.write_text(
        _config(directory, port, htpasswd, token, access_log=access_log, tls=server_cert)
    )
    log_path = directory / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        scheme = "https" if tls is not None else "http"
        server = RegistryServer(host, directory, users, token, log_path, scheme)
        _wait_ready(server.url, proc, log_path, tls.ca_cert if tls is not None else None)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if token is not None:
            token.stop()
