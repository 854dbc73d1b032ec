"""Layers on disk: build one from a tar, register it by chain id, find its dirs, remove it.

Invariants:
- **Never visible incomplete**: a layer is applied into ``overlay2/.tmp-<id>`` outside the
  store lock, its diff_id verified while streaming; then, under the lock, the dir is renamed to
  ``overlay2/<id>``, the ``l/<short>`` link made, and the layerdb entry written last (the
  commit point). On any error everything built is removed.
- **Idempotent**: a chain id that is already registered is reused; the stream is drained and
  verified (the caller may be tee-ing it into the blob store) and the new copy discarded.
- **One apply per chain at a time**: when the diff_id is known up front, a per-chain flock in
  ``tmp/locks`` makes concurrent loaders of the same layer wait for the first instead of
  applying it twice.
- With a copying backend (vfs) each layer dir holds the parent's full tree plus this layer
  applied in merged mode; otherwise it holds this layer only, whiteouts as overlay whiteouts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Literal, cast

from lamina._internal.fileio import read_regular
from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.lock import flocked
from lamina._internal.verify import VerifyingReader, VouchedReader
from lamina.errors import LaminaError, NotFound, StorageError, StoreCorrupt
from lamina.oci.digest import Digest
from lamina.store.layerdb import BlobRef, LayerDB, LayerRecord
from lamina.store.layout import (
    TMP_PREFIX,
    Layout,
    chain_id,
    lock_name,
    new_layer_id,
    new_short_id,
)
from lamina.unionfs.backend import Backend
from lamina.unionfs.overlay import in_user_namespace

CHUNK = 1 << 20
#: How long a loader waits for another process applying the same layer (big layers are slow).
APPLY_WAIT = 3600.0


@lazy_dataclass(frozen=True, kw_only=True)
class LayerDirs:
    """The directories of a layer, ready for a union mount.

    ``lower`` are the diff dirs below the layer, top first (``lower_links`` the same as
    ``overlay2/l/<short>`` paths, shorter for mount options); ``upper`` is the layer's diff.
    With a copying backend (vfs) ``upper`` alone already holds the full merged tree.
    """

    lower: list[Path]
    lower_links: list[Path]
    upper: Path
    work: Path
    merged: Path


class LayerStore:
    """Layers of one store. Mutating methods that say so must run under the store lock."""

    def __init__(self, layout: Layout, backend: Backend, db: LayerDB) -> None:
        self.layout = layout
        self.backend = backend
        self.db = db

    # ----------------------------------------------------------------- queries
    def get(self, chain: Digest) -> LayerRecord:
        """The record of ``chain``; NotFound if it is not registered."""
        record = self.db.get(chain)
        if record is None:
            raise NotFound(f"layer {chain} not found in the store")
        return record

    def diff_dir(self, record: LayerRecord) -> Path:
        """``overlay2/<cache-id>/diff``."""
        return self.layout.layer_dir(record.cache_id) / "diff"

    def short_id(self, record: LayerRecord) -> str:
        """The layer's ``link`` file content; StoreCorrupt if missing or malformed."""
        try:
            short = read_regular(self.layout.layer_dir(record.cache_id) / "link", 64).decode()
        except OSError as exc:
            raise StoreCorrupt(f"layer {record.chain_id}: unreadable link file: {exc}") from None
        if len(short) != 26 or not short.isalnum():
            raise StoreCorrupt(f"layer {record.chain_id}: malformed link file {short!r}")
        return short

    def chain(self, chain: Digest) -> list[LayerRecord]:
        """``chain`` and all its ancestors, top first."""
        out: list[LayerRecord] = []
        cur: Digest | None = chain
        while cur is not None:
            record = self.get(cur)
            out.append(record)
            cur = record.parent
            if len(out) > 1000:
                raise StoreCorrupt(f"layer {chain}: parent chain is too long or cyclic")
        return out

    def layer_dirs(self, chain: Digest) -> LayerDirs:
        """Dirs for mounting ``chain``: its diff is the upper, its ancestors the lowers."""
        records = self.chain(chain)
        top = self.layout.layer_dir(records[0].cache_id)
        return LayerDirs(
            lower=[self.diff_dir(r) for r in records[1:]],
            lower_links=[self.layout.link_path(self.short_id(r)) for r in records[1:]],
            upper=top / "diff",
            work=top / "work",
            merged=top / "merged",
        )

    def graph_driver(self, chain: Digest | None) -> dict[str, object]:
        """Docker's ``GraphDriver`` object for an image whose top layer is ``chain``."""
        name = "overlay2" if self.backend.name == "overlay" else self.backend.name
        if chain is None:
            return {"Data": None, "Name": name}
        dirs = self.layer_dirs(chain)
        data: dict[str, str] = {
            "MergedDir": str(dirs.merged),
            "UpperDir": str(dirs.upper),
            "WorkDir": str(dirs.work),
        }
        if dirs.lower:
            data["LowerDir"] = ":".join(map(str, dirs.lower))
        return {"Data": dict(sorted(data.items())), "Name": name}

    # ----------------------------------------------------------------- create
    def create(
        self,
        parent: Digest | None,
        uncompressed: BinaryIO,
        expected_diff_id: Digest | None,
        *,
        store_lock: Path,
        voucher: VerifyingReader | None = None,
    ) -> LayerRecord:
        """Apply ``uncompressed`` on ``parent`` and register it; return the record.

        The stream is read to EOF (and verified against ``expected_diff_id``); the caller
        closes it. Takes ``store_lock`` itself, only for the short registration step.
        ``voucher``: a verifier of ``expected_diff_id`` that reads these same bytes in step
        (a plain tar teed from its verified blob); the tar is then not hashed again.
        """
        if parent is not None:
            self.get(parent)
        reader: VerifyingReader
        # names the layer in errors (never the store's staging path: users cannot act on it)
        what = f"layer {expected_diff_id}" if expected_diff_id is not None else "layer tar"
        if voucher is not None and expected_diff_id is not None:
            if voucher.expected != expected_diff_id:
                raise ValueError("the voucher must verify the expected diff_id")
            reader = VouchedReader(uncompressed, voucher, what=what)
        else:
            reader = VerifyingReader(uncompressed, expected_diff_id, None, what=what)
        if expected_diff_id is None:
            return self._create_unlocked(parent, reader, store_lock)
        chain = chain_id(parent, expected_diff_id)
        with flocked(self.layout.apply_locks / lock_name(str(chain)), timeout=APPLY_WAIT):
            existing = self.db.get(chain)
            if existing is not None:
                reader.drain(CHUNK)
                return existing
            return self._create_unlocked(parent, reader, store_lock)

    def adopt(
        self,
        parent: Digest | None,
        diff: Path,
        diff_id: Digest,
        size: int,
        *,
        store_lock: Path,
        blobs: tuple[BlobRef, ...] = (),
    ) -> LayerRecord:
        """Register the already-built directory ``diff`` as the layer ``diff_id`` on ``parent``.

        ``diff`` must hold exactly what applying the layer would give (overlay format: the
        upper dir of a build step; for a copying backend, the full merged tree) and live on the
        store's filesystem: it is *moved* into place (rename), never copied. The caller
        vouches that ``diff_id`` is the tar of ``diff`` (it just wrote it); ``blobs``: stored
        forms of the layer to record with it (each already durable in the blob store). If the
        chain is already registered, ``diff`` is removed and the existing record returned.
        Atomic as :meth:`create`: the layerdb entry is written last, under ``store_lock``.
        """
        if parent is not None:
            self.get(parent)
        chain = chain_id(parent, diff_id)
        with flocked(self.layout.apply_locks / lock_name(str(chain)), timeout=APPLY_WAIT):
            existing = self.db.get(chain)
            if existing is not None:
                remove_tree(diff)
                return existing
            layer_id = new_layer_id()
            tmp = self.layout.overlay2 / f"{TMP_PREFIX}{layer_id}"
            try:
                tmp.mkdir(mode=0o710)
                os.rename(diff, tmp / "diff")
                (tmp / "work").mkdir(mode=0o700)
                return self._publish(tmp, layer_id, chain, diff_id, parent, size, store_lock, blobs)
            finally:
                if tmp.exists():
                    remove_tree(tmp)

    def _publish(
        self,
        tmp: Path,
        layer_id: str,
        chain: Digest,
        diff_id: Digest,
        parent: Digest | None,
        size: int,
        store_lock: Path,
        blobs: tuple[BlobRef, ...] = (),
    ) -> LayerRecord:
        """Register the built ``tmp`` dir under ``store_lock``, unless another process already
        registered ``chain`` (then its record wins and the caller removes ``tmp``)."""
        with flocked(store_lock):
            existing = self.db.get(chain)
            if existing is not None:
                return existing
            return self._register(tmp, layer_id, chain, diff_id, parent, size, blobs)

    def _create_unlocked(
        self, parent: Digest | None, reader: VerifyingReader, store_lock: Path
    ) -> LayerRecord:
        layer_id = new_layer_id()
        tmp = self.layout.overlay2 / f"{TMP_PREFIX}{layer_id}"
        try:
            size = self._build(tmp, parent, reader)
            diff_id = reader.digest()
            chain = chain_id(parent, diff_id)
            return self._publish(tmp, layer_id, chain, diff_id, parent, size, store_lock)
        finally:
            if tmp.exists():
                remove_tree(tmp)

    def _build(self, tmp: Path, parent: Digest | None, reader: VerifyingReader) -> int:
        from lamina.snapshot import apply_layer

        tmp.mkdir(mode=0o710)
        diff = tmp / "diff"
        if self.backend.copies and parent is not None:
            copy_tree(self.diff_dir(self.get(parent)), diff)
        else:
            diff.mkdir(mode=0o755)
        mode: Literal["merged", "overlay"] = "merged" if self.backend.copies else "overlay"
        rootless = in_user_namespace()
        result = apply_layer(
            cast(BinaryIO, reader), diff, mode=mode, rootless=rootless, what=reader.what
        )
        reader.drain(CHUNK)
        (tmp / "work").mkdir(mode=0o700)
        return result.size

    def _register(
        self,
        tmp: Path,
        layer_id: str,
        chain: Digest,
        diff_id: Digest,
        parent: Digest | None,
        size: int,
        blobs: tuple[BlobRef, ...] = (),
    ) -> LayerRecord:
        """Under the store lock: link files, rename into place, layerdb entry last."""
        short = new_short_id()
        (tmp / "link").write_text(short)
        if parent is not None:
            records = self.chain(parent)
            lower = ":".join(f"l/{self.short_id(r)}" for r in records)
            (tmp / "lower").write_text(lower)
        final = self.layout.layer_dir(layer_id)
        os.rename(tmp, final)
        link = self.layout.link_path(short)
        try:
            os.symlink(f"../{layer_id}/diff", link)
            record = LayerRecord(
                chain_id=chain, diff_id=diff_id, parent=parent, cache_id=layer_id, size=size,
                blobs=blobs,
            )  # fmt: skip
            self.db.put(record)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            remove_tree(final)
            raise
        return record

    # ----------------------------------------------------------------- remove
    def unregister(self, chain: Digest) -> Path | None:
        """Under the store lock: drop ``chain`` from the layerdb, remove its ``l/`` link and
        rename its dir to ``overlay2/.tmp-del-<id>``; returns that dir for the caller to
        :func:`remove_tree` *after* releasing the lock (None if nothing to remove).

        Idempotent. The caller checks that nothing references the layer.
        """
        record = self.db.get(chain)
        if record is None:
            return None
        layer_dir = self.layout.layer_dir(record.cache_id)
        short: str | None = None
        with contextlib.suppress(LaminaError):
            short = self.short_id(record)
        self.db.delete(chain)
        if short is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.layout.link_path(short))
        if not layer_dir.exists():
            return None
        doomed = self.layout.overlay2 / f"{TMP_PREFIX}del-{record.cache_id}"
        os.rename(layer_dir, doomed)
        return doomed


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a layer tree exactly (owners, modes, xattrs, hard links, devices) with ``cp -a``."""
    import subprocess  # here: only the vfs driver copies trees

    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--no-target-directory", str(src), str(dst)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise StorageError(f"copying layer tree {src} to {dst}: {err}")


def remove_tree(path: Path) -> None:
    """Remove a layer tree (idempotent), first making read-only directories writable when
    needed (rootless); never follows symlinks."""
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except PermissionError:
        pass
    for dirpath, dirnames, _files in os.walk(path, followlinks=False):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                with contextlib.suppress(OSError):
                    os.chmod(full, 0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)
