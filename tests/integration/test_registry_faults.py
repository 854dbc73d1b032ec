"""Faults the real registry cannot produce, injected by a small HTTP proxy in a thread.

The proxy (``http.server`` on 127.0.0.1) forwards to the real docker-registry and, per test,
redirects blobs to a "storage" server on another loopback address (127.0.0.2), drops
connections mid-blob, corrupts bytes, lies in Docker-Content-Digest, answers 429/500, sends
oversized manifests, paginates tag lists, or fronts a token endpoint that returns garbage.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lamina.errors import AuthError, DigestMismatch, InvalidManifest, RegistryError
from lamina.oci import Descriptor, Digest, Manifest, mediatype
from lamina.registry import (
    Credential,
    RegistryClient,
    RetryPolicy,
    StaticCredentials,
    TransportOptions,
)
from lamina.testing import registry as testreg

pytestmark = [pytest.mark.needs_registry]

FAST = TransportOptions(retry=RetryPolicy(attempts=3, backoff=0.01, max_delay=0.1, resumes=3))
BLOB = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(6250))  # 200 000 bytes
BLOB_DESC = Descriptor.of_bytes(mediatype.OCI_LAYER, BLOB)
SECRET_SIG = "s3cr3t-signature-value"
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class Faults:
    """What the proxy should break, and what it saw."""

    upstream: str
    modes: set[str] = field(default_factory=set)
    fail_status: int = 0
    fail_count: int = 0
    retry_after: str | None = None
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    storage_seen: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    storage_port: int = 0
    patches: int = 0
    fail_patch: int = 0


def _upstream(f: Faults, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
    conn = http.client.HTTPConnection(f.upstream, timeout=10)
    conn.request(method, path, body=body or None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP], data


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    faults: Faults

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, headers: list[tuple[str, str]], body: bytes, *, cut: int = -1
    ) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut >= 0:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def _handle(self) -> None:
        f = self.faults
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        f.seen.append((self.command, self.path, dict(headers)))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        is_blob_get = "/blobs/sha256:" in path and self.command == "GET"
        is_manifest = "/manifests/" in path
        if "bearer_garbage" in f.modes:
            if path == "/token":
                return self._reply(200, [], b"<html>garbage</html>")
            realm = f'Bearer realm="http://127.0.0.1:{f.port}/token",service="proxy"'
            return self._reply(401, [("WWW-Authenticate", realm)], b"")
        if "basic_gate" in f.modes and "Authorization" not in self.headers:
            return self._reply(401, [("WWW-Authenticate", 'Basic realm="proxy"')], b"")
        if self.command == "PATCH":
            f.patches += 1
            if f.patches == f.fail_patch:
                return self._reply(503, [], b"")
        if is_manifest and f.fail_count > 0:
            f.fail_count -= 1
            extra = [("Retry-After", f.retry_after)] if f.retry_after is not None else []
            return self._reply(f.fail_status, extra, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}')
        if is_blob_get and "redirect" in f.modes:
            target = f"http://127.0.0.2:{f.storage_port}{path}?X-Amz-Signature={SECRET_SIG}"
            return self._reply(307, [("Location", target)], b"")
        if path.endswith("/tags/list") and "paginate" in f.modes:
            return self._paginate(headers)
        if "ignore_range" in f.modes:
            headers.pop("Range", None)
        status, out_headers, data = _upstream(f, self.command, self.path, headers, body)
        if is_manifest and "big_manifest" in f.modes:
            data = b" " * (5 << 20)
        if is_manifest and "wrong_digest" in f.modes:
            out_headers = [(k, v) for k, v in out_headers if k != "Docker-Content-Digest"]
            out_headers.append(("Docker-Content-Digest", str(Digest.of_bytes(b"lie"))))
        if is_blob_get and "corrupt" in f.modes and data:
            data = bytes([data[0] ^ 1]) + data[1:]
        cut = -1
        if is_blob_get and (
            "drop_always" in f.modes or ("drop" in f.modes and "Range" not in self.headers)
        ):
            cut = len(data) // 2
        return self._reply(status, out_headers, data, cut=cut)

    def _paginate(self, headers: dict[str, str]) -> None:
        f = self.faults
        parts = urlsplit(self.path)
        status, _, data = _upstream(f, "GET", parts.path, headers, b"")
        obj = json.loads(data)
        query = parse_qs(parts.query)
        n = int(query.get("n", ["2"])[0])
        last = query.get("last", [""])[0]
        tags = sorted(t for t in obj["tags"] if t > last)
        page, more = tags[:n], len(tags) > n
        links = [("Link", f'<{parts.path}?n={n}&last={page[-1]}>; rel="next"')] if more else []
        body = json.dumps({"name": obj["name"], "tags": page}).encode()
        self._reply(status, links, body)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


class StorageHandler(http.server.BaseHTTPRequestHandler):
    """A "storage backend" on another host: serves blobs fetched from the registry."""

    faults: Faults

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        f = self.faults
        f.storage_seen.append(dict(self.headers.items()))
        if "storage_denied" in f.modes:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, _, data = _upstream(f, "GET", urlsplit(self.path).path, {}, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class QuietServer(http.server.ThreadingHTTPServer):
    """Dropped connections are the point of some tests: do not print their tracebacks."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler], host: str) -> Any:
    server = QuietServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


