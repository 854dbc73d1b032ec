"""``oci-archive:FILE[:REF]`` — a tar of an OCI image layout (containers-transports(5)).

Reading indexes the tar in place (see :mod:`lamina.transports.files`: no extraction; member
names are never trusted, blobs must be regular members). Writing stages blobs in a hidden
directory next to ``FILE``, then at commit writes a deterministic tar to a temp file and
renames it over ``FILE``: an existing archive is replaced whole (as containers/image does),
never left half-written. Layers keep their compression; media types become OCI ones.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lamina._internal.fileio import open_atomic
from lamina._internal.verify import VerifyingReader
from lamina.errors import StorageError
from lamina.image.model import Image, ImageIndex
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.transports.base import Destination, Format, ImageRef
from lamina.transports.files import TarFiles, write_tar
from lamina.transports.layout import (
    BlobStage,
    LayoutSource,
    index_entries,
    merge_index,
    write_layout_files,
)
from lamina.transports.oci import check_ref_name, split_path_ref


@dataclass(frozen=True, slots=True)
class OciArchiveRef(ImageRef):
    """An image in a tar of an OCI layout."""

    transport: ClassVar[str] = "oci-archive"
    path: str
    ref: str | None = None

    @classmethod
    def parse(cls, details: str) -> OciArchiveRef:
        """Parse ``FILE[:REF]``."""
        path, ref = split_path_ref(details, cls.transport)
        return cls(path, check_ref_name(ref, cls.transport) if ref is not None else None)

    def details(self) -> str:
        """``FILE[:REF]``."""
        return self.path if self.ref is None else f"{self.path}:{self.ref}"

    def open(self) -> Image | ImageIndex:
        """The entry's image or index (the archive stays open while they are referenced)."""
        src = LayoutSource(TarFiles(Path(self.path)), str(self))
        return src.load(src.resolve(self.ref))

    def destination(self) -> OciArchiveDestination:
        """A destination that writes the whole archive at commit."""
        return OciArchiveDestination(Path(self.path), self.ref, str(self))


class ArchiveDestination(Destination):
    """Stages a layout next to ``target`` and writes it as one tar at commit."""

    def __init__(self, target: Path, what: str) -> None:
        super().__init__(what)
        self.target = target
        try:
            if target.is_dir():
                raise IsADirectoryError(21, "is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            stage = tempfile.mkdtemp(prefix=".lamina-stage-", dir=target.parent)
        except OSError as exc:
            raise StorageError(f"{what}: cannot write {target}: {exc.strerror or exc}") from exc
        self.stage = BlobStage(Path(stage))

    def blob_size(self, digest: Digest) -> int | None:
        """Only this session's blobs count (the archive is rewritten whole)."""
        return self.stage.size(digest)

    def _write_blob(self, reader: VerifyingReader, digest: Digest) -> int:
        return self.stage.write(reader, digest)

    def _write_metadata(self) -> None:
        """Write the non-blob files into the stage before it is archived."""
        raise NotImplementedError

    def _commit(self) -> None:
        self._write_metadata()
        with open_atomic(self.target) as out:
            write_tar(self.stage.dir, out)
        self.stage.remove()

    def _discard(self) -> None:
        shutil.rmtree(self.stage.dir, ignore_errors=True)


class OciArchiveDestination(ArchiveDestination):
    """Writes an OCI layout tar; see the module docstring."""

    format: ClassVar[Format] = Format(media_types="oci", indexes=True)

    def __init__(self, target: Path, name: str | None, what: str) -> None:
        super().__init__(target, what)
        self.name = name
        self._entries: list[Descriptor] = []

    def _put_manifest(self, data: bytes, desc: Descriptor, names: tuple[str, ...]) -> None:
        for n in names:
            check_ref_name(n, "oci-archive")
        self.stage.write_bytes(data, desc.digest)
        self._entries.extend(index_entries(desc, names or ((self.name,) if self.name else ())))

    def _write_metadata(self) -> None:
        write_layout_files(self.stage.dir, merge_index(None, self._entries))
