"""Moving images in and out of the store: load, save, import, export, pull, copy.

Invariants: every write into the store goes through ``Store.put_image`` (all-or-nothing: an
image record is written only after every blob and layer is verified), and every file output is
written to a temp name beside the target and renamed on success, so a failed command leaves
neither a half-written store entry nor a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from lamina import reference, transports
from lamina._internal.fileio import fsync_dir
from lamina.errors import ImageError, UnsafeArchive, UsageError
from lamina.image.memory import MemoryImage, file_layer
from lamina.oci.config import History, ImageConfig
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.platform import Platform
from lamina.store import Store
from lamina.transports.copy import ProgressFn

if TYPE_CHECKING:
    from lamina.image.model import Image
    from lamina.transports.docker import DockerRef, Registries
    from lamina.transports.files import TarFiles

ARCHIVE_FORMATS = ("docker-archive", "oci-archive")


def timestamp(epoch: int | None) -> str:
    """RFC 3339 UTC time of ``epoch`` (now when None), as image configs carry it."""
    when = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{when.microsecond:06d}Z" if epoch is None else "Z"
    )


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temp path beside ``path``, renamed onto it if the block succeeds, else removed."""
    path = path.absolute()
    if path.is_dir():
        raise UsageError(f"{path} is a directory", hint="give a file name with -o")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _check_tar(path: Path) -> None:
    """Refuse a file that does not start with a tar header (only its first member is read)."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            tar.next()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ImageError(f"loading {path}: not a readable tar archive: {exc}") from None


def archive_kind(files: TarFiles, path: Path) -> str:
    """``docker-archive`` or ``oci-archive``, from an indexed archive's members.

    Docker 25+ archives carry both ``manifest.json`` and ``oci-layout``: ``manifest.json``
    decides, as it does for ``docker load``.
    """
    if files.exists("manifest.json") or files.exists("repositories"):
        return "docker-archive"
    if files.exists("oci-layout"):
        return "oci-archive"
    raise ImageError(
        f"loading {path}: neither a docker-archive nor an oci-archive",
        hint="expected manifest.json (docker save) or oci-layout (OCI archive) in the tar",
    )


def detect_archive(path: Path) -> str:
    """``docker-archive`` or ``oci-archive``, from the archive's members (headers only)."""
    from lamina.transports.files import TarFiles

    _check_tar(path)
    return archive_kind(TarFiles(path), path)


def iter_archive_images(files: TarFiles, path: Path) -> Iterator[tuple[Image, list[str]]]:
    """The images of an indexed archive with the names to give them, in archive order.

    docker-archive: every ``manifest.json`` entry, named by its ``RepoTags``. oci-archive:
    every ``index.json`` entry (an index resolved for this host's platform), named by
    ``io.containerd.image.name`` (what ``docker save`` and BuildKit write) or else unnamed.
    Images open lazily from ``files``: the archive is indexed once, never extracted.
    """
    from lamina.transports.dockerarchive import DockerArchiveSource
    from lamina.transports.layout import LayoutSource
    from lamina.transports.source import select_image

    kind = archive_kind(files, path)
    what = f"{kind}:{path}"
    if kind == "docker-archive":
        src = DockerArchiveSource(files, what)
        for i, entry in enumerate(src.entries):
            yield src.image(None, i), list(entry.get("RepoTags") or [])
        return
    layout = LayoutSource(files, what)
    for desc in layout.read_index().manifests:
        name = (desc.annotations or {}).get("io.containerd.image.name")
        yield select_image(layout.load(desc), None, what), [name] if name else []