def _seed(server: testreg.RegistryServer) -> None:
    with RegistryClient(server.host, options=FAST) as rc:
        rc.put_blob("app/x", io.BytesIO(BLOB), BLOB_DESC)
        manifest = Manifest(config=BLOB_DESC, layers=()).to_json()
        for tag in ("a", "b", "c", "d", "e"):
            rc.put_manifest("app/x", tag, manifest, mediatype.OCI_MANIFEST)


registry = testreg.registry_fixture("registry", seed=_seed)


@pytest.fixture
def faults(registry: testreg.RegistryServer) -> Iterator[Faults]:
    f = Faults(upstream=registry.host)
    proxy_cls = type("Proxy", (ProxyHandler,), {"faults": f})
    storage_cls = type("Storage", (StorageHandler,), {"faults": f})
    proxy, storage = _serve(proxy_cls, "127.0.0.1"), _serve(storage_cls, "127.0.0.2")
    f.port, f.storage_port = proxy.server_address[1], storage.server_address[1]
    yield f
    for server in (proxy, storage):
        server.shutdown()
        server.server_close()


def client(f: Faults, sleeps: list[float] | None = None, **kw: Any) -> RegistryClient:
    rc = RegistryClient(f"127.0.0.1:{f.port}", options=FAST, **kw)
    if sleeps is not None:
        rc._transport.sleep = sleeps.append
    return rc


def test_redirect_to_another_host_drops_the_authorization_header(faults: Faults) -> None:
    faults.modes |= {"basic_gate", "redirect"}
    creds = StaticCredentials({f"127.0.0.1:{faults.port}": Credential("bob", "pw-not-for-s3")})
    with client(faults, credentials=creds) as rc, rc.open_blob("app/x", BLOB_DESC) as f:
        assert f.read() == BLOB
    assert any("Authorization" in h for _, _, h in faults.seen)
    assert faults.storage_seen and all("Authorization" not in h for h in faults.storage_seen)


