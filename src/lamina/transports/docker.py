"""``docker://[host[:port]/]name[:tag|@digest]`` — an image in a registry (containers-transports).

The name follows Docker's normalisation (:mod:`lamina.reference`): ``docker://busybox`` is
``docker://docker.io/library/busybox:latest``. A reference carries the :class:`Registries` it
talks through (credentials, TLS and retry options, mirrors); it is not part of equality, so
``parse(str(ref)) == ref`` holds.

Reading: :meth:`DockerRef.open` fetches the manifest (or index) by tag or digest; child manifests
and blobs are fetched lazily, every byte verified against its digest and size (the registry
client verifies downloads; :class:`~lamina.transports.source.BlobSource` checks documents).
Blobs of at least :data:`PREFETCH_MIN` bytes are downloaded by a :class:`Prefetch` thread a few
MiB ahead of their reader, so the network overlaps decompression and extraction; the same
thread reads a big source blob ahead of its upload when writing. Memory stays bounded.

Writing (:class:`DockerDestination`): a registry has no staging area, so blobs are pushed as
the copier hands them over (existence check first, then a cross-repository mount from the
``mount_from`` repositories of the same registry, then an upload) and manifests are pushed by
digest (children of an index) and by tag (the top level). ``commit`` publishes nothing more;
``discard`` cannot unpush, which registries tolerate (orphan blobs are collected by them).
Indexes are pushed whole; manifests keep their bytes (``Format(media_types="preserve")``).
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from typing import TYPE_CHECKING, BinaryIO, ClassVar, cast

from lamina import reference
from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.verify import Readable, VerifyingReader
from lamina.errors import DigestMismatch, InvalidReference, LaminaError, RegistryNotFound
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.reference import Reference
from lamina.registry import (
    MAX_MANIFEST,
    CredentialProvider,
    RegistryClient,
    TransportOptions,
    split_reference,
)
from lamina.transports.base import Destination, Format, ImageRef
from lamina.transports.source import BlobSource

if TYPE_CHECKING:
    from lamina.image.model import Image, ImageIndex

CHUNK = 1 << 20
#: blobs at least this big are downloaded ahead of their reader, in a thread
PREFETCH_MIN = 4 << 20
_HINT = "use docker://[registry[:port]/]name[:tag|@sha256:digest], e.g. docker://busybox:latest"


class Registries:
    """Registry clients, one per host, created on first use and shared by every reference
    that carries this object. Thread-safe; ``close()`` closes every client (idempotent).

    ``mirrors`` are tried (in order) before ``docker.io`` for reads, as Docker's
    ``registry-mirrors`` are; writes always go to the registry itself.
    """

    def __init__(
        self,
        *,
        credentials: CredentialProvider | None = None,
        options: TransportOptions | None = None,
        mirrors: Sequence[str] = (),
    ) -> None:
        self.credentials = credentials
        self.options = options or TransportOptions()
        self.mirrors = tuple(mirrors)
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, host: str) -> RegistryClient:
        """The client for ``host`` (``docker.io`` gets the mirrors)."""
        with self._lock:
            found = self._clients.get(host)
            if found is None:
                mirrors = self.mirrors if host == reference.DEFAULT_DOMAIN else ()
                found = RegistryClient(
                    host,
                    credentials=self.credentials,
                    options=self.options_for(host),
                    mirrors=mirrors,
                )
                self._clients[host] = found
            return found

    def options_for(self, host: str) -> TransportOptions:
        """The connection options of ``host`` (the same for every host; subclasses may vary
        them per host, as Kaniko's ``--skip-tls-verify-registry`` does)."""
        return self.options

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()

    def __enter__(self) -> Registries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@lazy_dataclass(frozen=True)
class DockerRef(ImageRef):
    """An image (or index) in a registry repository, by tag or digest."""

    transport: ClassVar[str] = "docker"
    reference: Reference
    registries: Registries | None = field(default=None, compare=False, repr=False)
    #: repositories of the same registry that blobs may be mounted from when writing
    mount_from: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, details: str) -> DockerRef:
        """Parse ``//NAME`` (what follows ``docker:``)."""
        if not details.startswith("//") or len(details) == 2:
            raise InvalidReference(
                f"invalid docker reference 'docker:{details}'",
                hint=_HINT + " (a local image named docker:TAG is local:docker:TAG)",
            )
        return cls(reference.parse(details[2:]))

    def details(self) -> str:
        """``//`` and the full normalised name."""
        return "//" + str(self.reference)

    @property
    def host(self) -> str:
        """The registry (``docker.io``, ``127.0.0.1:5000``)."""
        return self.reference.domain

    @property
    def repository(self) -> str:
        """The repository path (``library/busybox``)."""
        return self.reference.path

    def with_registries(self, registries: Registries, mount_from: Sequence[str] = ()) -> DockerRef:
        """A copy that talks through ``registries`` (and may mount from ``mount_from``)."""
        return replace(self, registries=registries, mount_from=tuple(mount_from))

    def client(self) -> RegistryClient:
        """The client for this reference's registry (anonymous defaults without Registries)."""
        registries = self.registries
        if registries is None:
            registries = Registries()
        return registries.client(self.host)

    def open(self) -> Image | ImageIndex:
        """The manifest or index the tag/digest names; blobs are fetched lazily."""
        client = self.client()
        repo, ref = split_reference(self.reference)
        data, media, digest = client.get_manifest(repo, ref)
        desc = Descriptor(media_type=media, digest=digest, size=len(data))
        source = RegistrySource(client, repo, str(self), {digest: data})
        return source.load(desc)

    def destination(self) -> DockerDestination:
        """A destination pushing into this repository (tag or digest of the reference)."""
        return DockerDestination(self.client(), self.reference, str(self), self.mount_from)


