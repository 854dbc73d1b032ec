"""Reusing a previous layer's unchanged files when a ``COPY`` of the build context misses.

When one file of a large context changes, the ``COPY`` step's cache key changes and the layer
is made again. Most of its files are the same as in the layer the same step made last time;
:class:`LayerReuse` hard-links those from that layer's diff dir into the new layer instead of
copying them through the union mount. Everything else is copied as before, and the result is
the same tree, hence the same tar and diff_id, as a cold copy.

The record. After a ``COPY`` of one context directory commits a layer, :meth:`LayerReuse.save`
writes ``<buildcache>/reuse/<2 hex>/<key>.json``: the layer's chain id, the source directory,
the destination directory relative to the layer (``top``) and, for every regular file the
copy wrote with a single link, its path below the source and the source's stat signature
``dev:ino:size:mtime_ns:ctime_ns:mode:uid:gid`` taken before the copy read it, followed by
``@start:end``, where its entry lies in the layer tar, when the tar is recorded too (its
diff_id and epoch). The key is the step's cache key *without* the content
key and without the parent chain (``copy-reuse`` in :mod:`lamina.build.steps.files`): the
last layer made by "this COPY" whatever the content. Last writer wins; a missing, unreadable
or older-format record means "copy everything".

When a file may be linked (:meth:`LayerReuse.offer`), all of these hold:

- the current source file's ``lstat`` signature equals the recorded one, which was not
  *racy* when recorded (mtime and ctime older than the copy's start minus a clock tick: 50 ms,
  2 s for whole-second timestamps; git's "racy clean" rule), so the file has not been written
  since the copy read it (the stat cache's argument): the previous layer's file holds its
  current content;
- the previous layer's file is a regular file whose size, permission bits, owner and
  ``mtime_ns`` equal what the copy would give it (``--chmod``, ``--chown``, ``timestamp``
  applied) and that has no extended attributes; the source had none to copy when recorded
  (files with some are not recorded; adding one changes the ctime, hence the signature),
  and has one link (hard links inside the context are copied, so they stay links of each
  other only);
- no inode is linked twice into one layer, and nothing but a non-directory sits at the
  destination (a directory there is the copier's error to report);
- the process is root (in its namespace): a file created without root gets an owner we do
  not predict, so rootless-without-namespace builds copy everything.

Why linking is safe: layer diff dirs are immutable once registered (overlay copy-up copies a
lower file before changing it, a vfs step works in a ``cp -a`` copy, commits and squashes
write new dirs, ``rmi``/``prune`` unlink names, and a link survives its other name's unlink).
An inode shared by several layers sits at the same layer-relative path in all of them, so a
merged view of one chain shows it at most once and the tar writer, which sees one path for
it in a layer, writes a plain file entry (``nlink`` > 1 alone makes no tar link).

The links are made in the upper dir *after* the overlay is unmounted (:meth:`apply`; changing
an upper dir under a mounted overlay is undefined), into directories the copy already made
there (a lower directory is copied up first, by a no-op ``fchmod``, exactly as a file written
into it would have). A link changes its directory's mtime, so the times the copier gave its
directories are set again. When ``link`` fails (``EXDEV``, ``EPERM``, ``EMLINK``, the previous
layer removed meanwhile...) the file is copied from the source into the upper dir instead.

The tar. When the previous tar is still stored, was written with the same epoch and put the
files under the same ``top``, the new tar copies the linked files' entries from it
(:class:`lamina.snapshot.writer.EarlierTar`: same path, same inode, same epoch give the same
bytes) instead of reading and framing each file again. That blob was verified when it was
stored (a cache hit trusts it the same way); the new blob is hashed as it is written.

Scope: ``COPY`` of one context name resolving to one directory (no ``--from``, heredoc,
``--parents`` or ``ADD``: several sources could write one path, and a deferred link would
then win). ``--no-cache`` records but links nothing. A record costs about 100 bytes per file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from lamina._internal.fileio import write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import BuildError, NotFound, StoreCorrupt
from lamina.oci.digest import Digest
from lamina.store import Store

if TYPE_CHECKING:
    from lamina.snapshot.writer import EarlierTar

__all__ = ["LayerReuse", "Previous", "load_previous", "signature"]

RECORD_VERSION = "lamina-copy-reuse-v3"
#: a source changed this close to the copy's start may change again unseen (same clock tick):
#: the coarse kernel clock lags by a tick (HZ=100: 10 ms); whole-second timestamps by 2 s
RACY_NS = 50_000_000
RACY_WHOLE_SECOND_NS = 2_000_000_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: ``dev:ino:size:mtime_ns:ctime_ns:mode:uid:gid`` (text: compared as is, loaded fast)
Signature = str
#: the metadata a copied file gets: (permission bits, uid, gid, mtime_ns)
Wanted = tuple[int, int, int, int]
#: copies ``src`` into the open directory fd as ``name``; ``sub`` is its path below the source
Fallback = Callable[[str, int, str, str], None]
#: (path below the source, st_dev and st_ino of the previous layer's file, its tar span text)
_Item = tuple[str, int, int, str]


def signature(st: os.stat_result) -> Signature:
    """The stat signature a record keeps for a source file."""
    return (
        f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_mode}:"
        f"{st.st_uid}:{st.st_gid}"
    )


def _record_path(directory: Path, key: str) -> Path:
    return directory / key[:2] / f"{key}.json"


@lazy_dataclass(frozen=True, kw_only=True)
class Previous:
    """The last layer this step made: its diff dir, source dir, ``top``, file signatures (each
    maybe ``@start:end`` in its tar) and that tar's diff_id and epoch (see module docstring)."""

    upper: Path
    root: str
    top: str
    files: Mapping[str, object]
    diff_id: Digest | None = None
    epoch: int | None = None