def test_storage_error_after_redirect_has_a_redacted_url(
    faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults.modes |= {"redirect", "storage_denied"}
    with client(faults) as rc, pytest.raises(AuthError) as info:
        rc.open_blob("app/x", BLOB_DESC)
    assert "X-Amz-Signature=***" in caplog.text and SECRET_SIG not in caplog.text
    assert info.value.status == 403 and info.value.url is not None
    assert "127.0.0.2" in info.value.url and SECRET_SIG not in info.value.url + str(info.value)


@pytest.mark.parametrize("server_honours_range", [True, False])
def test_dropped_connection_mid_blob_is_resumed_with_range(
    faults: Faults, server_honours_range: bool
) -> None:
    faults.modes.add("drop")
    if not server_honours_range:  # 200 with the whole blob: the client skips what it has
        faults.modes.add("ignore_range")
    with client(faults) as rc, rc.open_blob("app/x", BLOB_DESC) as f:
        assert f.read() == BLOB
    ranges = [h.get("Range") for m, p, h in faults.seen if "/blobs/" in p and m == "GET"]
    assert ranges[0] is None and len(ranges) == 2
    assert ranges[1] is not None and ranges[1].startswith("bytes=")
    assert 0 < int(ranges[1].removeprefix("bytes=").rstrip("-")) <= len(BLOB) // 2


def test_connection_dropping_for_good_fails_after_bounded_resumes(faults: Faults) -> None:
    faults.modes.add("drop_always")
    with (
        client(faults) as rc,
        pytest.raises(RegistryError, match="dropped") as info,
        rc.open_blob("app/x", BLOB_DESC) as f,
    ):
        f.read()
    assert "\n" not in str(info.value)
    assert len([p for m, p, _ in faults.seen if "/blobs/" in p and m == "GET"]) == 4


def test_corrupt_blob_bytes_fail_verification(faults: Faults) -> None:
    faults.modes.add("corrupt")
    with (
        client(faults) as rc,
        pytest.raises(DigestMismatch, match="fetching blob"),
        rc.open_blob("app/x", BLOB_DESC) as f,
    ):
        f.read()


def test_wrong_docker_content_digest_is_rejected(faults: Faults) -> None:
    faults.modes.add("wrong_digest")
    with client(faults) as rc, pytest.raises(DigestMismatch, match="Docker-Content-Digest"):
        rc.get_manifest("app/x", "a")


def test_oversized_manifest_is_refused(faults: Faults) -> None:
    faults.modes.add("big_manifest")
    with client(faults) as rc, pytest.raises(InvalidManifest, match="exceeds"):
        rc.get_manifest("app/x", "a")


def test_429_honours_retry_after_then_succeeds(faults: Faults) -> None:
    faults.fail_status, faults.fail_count, faults.retry_after = 429, 2, "0"
    sleeps: list[float] = []
    with client(faults, sleeps) as rc:
        assert rc.get_manifest("app/x", "a")[1] == mediatype.OCI_MANIFEST
    assert sleeps == [0.0, 0.0]


@pytest.mark.parametrize(("status", "retry_after"), [(429, "3600"), (500, None), (503, "1")])
def test_persistent_failures_give_a_clear_retryable_error(
    faults: Faults, status: int, retry_after: str | None
) -> None:
    faults.fail_status, faults.fail_count, faults.retry_after = status, 100, retry_after
    sleeps: list[float] = []
    with client(faults, sleeps) as rc, pytest.raises(RegistryError) as info:
        rc.get_manifest("app/x", "a")
    err = info.value
    assert err.status == status and err.retryable and "\n" not in str(err)
    assert str(err).startswith(f"fetching manifest 127.0.0.1:{faults.port}/app/x:a: {status}")
    assert len(sleeps) == 2 and all(s <= 0.1 for s in sleeps)


def test_tag_pagination_follows_link_headers(faults: Faults) -> None:
    faults.modes.add("paginate")
    with client(faults) as rc:
        assert rc.list_tags("app/x", page_size=2) == ["a", "b", "c", "d", "e"]
    pages = [p for m, p, _ in faults.seen if p.startswith("/v2/app/x/tags/list")]
    assert len(pages) == 3 and "last=d" in pages[-1]


def test_token_endpoint_returning_garbage(faults: Faults) -> None:
    faults.modes.add("bearer_garbage")
    with client(faults) as rc, pytest.raises(AuthError, match="invalid response") as info:
        rc.get_manifest("app/x", "a")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fail_patch", [1, 2])
def test_failed_chunk_is_resent_from_the_registry_offset(faults: Faults, fail_patch: int) -> None:
    faults.fail_patch = fail_patch
    data = BLOB[::-1]
    desc = Descriptor.of_bytes(mediatype.OCI_LAYER, data)
    with client(faults, [], chunk_size=64 << 10) as rc:
        rc.put_blob(f"app/chunks{fail_patch}", io.BytesIO(data), desc)
        with rc.open_blob(f"app/chunks{fail_patch}", desc) as f:
            assert f.read() == data
    methods = [m for m, p, _ in faults.seen if "/blobs/uploads/" in p]
    expected = ["POST", *["PATCH"] * fail_patch, "GET", "PATCH"]
    assert methods[: len(expected)] == expected and methods[-1] == "PUT"


@pytest.mark.parametrize("fail_patch", [1, 3])
def test_stream_upload_resends_a_failed_chunk(faults: Faults, fail_patch: int) -> None:
    """An upload fed while its digest is unknown (``open_upload``): a PATCH answered 503 is
    resent from the registry's offset by the background sender; the blob is intact."""
    faults.fail_patch = fail_patch
    data = BLOB * 3
    desc = Descriptor.of_bytes(mediatype.OCI_LAYER, data)
    with client(faults, [], chunk_size=64 << 10) as rc:
        upload = rc.open_upload(f"app/stream{fail_patch}")
        for i in range(0, len(data), 10_000):
            upload.write(data[i : i + 10_000])
        upload.commit(desc.digest, desc.size)
        with rc.open_blob(f"app/stream{fail_patch}", desc) as f:
            assert f.read() == data
    methods = [m for m, p, _ in faults.seen if "/blobs/uploads/" in p]
    assert methods.count("GET") == 1 and methods[0] == "POST" and methods[-1] == "PUT"
    assert methods.count("PATCH") > 5
