"""The OCI image layout (image-spec "image-layout"): ``oci-layout``, ``index.json``, ``blobs/``.

Reading (:class:`LayoutSource`) works over any file view (a directory or an indexed tar, see
:mod:`lamina.transports.files`); a reference ``REF`` selects the ``index.json`` entry whose
``org.opencontainers.image.ref.name`` annotation equals it, and without ``REF`` the layout must
hold exactly one entry. Blob names are built from validated digests, so they cannot traverse.

Writing (:class:`BlobStage`, :func:`merge_index`): blobs are staged (verified, then renamed) in
a private directory and only published by the owner's commit; ``index.json`` is replaced
atomically after every blob it names is in place, so a reader never sees a dangling entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from lamina._internal.fileio import open_atomic, write_atomic
from lamina._internal.verify import VerifyingReader
from lamina.errors import InvalidManifest, NotFound
from lamina.oci import canonical, mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Index
from lamina.transports.source import BlobSource

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_BYTES = canonical.dumps({"imageLayoutVersion": LAYOUT_VERSION})
CHUNK = 1 << 20


class Files(Protocol):
    """A read-only file view (:class:`~lamina.transports.files.DirFiles` or ``TarFiles``)."""

    def open(self, name: str) -> BinaryIO: ...

    def read(self, name: str, limit: int) -> bytes: ...

    def exists(self, name: str) -> bool: ...


def blob_name(digest: Digest) -> str:
    """``blobs/<alg>/<hex>`` (safe: the digest is validated)."""
    return f"blobs/{digest.algorithm}/{digest.encoded}"


class LayoutSource(BlobSource):
    """An OCI layout read through ``files``."""

    def __init__(self, files: Files, what: str) -> None:
        self.files = files
        self.what = what

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """The blob file (regular files only; symlinks and FIFOs are refused)."""
        return self.files.open(blob_name(desc.digest))

    def read_index(self) -> Index:
        """``index.json``, after checking ``oci-layout``."""
        try:
            marker = canonical.loads_object(
                self.files.read(LAYOUT_FILE, 4096), f"{self.what}: {LAYOUT_FILE}"
            )
        except NotFound:
            raise NotFound(
                f"{self.what}: not an OCI layout (no {LAYOUT_FILE} file)",
                hint="oci: expects a directory written by lamina, skopeo, umoci or buildah",
            ) from None
        if not isinstance(marker.get("imageLayoutVersion"), str):
            raise InvalidManifest(f"{self.what}: {LAYOUT_FILE} has no imageLayoutVersion")
        data = self.files.read(INDEX_FILE, canonical.MAX_DOCUMENT)
        try:
            return Index.from_json(data)
        except InvalidManifest as exc:
            raise exc.with_context(f"{self.what}: {INDEX_FILE}") from None

    def resolve(self, ref: str | None) -> Descriptor:
        """The ``index.json`` entry for ``ref`` (or the only entry when ``ref`` is None)."""
        entries = self.read_index().manifests
        if ref is None:
            if len(entries) == 1:
                return entries[0]
            names = sorted({n for d in entries if (n := _ref_name(d))})
            raise NotFound(
                f"{self.what}: the layout holds {len(entries)} entries; name one",
                hint=f"add :REF, one of: {', '.join(names)}" if names else None,
            )
        matches = [d for d in entries if _ref_name(d) == ref]
        if not matches:
            raise NotFound(f"{self.what}: no image named {ref!r} in {INDEX_FILE}")
        if len({d.digest for d in matches}) > 1:
            raise InvalidManifest(f"{self.what}: {ref!r} names several different manifests")
        return matches[0]


def _ref_name(desc: Descriptor) -> str | None:
    return (desc.annotations or {}).get(REF_NAME)


class BlobStage:
    """A private directory of verified blobs, ``<dir>/blobs/<alg>/<hex>``.

    Thread-safe for different digests; writing the same digest twice keeps one copy.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, digest: Digest) -> Path:
        """Where ``digest`` is staged."""
        return self.dir / blob_name(digest)

    def size(self, digest: Digest) -> int | None:
        """The staged size, or None."""
        return regular_size(self.path(digest))

    def write(self, reader: VerifyingReader, digest: Digest) -> int:
        """Copy ``reader`` to EOF into a temp file, then rename it into place (verified)."""
        target = self.path(digest)
        with open_atomic(target, durable=False) as out:
            while chunk := reader.read(CHUNK):  # the empty read at EOF verifies
                out.write(chunk)
        return reader.count

    def write_bytes(self, data: bytes, digest: Digest) -> None:
        """Stage small bytes already verified by the caller."""
        write_atomic(self.path(digest), data, durable=False)

    def iter_blobs(self) -> Iterator[tuple[Digest, Path]]:
        """Every staged blob."""
        root = self.dir / "blobs"
        if not root.is_dir():
            return
        for alg_dir in sorted(root.iterdir()):
            for f in sorted(alg_dir.iterdir()):
                if not f.name.startswith("."):
                    yield Digest(alg_dir.name, f.name), f

    def publish(self, layout: Path) -> None:
        """Move every staged blob into ``layout/blobs`` (existing blobs are kept)."""
        for digest, src in self.iter_blobs():
            dst = layout / blob_name(digest)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if regular_size(dst) == src.stat().st_size:
                src.unlink()
            else:
                os.replace(src, dst)
        for d in {layout / "blobs", *(layout / "blobs").iterdir()}:
            _fsync_dir(d)

    def remove(self) -> None:
        """Delete the stage (idempotent)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def regular_size(path: Path) -> int | None:
    """Size of ``path`` if it is a regular file (symlinks are not followed), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def index_entries(desc: Descriptor, names: Iterable[str]) -> list[Descriptor]:
    """One ``index.json`` entry per name (or one unnamed entry), keeping desc's annotations."""
    base = dict(desc.annotations or {})
    base.pop(REF_NAME, None)
    names = list(names)
    if not names:
        return [_with_annotations(desc, base)]
    return [_with_annotations(desc, {**base, REF_NAME: n}) for n in names]


def _with_annotations(desc: Descriptor, ann: dict[str, str]) -> Descriptor:
    return Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        annotations=ann or None,
        platform=desc.platform,
        urls=desc.urls,
        artifact_type=desc.artifact_type,
    )


def merge_index(old: Index | None, new: list[Descriptor]) -> Index:
    """``old``'s entries minus those ``new`` replaces (same ref name; unnamed: same digest).

    New entries are appended in order, so the result is deterministic.
    """
    kept: list[Descriptor] = []
    new_names = {_ref_name(d) for d in new if _ref_name(d)}
    new_unnamed = {d.digest for d in new if not _ref_name(d)}
    for d in old.manifests if old else ():
        name = _ref_name(d)
        if (name and name in new_names) or (not name and d.digest in new_unnamed):
            continue
        kept.append(d)
    return Index(
        manifests=(*kept, *new),
        media_type=mediatype.OCI_INDEX,
        annotations=old.annotations if old else None,
    )


def write_layout_files(root: Path, index: Index) -> None:
    """Write ``oci-layout`` (if missing) and replace ``index.json`` atomically."""
    if regular_size(root / LAYOUT_FILE) is None:
        write_atomic(root / LAYOUT_FILE, LAYOUT_BYTES)
    write_atomic(root / INDEX_FILE, index.to_json())


@contextlib.contextmanager
def dir_locked(path: Path) -> Iterator[None]:
    """An exclusive flock on the directory itself (no lock file inside the layout)."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
