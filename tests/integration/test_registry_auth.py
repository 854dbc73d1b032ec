"""Registry authentication against the real docker-registry: htpasswd basic auth and the
bearer-token flow with lamina.testing's token server; login/logout; credential helpers."""

from __future__ import annotations

import base64
import io
import json
import logging
import stat
from pathlib import Path

import pytest

from lamina.errors import AuthError
from lamina.oci import Descriptor, Manifest, mediatype
from lamina.registry import (
    AuthFile,
    Credential,
    RegistryClient,
    RetryPolicy,
    StaticCredentials,
    TransportOptions,
    default_provider,
    login,
    logout,
)
from lamina.testing import registry as testreg

pytestmark = [pytest.mark.needs_registry]

FAST = TransportOptions(retry=RetryPolicy(attempts=2, backoff=0.01, max_delay=0.1))
USER, PASSWORD = "alice", "correct-horse-battery-staple"
BAD_PASSWORD = "hunter2-wrong-password"
basic_registry = testreg.registry_fixture("basic", users={USER: PASSWORD})
token_registry = testreg.registry_fixture("token", users={USER: PASSWORD}, token_auth=True)


def client_for(server: testreg.RegistryServer, password: str | None = PASSWORD) -> RegistryClient:
    creds = None
    if password is not None:
        creds = StaticCredentials({server.host: Credential(USER, password)})
    return RegistryClient(server.host, credentials=creds, options=FAST)


def push_small(rc: RegistryClient, repo: str, tag: str = "v1") -> Descriptor:
    """Push an image with one config blob; return the config descriptor."""
    config = json.dumps({"os": "linux", "architecture": "amd64", "repo": repo}).encode()
    cdesc = Descriptor.of_bytes(mediatype.OCI_CONFIG, config)
    rc.put_blob(repo, io.BytesIO(config), cdesc)
    body = Manifest(config=cdesc, layers=()).to_json()
    rc.put_manifest(repo, tag, body, mediatype.OCI_MANIFEST)
    return cdesc


def assert_no_secret(text: str) -> None:
    for secret in (
        PASSWORD,
        BAD_PASSWORD,
        testreg.auth_token(USER, PASSWORD),
    ):
        assert secret not in text


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_push_and_pull_with_credentials(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server: testreg.RegistryServer = request.getfixturevalue(f"{kind}_registry")
    with client_for(server) as rc:
        cdesc = push_small(rc, f"{kind}/app")
        data, _, _ = rc.get_manifest(f"{kind}/app", "v1")
        assert Manifest.from_json(data).config == cdesc
        with rc.open_blob(f"{kind}/app", cdesc) as f:
            assert Descriptor.of_bytes(cdesc.media_type, f.read()) == cdesc
    assert_no_secret(caplog.text)


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_anonymous_push_needs_login(kind: str, request: pytest.FixtureRequest) -> None:
    server: testreg.RegistryServer = request.getfixturevalue(f"{kind}_registry")
    with client_for(server, None) as rc, pytest.raises(AuthError) as info:
        push_small(rc, f"{kind}/anon")
    msg = str(info.value)
    assert f"authentication required for {server.host}: run `lamina login {server.host}`" in msg
    assert info.value.status == 401 and "\n" not in msg


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_bad_password_is_one_line_without_the_password(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server: testreg.RegistryServer = request.getfixturevalue(f"{kind}_registry")
    with client_for(server, BAD_PASSWORD) as rc, pytest.raises(AuthError) as info:
        rc.get_manifest(f"{kind}/app", "v1")
    err = info.value
    assert "authentication failed" in str(err) and "\n" not in str(err)
    assert err.status == 401
    for text in (str(err), repr(err), err.hint or "", err.url or "", caplog.text):
        assert_no_secret(text)


def test_token_cached_per_scope_and_anonymous_pull(token_registry: testreg.RegistryServer) -> None:
    token_server = token_registry.token_server
    assert token_server is not None
    with client_for(token_registry) as rc:
        push_small(rc, "tok/cache")
        before = len(token_server.requests)
        for _ in range(3):
            rc.get_manifest("tok/cache", "v1")  # a pull,push token covers pull
        assert len(token_server.requests) == before
    with client_for(token_registry, None) as anon:
        anon.get_manifest("tok/cache", "v1")
        anon.get_manifest("tok/cache", "v1")
    anon_requests = [r for r in token_server.requests[before:] if r["account"] is None]
    assert [r["scopes"] for r in anon_requests] == [["repository:tok/cache:pull"]]


def test_expired_token_is_refreshed_on_401(token_registry: testreg.RegistryServer) -> None:
    token_server = token_registry.token_server
    assert token_server is not None
    with client_for(token_registry) as rc:
        push_small(rc, "tok/refresh")
    token_server.expire_next = 1
    with client_for(token_registry) as rc:
        before = len(token_server.requests)
        assert rc.get_manifest("tok/refresh", "v1")[1] == mediatype.OCI_MANIFEST
        assert len(token_server.requests) - before == 2


def test_mount_asks_for_both_scopes(token_registry: testreg.RegistryServer) -> None:
    token_server = token_registry.token_server
    assert token_server is not None
    with client_for(token_registry) as rc:
        cdesc = push_small(rc, "tok/src")
        assert rc.mount_blob("tok/dst", cdesc, "tok/src")
        assert rc.has_blob("tok/dst", cdesc.digest)
    scopes = [set(r["scopes"]) for r in token_server.requests]
    assert {"repository:tok/dst:pull,push", "repository:tok/src:pull"} in scopes


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_login_stores_then_logout_forgets(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: testreg.RegistryServer = request.getfixturevalue(f"{kind}_registry")
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text('{"auths": {}, "experimental": "enabled"}')
    with pytest.raises(AuthError) as info:
        login(server.host, USER, BAD_PASSWORD, auth_file=config, options=FAST)
    assert_no_secret(str(info.value))
    assert json.loads(config.read_text())["auths"] == {}
    login(server.host, USER, PASSWORD, auth_file=config, options=FAST)
    saved = json.loads(config.read_text())
    assert saved["experimental"] == "enabled"
    assert base64.b64decode(saved["auths"][server.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    provider = default_provider({"DOCKER_CONFIG": str(config.parent)}, tmp_path)
    with RegistryClient(server.host, credentials=provider, options=FAST) as rc:
        push_small(rc, f"{kind}/login")
    assert logout(server.host, auth_file=config) is True
    assert logout(server.host, auth_file=config) is False
    assert json.loads(config.read_text())["auths"] == {}


def test_credential_helper_supplies_the_password(
    token_registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    helper = tmp_path / "bin" / "docker-credential-lamina-test"
    helper.parent.mkdir()
    reply = json.dumps({"ServerURL": token_registry.host, "Username": USER, "Secret": PASSWORD})
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\nread url\n[ "$url" = "{token_registry.host}" ] || exit 1\n'
        f"echo '{reply}'\n"
    )
    helper.chmod(0o755)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {token_registry.host: "lamina-test"}}))
    auth_file = AuthFile(config, helper_path=str(helper.parent))
    with RegistryClient(token_registry.host, credentials=auth_file, options=FAST) as rc:
        push_small(rc, "tok/helper")
