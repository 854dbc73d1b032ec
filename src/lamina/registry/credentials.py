"""Registry credentials: Docker's ``config.json``, podman's ``auth.json``, credential helpers.

Both files share the ``auths`` map (``{"auths": {"KEY": {"auth": base64("user:pass")}}}``, or
``identitytoken`` / ``registrytoken``); Docker's file may also name ``credHelpers`` (per host) and
``credsStore`` (default) programs ``docker-credential-NAME`` that speak the helper protocol:
``get``/``erase`` read the server URL on stdin, ``store`` reads ``{"ServerURL", "Username",
"Secret"}``; ``get`` prints ``{"Username", "Secret"}`` (``Username`` ``<token>`` marks an identity
token). Keys are compared by host (``https://r/v1/`` = ``r``); podman keys may add a namespace
(``r/team``), and the most specific one wins.

Invariants: library code never reads the environment — :func:`default_auth_files` takes it as
an argument; writes are atomic with mode 0600 and keep every other key of the file; secrets
never appear in a message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from lamina._internal.fileio import read_regular, write_atomic
from lamina._internal.log import get_logger
from lamina.errors import AuthError
from lamina.registry.auth import Credential
from lamina.registry.endpoint import DOCKER_HUB, DOCKER_HUB_AUTH_KEY, auth_key, normalize_host

log = get_logger(__name__)
MAX_CONFIG = 4 << 20
_TOKEN_USER = "<token>"


class CredentialProvider(Protocol):
    """Anything that finds credentials for a registry host (``docker.io``, ``r:5000``)."""

    def get(self, host: str, repository: str | None = None) -> Credential | None: ...


class StaticCredentials:
    """Credentials given in code: ``{host: Credential}``."""

    def __init__(self, table: Mapping[str, Credential]) -> None:
        self._table = {normalize_host(h): c for h, c in table.items()}

    def get(self, host: str, repository: str | None = None) -> Credential | None:
        """The credential for ``host`` or None."""
        return self._table.get(normalize_host(host))


class ChainProvider:
    """Ask several providers in order; the first answer wins."""

    def __init__(self, providers: Sequence[CredentialProvider]) -> None:
        self.providers = list(providers)

    def get(self, host: str, repository: str | None = None) -> Credential | None:
        """The first credential any provider has for ``host``."""
        for provider in self.providers:
            cred = provider.get(host, repository)
            if cred is not None:
                return cred
        return None


def _key_target(key: str) -> tuple[str, str]:
    """``(host, namespace)`` of an ``auths`` key; Docker's ``/v1/``-style paths are dropped."""
    text = key.split("://", 1)[1] if "://" in key else key
    host, _, path = text.partition("/")
    path = path.strip("/")
    if path in ("v1", "v2"):
        path = ""
    return normalize_host(host), path


def _server_url(host: str) -> str:
    host = normalize_host(host)
    return DOCKER_HUB_AUTH_KEY if host == DOCKER_HUB else host