def load(store: Store, path: Path, *, progress: ProgressFn | None = None) -> list[str]:
    """``docker load``: every image of an archive into the store; returns what was loaded.

    The archive is indexed once (headers only; a compressed archive is decompressed once)
    and each layer read once, in place. Images are stored one by one; each is all-or-nothing.
    """
    from lamina.transports.files import TarFiles

    if not path.is_file():
        if path.exists():
            raise UsageError(
                f"{path}: not a regular file",
                hint="load takes a docker-archive or oci-archive file",
            )
        raise UsageError(f"{path}: no such archive file")
    _check_tar(path)
    files = TarFiles(path)
    loaded: list[str] = []
    try:
        for image, names in iter_archive_images(files, path):
            digest = store.put_image(image, [str(reference.parse(n)) for n in names])
            loaded += names or [str(digest)]
    finally:
        files.close()
    return loaded


def into_store(
    store: Store,
    src: transports.ImageRef,
    names: Sequence[str],
    *,
    platform: Platform | None = None,
) -> Digest:
    """Store the image ``src`` names (one platform of an index) in a single streaming pass.

    This bypasses the generic copy loop on purpose: ``Store.put_image`` reads each compressed
    layer once, writing the blob and applying the layer from the same bytes, where a generic
    destination would stage every blob first and read it again.
    """
    image = src.open_image(platform)
    return store.put_image(image, [str(reference.parse(n)) for n in names])


def save(
    store: Store, refs: Sequence[str], output: Path, *, fmt: str = "docker-archive"
) -> Descriptor:
    """``docker save``: images of the store into a docker-archive or oci-archive file."""
    if fmt not in ARCHIVE_FORMATS:
        raise UsageError(f"unknown format {fmt!r}", hint="use docker-archive or oci-archive")
    if len(refs) != 1:
        raise UsageError("save takes exactly one image for now")
    image = store.get_image(refs[0])
    names = [n for n in image.names() if "@" not in n]
    with atomic_output(output) as tmp:
        dst = transports.parse(f"{fmt}:{tmp}")
        return transports.copy(image, dst, names=names[:1] if fmt == "oci-archive" else names)


def _spool(source: str, tmpdir: Path) -> Path:
    if source != "-":
        path = Path(source)
        if not path.is_file():
            what = "not a regular file" if path.exists() else "no such file"
            raise UsageError(f"{source}: {what}", hint="give a rootfs tarball or - for stdin")
        return path
    return spool_stdin(tmpdir)


def spool_stdin(tmpdir: Path) -> Path:
    """stdin copied, 1 MiB at a time, to ``tmpdir/stdin.tar`` (readers that seek need a file)."""
    spooled = tmpdir / "stdin.tar"
    with spooled.open("wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return spooled


def import_rootfs(
    store: Store,
    source: str,
    name: str | None,
    *,
    changes: Sequence[str] = (),
    message: str | None = None,
    epoch: int | None = None,
    platform: Platform | None = None,
) -> str:
    """``docker import``: a rootfs tarball (plain, gzip or zstd; ``-`` = stdin) -> an image.

    The tarball becomes the single layer exactly as given (its digest is the layer digest), so
    the same tarball and ``epoch`` give the same manifest digest in any store.
    """
    from lamina.build.imageconfig import apply_changes  # the Dockerfile parser: only here

    plat = platform or Platform.host()
    tmp_root = store.root / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="import-") as tmp:
        layer = file_layer(_spool(source, Path(tmp)))
        created = timestamp(epoch)
        container = apply_changes({"Env": [f"PATH={_DEFAULT_PATH}"]}, changes)
        config = ImageConfig(
            architecture=plat.architecture,
            os=plat.os,
            variant=plat.variant,
            created=created,
            config=container,
            diff_ids=(layer.diff_id(),),
            history=(History(created=created, created_by="lamina import", comment=message),),
        )
        image = MemoryImage(config, [layer])
        try:
            digest = store.put_image(image, [name] if name else [])
        except UnsafeArchive as exc:  # the layer is the user's file: name it, not the digest
            exc.with_context(f"importing {source}")
            exc.hint = exc.hint or "import takes a rootfs tarball: tar, tar.gz or tar.zst"
            raise

    return str(store.get_image(str(digest)).id())


