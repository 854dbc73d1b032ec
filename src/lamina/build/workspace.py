"""A build step's filesystem: the parent chain plus a fresh writable layer; its snapshot.

:class:`StepFS` (a context manager) gives a step a ``rootfs`` to write into:

- overlay backends: ``rootfs`` is an overlay mount of the parent chain's diff dirs under a
  fresh ``upper`` in a private directory below ``<root>/tmp``, mounted ``volatile`` (its
  unmount must not sync the whole disk: the step's result is made durable as a blob). An
  ``init`` lower, stacked just above the chain, holds the mount points a RUN needs
  (``/proc``, ``/etc/hosts``...) when the image lacks them, as Docker's ``<id>-init`` layer
  does, so the runtime creates nothing in ``upper`` and they never reach the layer.
  They are found in the chain's diff dirs before the first mount
  (:mod:`lamina.build.initlower`); any the diff dirs leave in doubt (a symlink on the way, an
  opaque dir) are checked in the mounted tree, and added with a second mount.
  Directories created there copy the metadata of the image's own directories, so a later
  copy-up keeps the image's modes. The snapshot is ``upper`` itself
  (:func:`lamina.snapshot.write_layer`, ``overlay-upper``): its cost is proportional to what
  the step changed, never to the size of the base.
- the copying backend (vfs): ``rootfs`` is a ``cp -a --reflink=auto`` copy of the parent's full
  tree; the snapshot is the two-tree diff (:func:`lamina.snapshot.write_diff_layer`).

:meth:`StepFS.commit` streams the layer tar straight into the blob store (an ingest file,
hashed while written; the tar is the uncompressed blob, digest == diff_id) and then *moves*
the step's directory into the store as the layer (:meth:`Store.adopt_layer`: the upper dir is
already in the store's overlay format, and on vfs the step's tree is the full layer tree), so
nothing is applied or deleted twice; an empty change set gives no layer (None), as BuildKit
drops empty layers. Known difference: with an epoch the tar's times are clamped while the
adopted directory keeps the real times (later steps may see times after the epoch; every
layer tar is clamped again, so image digests stay reproducible).
:func:`open_view` gives a read-only-in-practice merged tree of any chain
(for ``COPY --from`` and ``RUN --mount=from=``).

Invariants: whatever happens, leaving the context unmounts everything it mounted and removes
its private directory; nothing is registered in the store except by ``commit``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, cast

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.oci.digest import Digest
from lamina.store import Store
from lamina.store.layers import copy_tree, remove_tree

if TYPE_CHECKING:
    from lamina.blobstore.ingest import Ingest
    from lamina.snapshot.writer import EarlierTar, Span

#: the size of a tar with no entries (two zero blocks): an empty change set
EMPTY_TAR_SIZE = 1024
_GATHER = 1 << 20


@lazy_dataclass(frozen=True, kw_only=True)
class Committed:
    """A step's new layer: its diff_id (== blob digest, uncompressed), size, chain id."""

    diff_id: Digest
    size: int
    chain: Digest


def new_private_dir(store: Store, prefix: str) -> Path:
    """A fresh 0700 directory below ``<root>/tmp`` (the caller removes it)."""
    base = store.root / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