class AuthFile:
    """A Docker ``config.json`` or a containers ``auth.json`` at ``path`` (may not exist yet).

    ``helper_path`` is a PATH-style search path for ``docker-credential-*`` programs (None:
    the process's PATH).
    """

    def __init__(self, path: Path, *, helper_path: str | None = None) -> None:
        self.path = Path(path)
        self.helper_path = helper_path

    def read(self) -> dict[str, Any]:
        """The file's JSON object ({} if the file does not exist)."""
        try:
            data = read_regular(self.path, MAX_CONFIG)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AuthError(f"reading {self.path}: {exc.strerror}") from None
        try:
            obj = json.loads(data) if data.strip() else {}
        except ValueError:
            raise AuthError(f"reading {self.path}: invalid JSON") from None
        if not isinstance(obj, dict):
            raise AuthError(f"reading {self.path}: expected a JSON object")
        return obj

    def _helper_for(self, config: dict[str, Any], host: str) -> str | None:
        helpers = config.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if _key_target(key) == (normalize_host(host), "") and isinstance(name, str):
                    return name
        store = config.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, host: str, repository: str | None = None) -> Credential | None:
        """Credentials for ``host`` (and ``repository`` for namespaced keys), or None."""
        config = self.read()
        helper = self._helper_for(config, host)
        if helper is not None:
            cred = self._helper_get(helper, host)
            if cred is not None:
                return cred
        auths = config.get("auths")
        if not isinstance(auths, dict):
            return None
        host = normalize_host(host)
        best: tuple[int, dict[str, Any]] | None = None
        for key, entry in auths.items():
            entry_host, namespace = _key_target(key)
            if entry_host != host or not isinstance(entry, dict):
                continue
            if namespace and not (repository and (repository + "/").startswith(namespace + "/")):
                continue
            if best is None or len(namespace) > best[0]:
                best = (len(namespace), entry)
        return self._decode(best[1], key=host) if best else None

    def _decode(self, entry: dict[str, Any], *, key: str) -> Credential | None:
        user, password = entry.get("username") or "", entry.get("password") or ""
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                raw = base64.b64decode(entry["auth"], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError(f"reading {self.path}: invalid 'auth' entry for {key}") from None
            user, sep, password = raw.partition(":")
            if not sep:
                raise AuthError(f"reading {self.path}: invalid 'auth' entry for {key}")
        identity = entry.get("identitytoken") or ""
        token = entry.get("registrytoken") or ""
        if not (user or identity or token):
            return None
        return Credential(str(user), str(password), str(identity), str(token))

    def _run_helper(self, name: str, verb: str, stdin: str) -> subprocess.CompletedProcess[str]:
        program = shutil.which(f"docker-credential-{name}", path=self.helper_path)
        if program is None:
            raise AuthError(
                f"credential helper docker-credential-{name} not found",
                hint=f"install it or remove it from {self.path}",
            )
        return subprocess.run(
            [program, verb], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    def _helper_get(self, name: str, host: str) -> Credential | None:
        try:
            done = self._run_helper(name, "get", _server_url(host))
        except AuthError as exc:
            log.warning("%s", exc.message)
            return None
        if done.returncode != 0:
            # The protocol reports "credentials not found" on stdout with a non-zero status;
            # any other failure also means: no credentials from this helper.
            log.debug("docker-credential-%s get %s: status %d", name, host, done.returncode)
            return None
        try:
            obj = json.loads(done.stdout)
            user, secret = str(obj.get("Username") or ""), str(obj.get("Secret") or "")
        except (ValueError, AttributeError):
            raise AuthError(f"docker-credential-{name} get: invalid JSON output") from None
        if user == _TOKEN_USER:
            return Credential(identity_token=secret)
        return Credential(user, secret) if user or secret else None

    def store(self, host: str, cred: Credential) -> None:
        """Save ``cred`` for ``host`` (through the file's helper if it names one). Atomic, 0600."""
        config = self.read()
        helper = self._helper_for(config, host)
        if helper is not None:
            user = cred.username if not cred.identity_token else _TOKEN_USER
            secret = cred.identity_token or cred.password
            payload = json.dumps(
                {"ServerURL": _server_url(host), "Username": user, "Secret": secret}
            )
            done = self._run_helper(helper, "store", payload)
            if done.returncode != 0:
                raise AuthError(f"docker-credential-{helper} store: status {done.returncode}")
            return
        auths = config.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise AuthError(f"writing {self.path}: 'auths' is not an object")
        for key in [k for k in auths if _key_target(k) == (normalize_host(host), "")]:
            del auths[key]
        entry: dict[str, str] = {}
        if cred.identity_token:
            entry["identitytoken"] = cred.identity_token
        else:
            raw = f"{cred.username}:{cred.password}".encode()
            entry["auth"] = base64.b64encode(raw).decode()
        auths[auth_key(host)] = entry
        self._write(config)

    def erase(self, host: str) -> bool:
        """Forget ``host``'s credentials; True if something was removed. Idempotent."""
        config = self.read()
        helper = self._helper_for(config, host)
        removed = False
        if helper is not None:
            removed = self._run_helper(helper, "erase", _server_url(host)).returncode == 0
        auths = config.get("auths")
        if isinstance(auths, dict):
            keys = [k for k in auths if _key_target(k)[0] == normalize_host(host)]
            for key in keys:
                del auths[key]
            if keys:
                self._write(config)
                removed = True
        return removed

    def _write(self, config: dict[str, Any]) -> None:
        data = json.dumps(config, indent="\t").encode() + b"\n"
        try:
            write_atomic(self.path, data, 0o600)
        except OSError as exc:
            raise AuthError(f"writing {self.path}: {exc.strerror}") from None


def default_auth_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """Where to look for credentials, first match wins: the explicit ``REGISTRY_AUTH_FILE``,
    Docker's ``$DOCKER_CONFIG/config.json`` (or ``~/.docker/config.json``), then podman's
    ``$XDG_RUNTIME_DIR/containers/auth.json`` and ``~/.config/containers/auth.json``.

    ``env`` is passed in (by the CLI); this function never reads ``os.environ``.
    """
    paths: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(env["REGISTRY_AUTH_FILE"]))
    docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    paths.append(docker_dir / "config.json")
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    paths.append(home / ".config" / "containers" / "auth.json")
    return paths


def default_provider(
    env: Mapping[str, str], home: Path, *, auth_file: Path | None = None
) -> ChainProvider:
    """A provider over ``auth_file`` (``--authfile``) or else :func:`default_auth_files`."""
    paths = [auth_file] if auth_file is not None else default_auth_files(env, home)
    return ChainProvider([AuthFile(p, helper_path=env.get("PATH")) for p in paths])
