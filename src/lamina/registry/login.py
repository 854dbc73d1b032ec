"""``login`` and ``logout``: verify credentials against a registry, then store or forget them.

Invariants: nothing is written unless the registry accepted the credentials; the auth file is
replaced atomically with mode 0600 (or the credentials go to its credential helper); the
password never appears in an error message or log line.
"""

from __future__ import annotations

from pathlib import Path

from lamina.registry.auth import Credential
from lamina.registry.client import RegistryClient
from lamina.registry.credentials import AuthFile, StaticCredentials
from lamina.registry.endpoint import normalize_host
from lamina.registry.transport import TransportOptions


def login(
    host: str,
    username: str,
    password: str,
    *,
    auth_file: Path,
    options: TransportOptions | None = None,
    helper_path: str | None = None,
) -> None:
    """Check ``username``/``password`` with ``host`` (``GET /v2/``, via its token service if it
    has one) and save them in ``auth_file``. Raises AuthError if the registry refuses them."""
    name = normalize_host(host)
    cred = Credential(username, password)
    with RegistryClient(name, credentials=StaticCredentials({name: cred}), options=options) as rc:
        rc.check_auth()
    AuthFile(auth_file, helper_path=helper_path).store(name, cred)


def logout(host: str, *, auth_file: Path, helper_path: str | None = None) -> bool:
    """Forget the credentials for ``host`` in ``auth_file``; True if there were any."""
    return AuthFile(auth_file, helper_path=helper_path).erase(normalize_host(host))
