"""Pure helpers of lamina.registry: host names, plain-HTTP policy, redaction, error mapping,
Retry-After, backoff, TLS trust from certs.d directories."""

from __future__ import annotations

import email.utils
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from lamina.errors import AuthError, InvalidReference, NotFound, RegistryError
from lamina.oci import Digest
from lamina.reference import parse
from lamina.registry import (
    RegistryClient,
    RegistryNotFound,
    RetryPolicy,
    redact_url,
    split_reference,
)
from lamina.registry.endpoint import (
    api_host,
    auth_key,
    check_repository,
    check_tag,
    is_loopback,
    normalize_host,
    plain_http_allowed,
)
from lamina.registry.redaction import one_line, scrub
from lamina.registry.response import parse_errors, retry_after, status_error
from lamina.registry.tls import ssl_context


@pytest.mark.parametrize(
    ("given", "name", "api"),
    [
        ("docker.io", "docker.io", "registry-1.docker.io"),
        ("index.docker.io", "docker.io", "registry-1.docker.io"),
        ("https://index.docker.io/v1/", "docker.io", "registry-1.docker.io"),
        ("Quay.IO", "quay.io", "quay.io"),
        ("http://user:pw@r:5000/v2/", "r:5000", "r:5000"),
        ("[::1]:5000", "[::1]:5000", "[::1]:5000"),
        ("::1", "[::1]", "[::1]"),
    ],
)
def test_host_names(given: str, name: str, api: str) -> None:
    assert normalize_host(given) == name
    assert api_host(given) == api


def test_auth_keys() -> None:
    assert auth_key("docker.io") == "https://index.docker.io/v1/"
    assert auth_key("R:5000") == "r:5000"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.9.9.9", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("128.0.0.1", False),
        ("10.0.0.1:5000", False),
        ("registry.example", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert plain_http_allowed(host) is loopback


def test_plain_http_for_insecure_registries_only() -> None:
    assert plain_http_allowed("r.example:5000", frozenset({"r.example:5000"}))
    assert not plain_http_allowed("r.example", frozenset({"r.example:5000"}))
    assert plain_http_allowed("anything.example", True)
    assert not plain_http_allowed("anything.example", False)


def test_redact_url() -> None:
    url = "https://bob:pw@storage.example/blob?X-Amz-Signature=abc&X-Amz-Credential=k&n=5"
    assert (
        redact_url(url)
        == "https://storage.example/blob?X-Amz-Signature=***&X-Amz-Credential=***&n=5"
    )
    up = "http://r/v2/a/blobs/uploads/u?_state=SECRET&digest=sha256:ab"
    assert redact_url(up) == "http://r/v2/a/blobs/uploads/u?_state=***&digest=sha256:ab"
    assert (
        redact_url("https://auth/token?access_token=t0k") == "https://auth/token?access_token=***"
    )
    assert redact_url("http://[bad") == "<unparseable url>"


def test_scrub_and_one_line() -> None:
    assert scrub("token abc123 and pw hunter2", ["abc123", "hunter2", "", "x"]) == (
        "token *** and pw ***"
    )
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 300).endswith("…") and len(one_line("x" * 300)) == 200


def test_parse_errors() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}'
    assert parse_errors(body) == ("MANIFEST_UNKNOWN", "manifest unknown")
    assert parse_errors(b"<html>") == (None, "")
    assert parse_errors(b'{"errors":[]}') == (None, "")


def response(status: int, body: bytes = b"", retry: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry} if retry is not None else {}
    request = httpx.Request("GET", "https://r.example/v2/a/manifests/x?_state=s3cr3t")
    return httpx.Response(status, content=body, headers=headers, request=request)