_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def export(store: Store, ref: str, output: Path | None, *, epoch: int | None = None) -> None:
    """The flattened filesystem of an image as a tar (to ``output``, or stdout when None)."""
    image = store.get_image(ref)
    top = image.record.top_layer
    if output is None:
        _export_to(store, top, sys.stdout.buffer, epoch)
        return
    with atomic_output(output) as tmp, tmp.open("wb") as f:
        _export_to(store, top, f, epoch)


def _export_to(store: Store, top: Digest | None, out: IO[bytes], epoch: int | None) -> None:
    from lamina.snapshot import write_layer

    if top is None:  # an image without layers: an empty tar
        tarfile.open(fileobj=out, mode="w|").close()
        return
    with merged_view(store, top) as tree:
        write_layer(tree, cast(BinaryIO, out), kind="dir", epoch=epoch)


@contextlib.contextmanager
def merged_view(store: Store, chain: Digest) -> Iterator[Path]:
    """A read-only-in-practice merged tree of the layer ``chain`` and everything below it.

    vfs keeps full trees per layer, so its diff dir is the view; overlay mounts the layers
    with a throwaway upper dir in ``<root>/tmp`` (volatile: its unmount must not sync the
    whole disk) and unmounts (and removes it) afterwards.
    """
    dirs = store.layer_dirs(chain)
    if store.backend.name == "vfs":
        yield dirs.upper
        return
    tmp = Path(tempfile.mkdtemp(prefix="view-", dir=store.root / "tmp"))
    upper, work, merged = tmp / "upper", tmp / "work", tmp / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    try:
        store.backend.mount([dirs.upper, *dirs.lower], upper, work, merged, volatile=True)
        try:
            yield merged
        finally:
            store.backend.unmount(merged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pull(
    store: Store,
    source: str,
    *,
    name: str | None = None,
    platform: Platform | None = None,
    progress: ProgressFn | None = None,
    registries: Registries | None = None,
) -> str:
    """Copy an image from any non-local transport into the store; returns its name or digest.

    A bare name is a registry name, as for ``docker pull`` (``busybox`` is
    ``docker://docker.io/library/busybox:latest``), stored under that name unless ``name``
    says otherwise; ``local:NAME`` is refused.
    """
    ref = transports.parse(source, store=store)
    if ref.transport == "local":
        if source.startswith("local:"):
            raise UsageError(
                f"{source} names an image in the local store",
                hint="pull takes a registry name or a transport reference, e.g. oci:DIR:REF",
            )
        ref = transports.parse("docker://" + source)
    if ref.transport == "docker":
        from lamina.ops import registry

        docker_ref = cast("DockerRef", registry.with_registries(ref, registries))
        return registry.pull(store, docker_ref, name=name, platform=platform)[0]
    names = [name] if name else []
    digest = into_store(store, ref, names, platform=platform)
    return names[0] if names else str(digest)


def copy(
    store: Store,
    source: str,
    dest: str,
    *,
    platform: Platform | None = None,
    progress: ProgressFn | None = None,
    registries: Registries | None = None,
) -> Descriptor:
    """Copy between any two transports (a bare name is the local store)."""
    src = transports.parse(source, store=store)
    dst = transports.parse(dest, store=store)
    if "docker" in (src.transport, dst.transport):
        from lamina.ops import registry

        src = registry.with_registries(src, registries)
        dst = registry.with_registries(dst, registries)
        if dst.transport != "local":
            return registry.copy_to(store, src, dst, platform=platform, progress=progress)
    if dst.transport == "local" and src.transport != "local":
        stored = store.get_image(str(into_store(store, src, [dst.details()], platform=platform)))
        return Descriptor.of_bytes(stored.media_type(), stored.raw_manifest())
    return transports.copy(src, dst, platform=platform, progress=progress)


__all__ = [
    "archive_kind",
    "atomic_output",
    "copy",
    "detect_archive",
    "export",
    "import_rootfs",
    "iter_archive_images",
    "load",
    "merged_view",
    "pull",
    "save",
    "spool_stdin",
]