class StepFS:
    """The filesystem of one step on top of ``parent`` (None = scratch). See module doc."""

    def __init__(
        self,
        store: Store,
        parent: Digest | None,
        *,
        mountpoints: Sequence[tuple[str, bool]] = (),
    ) -> None:
        """``mountpoints``: (path, is_dir) a RUN will mount on; those the chain surely lacks
        are put into ``init`` before the first mount (:func:`lamina.build.initlower.plan_init`;
        :meth:`provide_mountpoints` adds any the plan left out)."""
        self.store = store
        self.parent = parent
        self.copies = store.backend.copies
        self.dir = new_private_dir(store, "step-")
        self.upper = self.dir / "upper"
        self.rootfs = self.upper if self.copies else self.dir / "merged"
        self._mounted = False
        self._since_ns = 0
        self._lower_dirs: list[Path] | None = None
        try:
            self._prepare(mountpoints)
        except BaseException:
            self.close()
            raise

    def _lowers(self) -> list[Path]:
        """The chain's diff dirs, top first (read once: a chain's layers never change)."""
        if self._lower_dirs is None:
            if self.parent is None:
                self._lower_dirs = []
            else:
                dirs = self.store.layer_dirs(self.parent)
                self._lower_dirs = [dirs.upper, *dirs.lower]
        return self._lower_dirs

    def _prepare(self, mountpoints: Sequence[tuple[str, bool]]) -> None:
        if self.copies:
            if self.parent is None:
                self.upper.mkdir(mode=0o755)
            else:
                copy_tree(self.store.layer_dirs(self.parent).upper, self.upper)
            self._since_ns = time.time_ns()
            return
        for name in ("upper", "work", "merged", "init"):
            (self.dir / name).mkdir(mode=0o755)
        if mountpoints:
            from lamina.build.initlower import plan_init  # only RUN steps pass mount points

            for rel, is_dir, metas in plan_init(self._lowers(), mountpoints):
                _create_in_init(self.dir / "init", rel, is_dir, metas)
        self._mount()

    def _mount(self) -> None:
        work = self.dir / "work"
        if any(work.iterdir()):  # a volatile work dir cannot be mounted twice
            shutil.rmtree(work)
            work.mkdir(mode=0o755)
        self.store.backend.mount(
            [self.dir / "init", *self._lowers()], self.upper, work, self.rootfs, volatile=True
        )
        self._mounted = True

    def unmount(self) -> None:
        """Unmount ``rootfs`` (idempotent; overlay only): the upper dir is stable afterwards,
        and may be changed directly until :meth:`commit` (which unmounts first anyway)."""
        self._unmount()

    def _unmount(self) -> None:
        if self._mounted:
            self.store.backend.unmount(self.rootfs)
            self._mounted = False

    def provide_mountpoints(self, points: Sequence[tuple[str, bool]]) -> None:
        """Make sure every (path, is_dir) mount point exists without touching the layer.

        Overlay: missing ones are created in the ``init`` lower (then the overlay is mounted
        again). vfs: nothing to do here; the runtime creates and removes them itself.
        """
        if self.copies:
            return
        from lamina.runtime.bundle import resolve_partial  # only builds that RUN need it

        missing: list[tuple[str, bool]] = []
        for dest, is_dir in points:
            try:
                resolved = resolve_partial(self.rootfs, dest)
            except OSError:
                continue  # the runtime reports an unusable mount point itself
            if not os.path.lexists(resolved):
                missing.append((resolved.relative_to(self.rootfs).as_posix(), is_dir))
        if not missing:
            return
        plan = [(rel, is_dir, self._existing_meta(rel)) for rel, is_dir in missing]
        self._unmount()
        init = self.dir / "init"
        for rel, is_dir, metas in plan:
            _create_in_init(init, rel, is_dir, metas)
        self._mount()

    def _existing_meta(self, rel: str) -> list[os.stat_result | None]:
        """lstat of each leading component of ``rel`` in the mounted rootfs (None if absent)."""
        out: list[os.stat_result | None] = []
        parts = rel.split("/")
        for i in range(1, len(parts)):
            try:
                out.append(os.lstat(self.rootfs.joinpath(*parts[:i])))
            except OSError:
                out.append(None)
        return out

    def commit(
        self,
        *,
        epoch: int | None,
        onto: Digest | bool | None = True,
        earlier: EarlierTar | None = None,
        offsets: dict[str, Span] | None = None,
    ) -> Committed | None:
        """Snapshot the step's changes into the store; None when nothing changed.

        The layer is registered on ``onto`` (True = this step's parent; ``COPY --link`` builds
        on scratch and passes the real parent). Unmounts first (the upper dir is stable then).
        Idempotent per content: a layer with the same chain id already registered is reused.
        ``earlier``/``offsets``: passed to :func:`lamina.snapshot.write_layer` (not used by
        the vfs two-tree diff).
        """
        from lamina.snapshot.writer import write_layer  # not needed by cache hits

        self._unmount()
        blobs = self.store.blobs
        with blobs.begin() as ingest:
            gathered = _Gathered(ingest)
            out = cast(BinaryIO, gathered)
            # the ingest hashes what it is given: the writer does not hash it again
            if not self.copies:
                written = write_layer(
                    self.upper, out, kind="overlay-upper", epoch=epoch,
                    digest_from=gathered.digest, earlier=earlier, offsets=offsets,
                )  # fmt: skip
            elif self.parent is None:
                written = write_layer(
                    self.upper, out, kind="dir", epoch=epoch, digest_from=gathered.digest,
                    earlier=earlier, offsets=offsets,
                )  # fmt: skip
            else:
                from lamina.snapshot.diff import write_diff_layer  # the vfs two-tree diff

                lower = self.store.layer_dirs(self.parent).upper
                written = write_diff_layer(
                    lower, self.upper, out, epoch=epoch, since_ns=self._since_ns
                )
            if written.size == EMPTY_TAR_SIZE:
                return None
            gathered.flush()
            digest, size = ingest.commit()
        parent = self.parent if onto is True else onto
        base = parent if isinstance(parent, Digest) else None
        if onto is not True and self.copies:
            # a vfs layer dir is a full tree: rebasing needs the tar applied on the parent
            return register_blob(self.store, base, digest, size)
        record = self.store.adopt_layer(base, self.upper, digest, size)
        return Committed(diff_id=digest, size=size, chain=record.chain_id)

    def close(self) -> None:
        """Unmount and remove everything (idempotent)."""
        try:
            self._unmount()
        finally:
            if self.dir.exists():
                remove_tree(self.dir)

    def __enter__(self) -> StepFS:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Gathered:
    """Writes to a blob ingest in pieces of at least 1 MiB (larger writes pass straight on).

    A layer tar of small files is mostly 512-byte headers and short bodies: one ``write``
    syscall and one hash update each otherwise. :meth:`digest` flushes first, so it is the
    digest of everything written; the caller flushes before committing the ingest.
    """

    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest
        self._buf = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n >= _GATHER:
            self.flush()
            self._ingest.write(data)
            return n
        self._buf += data
        if len(self._buf) >= _GATHER:
            self.flush()
        return n

    def flush(self) -> None:
        if self._buf:
            self._ingest.write(self._buf)
            self._buf = bytearray()

    def digest(self) -> Digest:
        self.flush()
        return self._ingest.digest()