class RegistrySource(BlobSource):
    """Blobs of one repository; manifests come from the manifest endpoint, verified.

    ``documents`` are manifests already fetched (digest -> bytes), so the top-level manifest is
    not downloaded twice.
    """

    def __init__(
        self,
        client: RegistryClient,
        repo: str,
        what: str,
        documents: Mapping[Digest, bytes] | None = None,
    ) -> None:
        self.client = client
        self.repo = repo
        self.what = what
        self._documents = dict(documents or {})

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """A stream of the blob, verified by digest and size as it is read; big blobs are
        fetched ahead in a thread (:class:`Prefetch`) so the download overlaps their use."""
        stream = self.client.open_blob(self.repo, desc)
        if desc.size < PREFETCH_MIN:
            return stream
        return cast(BinaryIO, io.BufferedReader(Prefetch(stream), CHUNK))

    def read_document(self, desc: Descriptor, what: str) -> bytes:
        """Manifests/indexes by digest from the manifest endpoint; configs as blobs."""
        if not (mediatype.is_manifest(desc.media_type) or mediatype.is_index(desc.media_type)):
            return super().read_document(desc, what)
        data = self._documents.get(desc.digest)
        if data is None:
            data, _, _ = self.client.get_manifest(self.repo, desc.digest)
        if len(data) != desc.size:
            raise DigestMismatch(
                f"{self.what}: {what} {desc.digest} has {len(data)} bytes, "
                f"the descriptor says {desc.size}"
            )
        return data