def test_status_errors_are_classified_by_status_and_code() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
    err = status_error(response(404, body), "fetching manifest r.example/a:x", host="r.example")
    assert isinstance(err, RegistryNotFound) and isinstance(err, NotFound)
    assert str(err) == "fetching manifest r.example/a:x: 404 manifest unknown"
    assert (err.status, err.code, err.url) == (
        404,
        "MANIFEST_UNKNOWN",
        "https://r.example/v2/a/manifests/x?_state=***",
    )
    denied = status_error(response(403), "pushing", host="r.example")
    assert isinstance(denied, AuthError) and denied.status == 403
    busy = status_error(response(503, b"down\nfor maintenance"), "pulling", host="r.example")
    assert type(busy) is RegistryError and busy.retryable and "\n" not in str(busy)
    secret = b'{"errors":[{"code":"DENIED","message":"token tok-123 rejected"}]}'
    leaked = status_error(response(400, secret), "x", host="r.example", secrets=["tok-123"])
    assert "tok-123" not in str(leaked) and "***" in str(leaked)


def test_401_messages() -> None:
    required = status_error(response(401), "pulling r.example/a", host="r.example")
    assert str(required) == (
        "pulling r.example/a: authentication required for r.example: run `lamina login r.example`"
    )
    failed = status_error(response(401), "pulling", host="r.example", had_credentials=True)
    assert isinstance(failed, AuthError) and "authentication failed for r.example" in str(failed)


def test_retry_after() -> None:
    assert retry_after(response(429, retry="3"), 10) == 3.0
    assert retry_after(response(429, retry="3600"), 10) == 10.0
    assert retry_after(response(429, retry="-5"), 10) == 0.0
    assert retry_after(response(429), 10) is None
    assert retry_after(response(429, retry="soon"), 10) is None
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    got = retry_after(response(503, retry=later), 10)
    assert got is not None and 3.0 <= got <= 5.0


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff=1.0, max_delay=3.0)
    assert 0.75 <= policy.delay(1) <= 1.25
    assert 1.5 <= policy.delay(2) <= 2.5
    assert policy.delay(5) == 3.0


def ca_names(ctx: ssl.SSLContext) -> list[str]:
    return [str(cert.get("subject")) for cert in ctx.get_ca_certs()]


def test_ssl_context_trusts_certs_d(tmp_path: Path) -> None:
    host_dir = tmp_path / "certs.d" / "r.example:5000"
    host_dir.mkdir(parents=True)
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=lamina-test-ca", "-keyout", str(tmp_path / "ca.key")),
            *("-out", str(host_dir / "ca.crt")),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl_context("r.example:5000", certs_dirs=[tmp_path / "certs.d"])
    assert any("lamina-test-ca" in name for name in ca_names(ctx))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    other = ssl_context("other.example", certs_dirs=[tmp_path / "certs.d"])
    assert not any("lamina-test-ca" in name for name in ca_names(other))
    off = ssl_context("r.example:5000", verify=False)
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    (host_dir / "client.cert").write_text("x")
    with pytest.raises(RegistryError, match=r"client\.key"):
        ssl_context("r.example:5000", certs_dirs=[tmp_path / "certs.d"])


def test_names_are_checked_before_they_reach_a_url() -> None:
    assert check_repository("team/app-1.x__y") == "team/app-1.x__y"
    for bad in ("../v2", "App", "a//b", "a/", "", "a?b", "x" * 256):
        with pytest.raises(InvalidReference):
            check_repository(bad)
    assert check_tag("v1.2_3-rc") == "v1.2_3-rc"
    for bad in (".hidden", "-x", "a/b", "x" * 129, "", "a b"):
        with pytest.raises(InvalidReference):
            check_tag(bad)
    with RegistryClient("127.0.0.1:9") as rc, pytest.raises(InvalidReference):
        rc.get_manifest("ok/repo", "../../tags/list")


def test_split_reference() -> None:
    ref = parse("busybox:1.36")
    assert split_reference(ref) == ("library/busybox", "1.36")
    pinned = parse("r:5000/a/b:v1@sha256:" + "a" * 64)
    assert split_reference(pinned) == ("a/b", Digest.parse("sha256:" + "a" * 64))