def register_blob(store: Store, parent: Digest | None, digest: Digest, size: int) -> Committed:
    """Apply the stored uncompressed layer blob ``digest`` on ``parent``; return the layer."""
    with store.blobs.open(digest) as f:
        record = store.create_layer(parent, f, digest)
    return Committed(diff_id=digest, size=size, chain=record.chain_id)


def _create_in_init(
    init: Path, rel: str, is_dir: bool, metas: Sequence[os.stat_result | None]
) -> None:
    """Create ``rel`` in ``init``; parents copy the image's metadata where the image has them."""
    parts = rel.split("/")
    current = init
    times: list[tuple[Path, os.stat_result]] = []
    for comp, meta in zip(parts[:-1], metas, strict=True):
        current = current / comp
        if not current.exists():
            current.mkdir(mode=0o755)
            if meta is not None and stat.S_ISDIR(meta.st_mode):
                os.chown(current, meta.st_uid, meta.st_gid)
                os.chmod(current, stat.S_IMODE(meta.st_mode))
                times.append((current, meta))
    leaf = current / parts[-1]
    if is_dir:
        leaf.mkdir(mode=0o755, exist_ok=True)
    elif not leaf.exists():
        leaf.touch(mode=0o644)
    for path, meta in reversed(times):
        os.utime(path, ns=(meta.st_atime_ns, meta.st_mtime_ns))


@contextlib.contextmanager
def open_view(store: Store, chain: Digest | None) -> Iterator[Path]:
    """A merged tree of ``chain`` (an empty dir for None). Writes to it are thrown away
    (overlay: a private upper) — except on vfs with a single tree, where callers must not
    write. Unmounted and removed on exit."""
    private = new_private_dir(store, "view-")
    try:
        if chain is None:
            empty = private / "empty"
            empty.mkdir()
            yield empty
            return
        dirs = store.layer_dirs(chain)
        if store.backend.copies:
            yield dirs.upper
            return
        upper, work, merged = private / "upper", private / "work", private / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        store.backend.mount([dirs.upper, *dirs.lower], upper, work, merged, volatile=True)
        try:
            yield merged
        finally:
            store.backend.unmount(merged)
    finally:
        shutil.rmtree(private, ignore_errors=True)


@contextlib.contextmanager
def open_overlay(store: Store, lower: Path) -> Iterator[Path]:
    """A writable throwaway overlay on the directory ``lower`` (vfs: a private copy)."""
    private = new_private_dir(store, "bind-")
    try:
        if store.backend.copies:
            copy = private / "copy"
            copy_tree(lower, copy)
            yield copy
            return
        upper, work, merged = private / "upper", private / "work", private / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        store.backend.mount([lower], upper, work, merged, volatile=True)
        try:
            yield merged
        finally:
            store.backend.unmount(merged)
    finally:
        remove_tree(private)
