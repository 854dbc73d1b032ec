"""``oci:DIR[:REF]`` — an OCI image layout directory (containers-transports(5)).

``DIR`` ends at the first ``:`` (as in containers/image); ``REF`` is the
``org.opencontainers.image.ref.name`` of the entry and follows the image-spec grammar
``component ("/" component)*`` with ``component ::= [A-Za-z0-9]+ (sep [A-Za-z0-9]+)*`` and
``sep ::= [-._:@+] | "--"``. Without ``REF``, reading needs a one-entry layout and writing adds
an unnamed entry.

Writing merges into an existing layout: blobs are staged in a hidden directory inside ``DIR``
(same filesystem, so publishing is a rename), then moved into ``blobs/``, then ``index.json``
is replaced atomically, with entries of the same name replaced. The directory is flocked for
the commit, so concurrent writers do not lose each other's entries. Discarding removes the
stage, and ``DIR`` too if this destination created it and it is still empty.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import ClassVar

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.verify import VerifyingReader
from lamina.errors import InvalidManifest, InvalidReference, NotFound, StorageError
from lamina.image.model import Image, ImageIndex
from lamina.oci import canonical
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Index
from lamina.transports.base import Destination, Format, ImageRef
from lamina.transports.files import DirFiles
from lamina.transports.layout import (
    INDEX_FILE,
    BlobStage,
    LayoutSource,
    blob_name,
    dir_locked,
    index_entries,
    merge_index,
    regular_size,
    write_layout_files,
)

_ALNUM = r"[A-Za-z0-9]+"
_COMPONENT = rf"{_ALNUM}(?:(?:[-._:@+]|--){_ALNUM})*"
REF_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


def split_path_ref(details: str, transport: str) -> tuple[str, str | None]:
    """Split ``PATH[:REF]`` at the first colon; PATH must not be empty."""
    path, sep, ref = details.partition(":")
    if not path:
        raise InvalidReference(
            f"invalid {transport} reference {details!r}: empty path",
            hint=f"use {transport}:PATH[:REF]",
        )
    return path, (ref if sep else None)


def check_ref_name(ref: str, transport: str) -> str:
    """Validate an OCI ``ref.name``."""
    if not REF_NAME_RE.fullmatch(ref):
        raise InvalidReference(
            f"invalid {transport} image name {ref!r}",
            hint="names are letters and digits joined by - . _ : @ + -- and /, e.g. v1.0",
        )
    return ref


@lazy_dataclass(frozen=True)
class OciRef(ImageRef):
    """An image in an OCI layout directory."""

    transport: ClassVar[str] = "oci"
    path: str
    ref: str | None = None

    @classmethod
    def parse(cls, details: str) -> OciRef:
        """Parse ``DIR[:REF]``."""
        path, ref = split_path_ref(details, cls.transport)
        return cls(path, check_ref_name(ref, cls.transport) if ref is not None else None)

    def details(self) -> str:
        """``DIR[:REF]``."""
        return self.path if self.ref is None else f"{self.path}:{self.ref}"

    def source(self) -> LayoutSource:
        """The layout as a blob source."""
        return LayoutSource(DirFiles(Path(self.path)), str(self))

    def open(self) -> Image | ImageIndex:
        """The entry's image or index."""
        src = self.source()
        return src.load(src.resolve(self.ref))

    def destination(self) -> OciDestination:
        """A destination merging into the layout at commit."""
        return OciDestination(Path(self.path), self.ref, str(self))


class OciDestination(Destination):
    """Writes into an OCI layout directory; see the module docstring."""

    format: ClassVar[Format] = Format(media_types="oci", indexes=True)

    def __init__(self, root: Path, name: str | None, what: str) -> None:
        super().__init__(what)
        self.root = root
        self.name = name
        self._created = False
        try:
            try:
                root.mkdir(parents=True)
                self._created = True
            except FileExistsError:
                if not root.is_dir():
                    raise
            self._stage = BlobStage(Path(tempfile.mkdtemp(prefix=".lamina-stage-", dir=root)))
        except OSError as exc:
            raise StorageError(f"{what}: cannot write to {root}: {exc.strerror or exc}") from exc
        self._entries: list[Descriptor] = []

    def blob_size(self, digest: Digest) -> int | None:
        """Staged or already published size of ``digest``."""
        staged = self._stage.size(digest)
        return staged if staged is not None else regular_size(self.root / blob_name(digest))

    def _write_blob(self, reader: VerifyingReader, digest: Digest) -> int:
        return self._stage.write(reader, digest)

    def _put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...]) -> None:
        for n in names:
            check_ref_name(n, "oci")
        self._stage.write_bytes(data, desc.digest)
        chosen = names or ((self.name,) if self.name else ())
        self._entries.extend(index_entries(desc, chosen))

    def _commit(self) -> None:
        with dir_locked(self.root):
            old = self._read_old_index()
            self._stage.publish(self.root)
            write_layout_files(self.root, merge_index(old, self._entries))
        self._stage.remove()

    def _read_old_index(self) -> Index | None:
        if regular_size(self.root / INDEX_FILE) is None and not (self.root / INDEX_FILE).exists():
            return None
        try:
            return LayoutSource(DirFiles(self.root), self.what).read_index()
        except NotFound:
            return Index.from_json(DirFiles(self.root).read(INDEX_FILE, canonical.MAX_DOCUMENT))
        except InvalidManifest as exc:
            raise exc.with_context("refusing to overwrite a malformed layout") from None

    def _discard(self) -> None:
        self._stage.remove()
        if self._created:  # only if still empty: a concurrent writer may have committed into it
            with contextlib.suppress(OSError):
                os.rmdir(self.root)