def load_previous(store: Store, directory: Path, key: str) -> Previous | None:
    """The record of ``key`` if its layer is still in the store, else None (never raises)."""
    try:
        obj = json.loads(_record_path(directory, key).read_bytes())
        if obj.get("version") != RECORD_VERSION:
            return None
        chain = Digest.parse(obj["chain"])
        files = obj["files"]
        root, top = str(obj["root"]), str(obj["top"])
        diff_id = Digest.parse(obj["diff_id"]) if obj.get("diff_id") else None
        epoch = obj.get("epoch")
        if not isinstance(files, dict):
            return None
        if epoch is not None and not isinstance(epoch, int):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    try:
        upper = store.layer_dirs(chain).upper
    except (NotFound, OSError):
        return None
    except Exception:  # a corrupt layer entry: copy everything
        return None
    return Previous(upper=upper, root=root, top=top, files=files, diff_id=diff_id, epoch=epoch)


@lazy_dataclass
class LayerReuse:
    """Links for one ``COPY`` of one context directory (see the module docstring).

    ``previous`` None: nothing is linked, but :meth:`save` still records this copy. ``upper``
    is the step's upper dir and ``rootfs`` what the copier writes into (the overlay mount, or
    ``upper`` itself on vfs, ``mounted`` False).
    """

    previous: Previous | None
    upper: Path
    rootfs: Path
    mounted: bool
    started_ns: int = field(default_factory=time.time_ns)
    root: str | None = None
    top: str = ""
    active: bool = False
    files: dict[str, Signature] = field(default_factory=dict)
    pending: list[_Item] = field(default_factory=list)
    used: set[tuple[int, int]] = field(default_factory=set)
    in_upper: set[str] = field(default_factory=set)
    #: directories (paths below the source) this copy created: nothing else is in them
    fresh: set[str] = field(default_factory=set)
    dir_times: dict[str, tuple[int, int]] = field(default_factory=dict)
    fallback: Fallback | None = None
    #: the files :meth:`apply` linked
    linked: list[_Item] = field(default_factory=list)

    def begin(self, source_dir: str, top_dir: str, fallback: Fallback) -> bool:
        """The copy of directory ``source_dir`` into ``top_dir`` (a path below ``rootfs``)
        starts; False (and nothing recorded) if this is not the one copy this object is for.
        ``fallback`` copies what :meth:`apply` cannot link."""
        prefix = f"{self.rootfs}/"
        if self.root is not None or not (top_dir == str(self.rootfs) or top_dir.startswith(prefix)):
            self.active, self.root = False, ""
            self.files.clear()
            return False
        self.root, self.top, self.active = source_dir, top_dir[len(prefix) :], True
        self.fallback = fallback
        prev = self.previous
        if prev is not None and prev.root != source_dir:
            self.previous = None
        return True

    def _rel(self, sub: str) -> str:
        return f"{self.top}/{sub}" if self.top else sub

    @property
    def linking(self) -> bool:
        """Whether :meth:`offer` may take anything (a previous layer, and the one copy)."""
        return self.active and self.previous is not None

    def offer(self, sub: str, st: os.stat_result, pfd: int, name: str, want: Wanted | None) -> bool:
        """Whether source file ``sub`` (lstat ``st``, copied to ``name`` in directory ``pfd``)
        will be linked from the previous layer instead of copied; the caller then skips it."""
        prev = self.previous
        if not self.active or prev is None or want is None:
            return False
        found = prev.files.get(sub)
        if not isinstance(found, str):
            return False
        sig, _, span = found.partition("@")
        if sig != signature(st):
            return False
        path = f"{prev.upper}/{prev.top}/{sub}" if prev.top else f"{prev.upper}/{sub}"
        try:
            pst = os.lstat(path)
        except OSError:
            return False
        ident = (pst.st_dev, pst.st_ino)
        if (
            not stat.S_ISREG(pst.st_mode)
            or ident in self.used
            or (pst.st_size, stat.S_IMODE(pst.st_mode), pst.st_uid, pst.st_gid, pst.st_mtime_ns)
            != (st.st_size, *want)
            or _has_xattrs(path)
            or not self._room(pfd, name, sub)
        ):
            return False
        self.used.add(ident)
        self.pending.append((sub, pst.st_dev, pst.st_ino, span))
        self.files[sub] = sig
        return True

    def _room(self, pfd: int, name: str, sub: str) -> bool:
        """Nothing but a non-directory at ``name``; on overlay, its parent made in upper."""
        parent_sub = sub.rpartition("/")[0]
        if not (parent_sub and parent_sub in self.fresh):  # else only this copy writes there
            try:
                if stat.S_ISDIR(os.lstat(name, dir_fd=pfd).st_mode):
                    return False
            except FileNotFoundError:
                pass
        if not self.mounted:
            return True
        parent = self._rel(sub).rpartition("/")[0]
        if parent in self.in_upper:
            return True
        where = self.upper / parent if parent else self.upper
        if not where.is_dir():  # a lower dir: copy it up as writing a file there would
            os.fchmod(pfd, stat.S_IMODE(os.fstat(pfd).st_mode))
            if not where.is_dir():
                return False
        self.in_upper.add(parent)
        return True

    def note(self, sub: str, before: os.stat_result) -> None:
        """``sub`` was copied from a source whose fstat was ``before`` when the copy began to
        read it, and which has no xattrs to copy: record it unless it is racy. (A write
        during or after the read sets a ctime past ``started_ns``, beyond a non-racy
        ``before``'s, so the recorded signature never matches that file again.)"""
        if self.active and before.st_nlink == 1 and not _racy(before, self.started_ns):
            self.files[sub] = signature(before)

    def keep_dir_times(self, rootfs: Path, times: list[tuple[str, tuple[int, int]]]) -> None:
        """The (path below ``rootfs``, times) the copier gave directories, to set again."""
        prefix = f"{rootfs}/"
        for path, stamp in times:
            if path.startswith(prefix):
                self.dir_times[path[len(prefix) :]] = stamp
            elif path == str(rootfs):
                self.dir_times[""] = stamp

    def apply(self) -> int:
        """Make the pending links (the overlay must be unmounted); returns how many were
        linked. A file whose link fails is copied by the copy's fallback instead (recorded
        again only if its copy is)."""
        if not self.pending or self.previous is None or self.fallback is None:
            return 0
        prev = self.previous
        prev_base = f"{prev.upper}/{prev.top}/" if prev.top else f"{prev.upper}/"
        src_base = f"{self.root}/"
        by_parent: dict[str, list[_Item]] = {}
        for item in self.pending:
            by_parent.setdefault(self._rel(item[0]).rpartition("/")[0], []).append(item)
        for parent, items in by_parent.items():
            dfd = os.open(self.upper / parent if parent else self.upper, _DIR_FLAGS)
            try:
                for item in items:
                    sub = item[0]
                    name = sub.rpartition("/")[2]
                    if _link(prev_base + sub, dfd, name):
                        self.linked.append(item)
                        continue
                    self.files.pop(sub, None)
                    self.fallback(src_base + sub, dfd, name, sub)
                stamp = self.dir_times.get(parent)
                if stamp is not None:
                    os.utime(dfd, ns=stamp)
            finally:
                os.close(dfd)
        self.pending.clear()
        return len(self.linked)

    @contextlib.contextmanager
    def open_earlier(self, store: Store, epoch: int | None) -> Iterator[EarlierTar | None]:
        """The previous layer's tar entries of the linked files, for the new tar to copy
        (:class:`lamina.snapshot.writer.EarlierTar`): only when that tar is stored, was made
        with the same ``epoch`` and put the files at the same paths (same ``top``). The
        earlier tar is a stored blob, written verified; the new tar is hashed as written."""
        prev, self.previous = self.previous, None  # the record is not needed after this
        if (
            prev is None or prev.diff_id is None or not self.linked
            or prev.epoch != epoch or prev.top != self.top or not store.blobs.has(prev.diff_id)
        ):  # fmt: skip
            yield None
            return
        from lamina.snapshot.writer import EarlierTar

        try:
            blob = store.blobs.open(prev.diff_id)
        except (NotFound, StoreCorrupt, OSError):  # collected meanwhile: write every entry
            yield None
            return
        with blob:
            size = os.fstat(blob.fileno()).st_size
            entries: dict[str, tuple[int, int, int, int]] = {}
            for sub, dev, ino, span in self.linked:
                start, _, end = span.partition(":")
                if start.isdigit() and end.isdigit() and int(start) < int(end) <= size:
                    entries[self._rel(sub)] = (dev, ino, int(start), int(end))
            del prev
            self.linked.clear()
            yield EarlierTar(fd=blob.fileno(), entries=entries)

    def save(
        self, directory: Path, key: str, chain: Digest, *, diff_id: Digest | None = None,
        epoch: int | None = None, offsets: dict[str, tuple[int, int]] | None = None,
    ) -> None:  # fmt: skip
        """Record this copy as the previous layer of ``key`` (atomic, not fsynced); with the
        tar's ``diff_id``, ``epoch`` and the writer's ``offsets`` (path in layer -> span)."""
        if self.root is None or not self.active:
            return
        files: dict[str, str] = self.files
        if offsets and diff_id is not None:
            files = {}
            for sub, sig in self.files.items():
                span = offsets.get(self._rel(sub))
                files[sub] = f"{sig}@{span[0]}:{span[1]}" if span is not None else sig
        else:
            diff_id = None
        obj = {
            "version": RECORD_VERSION, "chain": str(chain), "root": self.root, "top": self.top,
            "files": files, "diff_id": str(diff_id) if diff_id else None, "epoch": epoch,
        }  # fmt: skip
        path = _record_path(directory, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(obj, separators=(",", ":")).encode(), durable=False)


def _racy(st: os.stat_result, started_ns: int) -> bool:
    """Whether ``st``'s file could be rewritten after ``started_ns`` keeping its signature."""
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    whole = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
    return newest >= started_ns - (RACY_WHOLE_SECOND_NS if whole else RACY_NS)


def _link(prev: str, dfd: int, name: str) -> bool:
    """Link ``prev`` as ``name`` in ``dfd`` (replacing a non-directory); False if impossible."""
    for _ in range(2):
        try:
            os.link(prev, name, dst_dir_fd=dfd, follow_symlinks=False)
            return True
        except FileExistsError:
            if stat.S_ISDIR(os.lstat(name, dir_fd=dfd).st_mode):
                raise BuildError(f"cannot replace directory {name!r} with a file") from None
            os.unlink(name, dir_fd=dfd)
        except OSError:  # EXDEV, EPERM, EMLINK, ENOENT (removed meanwhile), ...
            return False
    return False


def _has_xattrs(path: str) -> bool:
    try:
        return bool(os.listxattr(path, follow_symlinks=False))
    except OSError as exc:  # no xattr support means none; anything else: do not link
        return exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP)
