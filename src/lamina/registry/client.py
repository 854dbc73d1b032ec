"""The OCI distribution client (distribution-spec v1.1): manifests, blobs, tags, deletes.

:class:`RegistryClient` speaks to one registry (``docker.io`` means ``registry-1.docker.io``
and single-name repositories get ``library/``). Reads may go to mirrors first (in order; a
mirror that fails or lacks the content is skipped); writes always go to the registry itself.

Invariants: every manifest is at most 4 MiB and is checked against the digest it was pulled
by and against ``Docker-Content-Digest``; every blob stream is verified by digest and size
(:mod:`lamina.registry.blob`); errors are one line with a redacted URL and no secrets
(:mod:`lamina.registry.response`). Thread-safe; use as a context manager or call ``close()``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, TypeVar, cast

import httpx

from lamina._internal.verify import Readable
from lamina.errors import DigestMismatch, InvalidManifest, RegistryError
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.reference import Reference
from lamina.registry import document
from lamina.registry import upload as _upload
from lamina.registry.auth import Scope
from lamina.registry.blob import BlobStream
from lamina.registry.credentials import CredentialProvider
from lamina.registry.endpoint import (
    DOCKER_HUB,
    api_host,
    check_repository,
    check_tag,
    normalize_host,
)
from lamina.registry.streamupload import STREAM_CHUNK, StreamUpload
from lamina.registry.transport import Transport, TransportOptions

MAX_MANIFEST = 4 << 20
DEFAULT_ACCEPT: tuple[str, ...] = (
    mediatype.OCI_MANIFEST,
    mediatype.OCI_INDEX,
    mediatype.DOCKER_MANIFEST,
    mediatype.DOCKER_MANIFEST_LIST,
)
T = TypeVar("T")


def _pull(repo: str) -> list[Scope]:
    return [Scope.repository(repo, "pull")]


def split_reference(ref: Reference) -> tuple[str, str | Digest]:
    """``(repository, digest or tag)`` of a parsed reference, as the client methods take them
    (the digest wins when both are set); the registry is ``ref.domain``."""
    if ref.digest is not None:
        return ref.path, ref.digest
    return ref.path, ref.tag or "latest"


def _ref(ref: str | Digest) -> str | Digest:
    return ref if isinstance(ref, Digest) else check_tag(ref)


class RegistryClient:
    """A client for the registry ``host`` (``name[:port]``; ``docker.io`` for Docker Hub)."""

    def __init__(
        self,
        host: str,
        *,
        credentials: CredentialProvider | None = None,
        options: TransportOptions | None = None,
        mirrors: Sequence[str] = (),
        chunk_size: int = _upload.DEFAULT_CHUNK,
    ) -> None:
        self.name = normalize_host(host)
        self.options = options or TransportOptions()
        self.chunk_size = chunk_size
        cred = credentials.get(self.name) if credentials is not None else None
        self._transport = Transport(api_host(self.name), cred, self.options, name=self.name)
        self._mirrors = [
            Transport(
                api_host(m),
                credentials.get(normalize_host(m)) if credentials is not None else None,
                self.options,
                name=normalize_host(m),
            )
            for m in mirrors
        ]

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (idempotent)."""
        for transport in [self._transport, *self._mirrors]:
            transport.close()

    def repository(self, repo: str) -> str:
        """The repository path as the API wants it (``busybox`` -> ``library/busybox`` on Hub)."""
        if self.name == DOCKER_HUB and "/" not in repo:
            repo = "library/" + repo
        return check_repository(repo)

    def _where(self, repo: str, ref: str | Digest | None = None) -> str:
        if ref is None:
            return f"{self.name}/{repo}"
        sep = "@" if isinstance(ref, Digest) else ":"
        return f"{self.name}/{repo}{sep}{ref}"

    def _read(self, op: Callable[[Transport], T]) -> T:
        """Run a read on each mirror in turn, then on the registry itself."""
        for mirror in self._mirrors:
            try:
                return op(mirror)
            except RegistryError:
                continue
        return op(self._transport)

    # manifests

    def get_manifest(
        self, repo: str, ref: str | Digest, *, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> tuple[bytes, str, Digest]:
        """``(bytes, media_type, digest)`` of the manifest ``repo:ref`` (tag or digest)."""
        repo, ref = self.repository(repo), _ref(ref)
        context = f"fetching manifest {self._where(repo, ref)}"

        def op(t: Transport) -> tuple[bytes, str, Digest]:
            resp = t.request(
                "GET", f"/v2/{repo}/manifests/{ref}", scopes=_pull(repo), context=context,
                headers={"Accept": ", ".join(accept)}, stream=True, follow_redirects=True,
            )  # fmt: skip
            try:
                if resp.status_code != 200:
                    raise t.error(resp, context)
                data = document.read_bounded(resp, MAX_MANIFEST, context)
            finally:
                resp.close()
            digest = document.check_digest(
                data, ref, resp.headers.get("Docker-Content-Digest"), context
            )
            return data, document.media_type_of(resp, data), digest

        return self._read(op)

    def head_manifest(self, repo: str, ref: str | Digest) -> Descriptor:
        """The manifest's descriptor (media type, digest, size) without its body.

        Falls back to GET when the registry sends no ``Docker-Content-Digest``.
        """
        repo, ref = self.repository(repo), _ref(ref)
        context = f"checking manifest {self._where(repo, ref)}"

        def op(t: Transport) -> Descriptor:
            resp = t.request(
                "HEAD", f"/v2/{repo}/manifests/{ref}", scopes=_pull(repo), context=context,
                headers={"Accept": ", ".join(DEFAULT_ACCEPT)}, follow_redirects=True,
            )  # fmt: skip
            if resp.status_code != 200:
                raise t.error(resp, context)
            header = resp.headers.get("Docker-Content-Digest")
            size = resp.headers.get("Content-Length", "")
            media = resp.headers.get("Content-Type", "").split(";")[0].strip()
            if not header or not size.isdigit() or media in ("", "application/json"):
                data, media, digest = self.get_manifest(repo, ref)
                return Descriptor(media_type=media, digest=digest, size=len(data))
            digest = document.parse_header_digest(header, context)
            if isinstance(ref, Digest) and digest != ref:
                raise DigestMismatch(f"{context}: registry reports digest {digest}")
            return Descriptor(media_type=media, digest=digest, size=int(size))

        return self._read(op)

    def put_manifest(self, repo: str, ref: str | Digest, data: bytes, media_type: str) -> Digest:
        """Upload a manifest under a tag or its digest; return its digest. Idempotent."""
        repo, ref = self.repository(repo), _ref(ref)
        context = f"pushing manifest {self._where(repo, ref)}"
        if len(data) > MAX_MANIFEST:
            raise InvalidManifest(f"{context}: manifest is larger than {MAX_MANIFEST} bytes")
        digest = Digest.of_bytes(data, ref.algorithm if isinstance(ref, Digest) else "sha256")
        if isinstance(ref, Digest) and digest != ref:
            raise DigestMismatch(f"{context}: content has digest {digest}")
        t = self._transport
        resp = t.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", context=context, content=data,
            scopes=[Scope.repository(repo, "pull", "push")],
            headers={"Content-Type": media_type},
        )  # fmt: skip
        if resp.status_code != 201:
            raise t.error(resp, context)
        resp.close()
        document.check_digest(data, digest, resp.headers.get("Docker-Content-Digest"), context)
        return digest

    def delete_manifest(self, repo: str, ref: str | Digest) -> None:
        """Delete a manifest by digest (or a tag, where the registry supports it)."""
        repo, ref = self.repository(repo), _ref(ref)
        self._delete(repo, f"manifests/{ref}", self._where(repo, ref))

    def delete_blob(self, repo: str, digest: Digest) -> None:
        """Delete a blob from a repository."""
        self._delete(self.repository(repo), f"blobs/{digest}", f"{self._where(repo)} {digest}")

    def _delete(self, repo: str, tail: str, what: str) -> None:
        context = f"deleting {what}"
        t = self._transport
        scopes = [Scope.repository(repo, "delete")]
        resp = t.request("DELETE", f"/v2/{repo}/{tail}", scopes=scopes, context=context)
        if resp.status_code not in (200, 202, 204):
            raise t.error(resp, context)
        resp.close()

    # tags

    def iter_tags(self, repo: str, *, page_size: int | None = None) -> Iterator[str]:
        """Every tag of ``repo``, page by page (following ``Link: <...>; rel="next"``)."""
        repo = self.repository(repo)
        context = f"listing tags of {self._where(repo)}"
        path: str | None = f"/v2/{repo}/tags/list"
        if page_size:
            path = f"{path}?n={page_size}"
        t = self._transport
        while path is not None:
            resp = t.request("GET", path, scopes=_pull(repo), context=context, stream=True)
            try:
                if resp.status_code != 200:
                    raise t.error(resp, context)
                data = document.read_bounded(resp, MAX_MANIFEST, context)
            finally:
                resp.close()
            yield from document.parse_tags(data, context)
            path = document.next_page(resp, context)

    def list_tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """All tags of ``repo`` in the registry's order."""
        return list(self.iter_tags(repo, page_size=page_size))

    # blobs

    def has_blob(self, repo: str, digest: Digest) -> bool:
        """True if the blob exists in ``repo`` (HEAD, following redirects)."""
        return self.stat_blob(repo, digest) is not None

    def stat_blob(self, repo: str, digest: Digest) -> int | None:
        """The blob's size if it exists in ``repo`` (-1 if the registry sends no length), else
        None (HEAD, following redirects)."""
        repo = self.repository(repo)
        context = f"checking blob {self._where(repo)} {digest}"
        t = self._transport
        resp = t.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", scopes=_pull(repo), context=context,
            follow_redirects=True,
        )  # fmt: skip
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise t.error(resp, context)
        length = resp.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else -1

    def open_blob(self, repo: str, desc: Descriptor) -> BinaryIO:
        """A verified stream of the blob ``desc``; the caller closes it.

        Redirects to storage hosts are followed without our Authorization header; a dropped
        connection is resumed with ``Range``; DigestMismatch at EOF if the bytes are wrong.
        """
        repo = self.repository(repo)
        context = f"fetching blob {self._where(repo)} {desc.digest}"

        def op(t: Transport) -> BinaryIO:
            def opener(offset: int) -> httpx.Response:
                headers = {"Accept-Encoding": "identity"}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                resp = t.request(
                    "GET", f"/v2/{repo}/blobs/{desc.digest}", scopes=_pull(repo),
                    context=context, headers=headers, stream=True, follow_redirects=True,
                )  # fmt: skip
                if resp.status_code not in (200, 206):
                    raise t.error(resp, context)
                return resp

            raw = BlobStream(opener, desc, context, resumes=self.options.retry.resumes)
            return cast(BinaryIO, io.BufferedReader(raw, 1 << 16))

        return self._read(op)

    def put_blob(
        self, repo: str, stream: Readable, desc: Descriptor, *, mount_from: Sequence[str] = ()
    ) -> None:
        """Make the blob ``desc`` exist in ``repo``, reading ``stream`` only if needed.

        Order: existence check; cross-repository mount from each of ``mount_from``; upload
        (monolithic up to ``chunk_size``, chunked beyond). ``stream`` must match ``desc``;
        the caller keeps ownership of it. Idempotent.
        """
        repo = self.repository(repo)
        context = f"pushing blob {self._where(repo)} {desc.digest}"
        if self.has_blob(repo, desc.digest):
            return
        t = self._transport
        location: str | None = None
        for source in mount_from:
            location = _upload.start_upload(t, repo, context, mount=(desc, self.repository(source)))
            if location is None:
                return
            break
        if location is None:
            location = _upload.start_upload(t, repo, context)
        assert location is not None
        _upload.upload(t, repo, location, stream, desc, context, chunk_size=self.chunk_size)

    def mount_blob(self, repo: str, desc: Descriptor, from_repo: str) -> bool:
        """Mount ``desc`` from ``from_repo`` into ``repo``; False (session cancelled) if the
        registry declined and the caller must upload instead."""
        repo = self.repository(repo)
        context = f"mounting blob {desc.digest} from {self._where(from_repo)} into {repo}"
        t = self._transport
        location = _upload.start_upload(t, repo, context, mount=(desc, self.repository(from_repo)))
        if location is None:
            return True
        _upload.cancel_upload(t, repo, location, context)
        return False

    def open_upload(self, repo: str) -> StreamUpload:
        """An upload into ``repo`` of a blob whose digest is known only when it is complete
        (:class:`~lamina.registry.streamupload.StreamUpload`: write, then commit or cancel)."""
        repo = self.repository(repo)
        context = f"pushing blob to {self._where(repo)}"
        location = _upload.start_upload(self._transport, repo, context)
        assert location is not None  # no mount asked: the registry answers with a session
        chunk = min(self.chunk_size, STREAM_CHUNK)
        return StreamUpload(self._transport, repo, location, context, chunk_size=chunk)

    def check_push(self, repo: str) -> None:
        """Verify that ``repo`` accepts pushes from us before any work is done: open an upload
        session and cancel it. AuthError (401/403) or RegistryError if refused."""
        repo = self.repository(repo)
        context = f"checking push access to {self._where(repo)}"
        location = _upload.start_upload(self._transport, repo, context)
        if location is not None:
            _upload.cancel_upload(self._transport, repo, location, context)

    def check_auth(self) -> None:
        """Verify the credentials against the registry (``GET /v2/``); AuthError if refused."""
        context = f"logging in to {self.name}"
        t = self._transport
        resp = t.request("GET", "/v2/", scopes=[], context=context)
        if resp.status_code != 200:
            raise t.error(resp, context)
        resp.close()