class Prefetch(io.RawIOBase):
    """Reads ``raw`` in a background thread, at most ``depth`` chunks ahead.

    Invariants: memory is bounded by ``depth`` chunks; bytes come out in order; an error in
    the reader thread (a dropped connection, a digest mismatch at EOF) is raised by the next
    read; ``close()`` stops the thread, waits for it and closes ``raw`` unless ``close_raw`` is
    false (idempotent). Only the thread reads ``raw`` until ``close()`` returns.
    """

    def __init__(
        self, raw: BinaryIO, *, depth: int = 8, chunk: int = CHUNK, close_raw: bool = True
    ) -> None:
        super().__init__()
        self._raw = raw
        self._close_raw = close_raw
        self._chunk = chunk
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending = memoryview(b"")
        self._eof = False
        self._thread = threading.Thread(target=self._run, name="lamina-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._raw.read(self._chunk)
                self._offer(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reader, raised there
            self._offer(exc)

    def _offer(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._pending and not self._eof:
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            self._eof = not item
            self._pending = memoryview(item)
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if self.closed:
            return
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()
        if self._close_raw:
            self._raw.close()
        super().close()


def _is_document(media_type: str) -> bool:
    return mediatype.is_manifest(media_type) or mediatype.is_index(media_type)


class DockerDestination(Destination):
    """Pushes into one repository; see the module docstring.

    ``put_blob`` takes child manifests too (the copier writes an index's children as blobs):
    they are pushed as manifests by digest.
    """

    format: ClassVar[Format] = Format(media_types="preserve", indexes=True)

    def __init__(
        self, client: RegistryClient, ref: Reference, what: str, mount_from: Sequence[str] = ()
    ) -> None:
        super().__init__(what)
        self.client = client
        self.ref = ref
        self.repo = ref.path
        self.mount_from = [m for m in mount_from if m != ref.path]
        self._sizes: dict[Digest, int] = {}
        self._lock = threading.Lock()

    def _known(self, digest: Digest) -> int | None:
        with self._lock:
            return self._sizes.get(digest)

    def _remember(self, digest: Digest, size: int) -> None:
        with self._lock:
            self._sizes[digest] = size

    def blob_size(self, digest: Digest) -> int | None:
        """Size of ``digest`` in the repository (pushed in this session or found by HEAD)."""
        size = self._known(digest)
        if size is None:
            try:
                size = self.client.stat_blob(self.repo, digest)
            except LaminaError as exc:
                raise exc.with_context(f"pushing to {self.what}") from None
            if size is not None and size >= 0:
                self._remember(digest, size)
        return size

    def has_blob(self, desc: Descriptor) -> bool:
        """Blobs by HEAD on the blob; manifests by HEAD on the manifest endpoint."""
        if not _is_document(desc.media_type):
            return super().has_blob(desc)
        if self._known(desc.digest) == desc.size:
            return True
        try:
            found = self.client.head_manifest(self.repo, desc.digest)
        except RegistryNotFound:
            return False
        return found.size == desc.size

    def put_blob(
        self, stream: Readable | BinaryIO, desc: Descriptor, *, verify_size: bool = True
    ) -> Descriptor:
        """Push ``desc`` (verified while read; the caller closes ``stream``). Idempotent."""
        self._check_open()
        try:
            if _is_document(desc.media_type):
                data = VerifyingReader(stream, desc.digest, desc.size, what="manifest")
                body = data.read(MAX_MANIFEST + 1)
                data.drain()
                self.client.put_manifest(self.repo, desc.digest, body, desc.media_type)
            elif desc.size < PREFETCH_MIN:
                self.client.put_blob(self.repo, stream, desc, mount_from=self.mount_from)
            else:  # read (and verify, or regenerate) the source while the upload sends
                with Prefetch(cast(BinaryIO, stream), depth=4, close_raw=False) as ahead:
                    source = io.BufferedReader(ahead, CHUNK)
                    self.client.put_blob(self.repo, source, desc, mount_from=self.mount_from)
        except LaminaError as exc:
            raise exc.with_context(f"pushing to {self.what}") from None
        self._remember(desc.digest, desc.size)
        return desc

    def _write_blob(self, reader: VerifyingReader, digest: Digest) -> int:
        # put_blob is overridden; the base class never calls this.
        raise NotImplementedError

    def put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...] = ()) -> None:
        """Push the top-level manifest/index under each name (tags, or references to this
        repository), or under the reference's tag or digest when ``names`` is empty."""
        self._check_open()
        targets = [self._target(n) for n in names] or [split_reference(self.ref)[1]]
        try:
            if (
                len(data) != desc.size
                or Digest.of_bytes(data, desc.digest.algorithm) != desc.digest
            ):
                raise DigestMismatch(f"manifest does not match its descriptor {desc.digest}")
            for target in targets:
                self.client.put_manifest(self.repo, target, data, desc.media_type)
        except LaminaError as exc:
            raise exc.with_context(f"pushing to {self.what}") from None

    def _target(self, name: str) -> str | Digest:
        if reference.is_valid_tag(name):
            return name
        ref = reference.parse(name)
        if ref.name != self.ref.name:
            raise InvalidReference(
                f"pushing to {self.what}: name {name} is not in repository {self.ref.name}"
            )
        return split_reference(ref)[1]

    def _put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...]) -> None:
        raise NotImplementedError  # put_manifest is overridden

    def _commit(self) -> None:
        """Nothing to do: everything was pushed as it came."""

    def _discard(self) -> None:
        """Nothing can be unpushed; registries collect orphan blobs themselves."""
