"""A real OCI registry on 127.0.0.1 for tests: Debian's ``docker-registry`` plus a token server.

:func:`run_registry` starts ``/usr/bin/docker-registry serve CONFIG`` on a free loopback port
with a temporary storage directory and, optionally, htpasswd basic auth or bearer-token auth.
For token auth a :class:`lamina.testing.tokenserver.TokenServer` issues the bearer tokens.

Invariants: everything listens on 127.0.0.1 only; the registry process and the token server
are stopped (and the storage removed with the temp dir the caller owns) when the context exits,
even on error. Passwords are hashed with bcrypt (``htpasswd -B`` from apache2-utils, or the
``bcrypt`` Python package). Never imported by the lamina package itself.

For test modules, :func:`registry_fixture` makes the module-scoped fixture that runs one such
registry, and :func:`write_auth_file` the client credential file that logs into it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.testing.command import run_command
from lamina.testing.tls import CertAuthority
from lamina.testing.tokenserver import ISSUER, SERVICE, Signer, TokenServer

if TYPE_CHECKING:
    import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    """True if the docker-registry binary is installed."""
    return os.access(REGISTRY_BIN, os.X_OK)


def _bcrypt_line(user: str, password: str) -> str:
    if shutil.which("htpasswd"):
        out = run_command(["htpasswd", "-nbB", "-C", "4", user, password], name="htpasswd")
        return out.out.strip()
    import bcrypt  # type: ignore[import-not-found]

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    return f"{user}:{hashed}"


@lazy_dataclass
class RegistryServer:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``users`` maps names to passwords."""

    host: str
    root: Path
    users: dict[str, str]
    token_server: TokenServer | None
    log_path: Path
    scheme: str = "http"
    ca: CertAuthority | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://NAME:PORT`` with TLS)."""
        return f"{self.scheme}://{self.host}"

    def trust(self, certs_d: Path) -> Path:
        """Install the CA of this TLS registry as ``certs_d/HOST:PORT/ca.crt``; returns it."""
        if self.ca is None:
            raise RuntimeError(f"{self.host} serves plain http: there is no CA to trust")
        return self.ca.install(certs_d, self.host)

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
        token = TokenServer(Signer(directory), users, anonymous_pull)
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
        server = RegistryServer(host, directory, users, token, log_path, scheme, tls)
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


def registry_fixture(
    prefix: str,
    *,
    tls: bool = False,
    each_auth: bool = False,
    seed: Callable[[RegistryServer], None] | None = None,
    **options: Any,
) -> object:
    """A module-scoped pytest fixture yielding a :func:`run_registry` server; bind it to the
    fixture's name at module level (``registry = registry_fixture("reg", users=USERS)``).

    The server stores under a fresh ``tmp_path_factory.mktemp(prefix)`` and stops when the
    module's last test is done. ``options`` go to :func:`run_registry` unchanged; ``tls`` gives
    it a fresh CA (``server.ca``, :meth:`RegistryServer.trust`); ``each_auth`` parametrizes the
    fixture over htpasswd basic auth and bearer tokens (ids ``basic`` and ``token``);
    ``seed(server)`` runs once after the start, before the first test.
    """
    import pytest

    @pytest.fixture(scope="module", params=["basic", "token"] if each_auth else None)
    def fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[RegistryServer]:
        directory = tmp_path_factory.mktemp(prefix)
        kw = dict(options)
        if each_auth:
            kw["token_auth"] = request.param == "token"
        if tls:
            kw["tls"] = CertAuthority.create(directory / "ca")
        with run_registry(directory, **kw) as server:
            if seed is not None:
                seed(server)
            yield server

    return fixture


def auth_token(user: str, password: str) -> str:
    """The ``auth`` value of a credential file entry: base64 of ``user:password``."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def write_auth_file(path: Path, host: str, user: str, password: str) -> Path:
    """Write a Docker/containers credential file (``{"auths": {host: {"auth": ...}}}``) at
    ``path`` (parents created) logging ``user`` into ``host``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": {host: {"auth": auth_token(user, password)}}}))
    return path
