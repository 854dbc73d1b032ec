"""Containers on disk: records in ``<root>/containers/<id>/`` and layer dirs in ``overlay2/``.

Layout (Docker's, see ARCHITECTURE §3 and the overlay2 captures)::

    <root>/containers/<id>/config.v2.json   the container's fixed config (Name changes on rename)
    <root>/containers/<id>/state.json       its mutable State (Status, Pid, ExitCode, ...)
    <root>/containers/<id>/<id>-json.log    stdout/stderr as JSON lines {"log","stream","time"}
    <root>/containers/<id>/lock             flock: every state transition takes it
    <root>/containers/names/<name>          the id that owns ``name`` (created with O_EXCL)
    <root>/overlay2/<id>-init/{diff,link,lower,work}         the init layer
    <root>/overlay2/<id>/{diff,link,lower,work,merged}       the container's own layer

Invariants:
- a container directory is complete or absent: it is built as ``containers/.tmp-<id>`` and
  renamed into place last; its layer dirs are made before that rename and removed by
  :meth:`ContainerStore.remove` (idempotent, unmounts first, removes ``l/`` links too);
- a name is owned by exactly one container: :meth:`reserve_name` creates the name file with
  ``O_EXCL``, so two processes racing for one name cannot both win; a name file whose
  container does not exist is stale and may be taken over;
- JSON records are replaced atomically (temp file + rename); readers never see half a file.

The container's ``lower`` file lists the init layer's link first, then the image layers top
down, as Docker writes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lamina._internal.fileio import write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ContainerError, LockTimeout, NotFound
from lamina.oci.digest import Digest
from lamina.store.layers import LayerStore, copy_tree, remove_tree
from lamina.store.layout import TMP_PREFIX, Layout, new_short_id

CONFIG = "config.v2.json"
STATE = "state.json"
NAMES = "names"

#: the placeholders of Docker's init layer: (path, kind) with kind "dir", "file" or a link target
INIT_ENTRIES: tuple[tuple[str, str], ...] = (
    (".dockerenv", "file"),
    ("dev", "dir"),
    ("dev/console", "file"),
    ("dev/pts", "dir"),
    ("dev/shm", "dir"),
    ("etc", "dir"),
    ("etc/hostname", "file"),
    ("etc/hosts", "file"),
    ("etc/mtab", "/proc/mounts"),
    ("etc/resolv.conf", "file"),
    ("proc", "dir"),
    ("sys", "dir"),
)


@lazy_dataclass(frozen=True, kw_only=True)
class ContainerDirs:
    """The overlay dirs of a container: ``lower`` = init diff then image diffs, top first."""

    init: Path
    lower: list[Path]
    lower_links: list[Path]
    upper: Path
    work: Path
    merged: Path

    def graph_driver(self) -> dict[str, object]:
        """Docker's ``GraphDriver`` object (keys sorted as ``docker inspect`` prints)."""
        return {
            "Data": {
                "LowerDir": ":".join(map(str, self.lower)),
                "MergedDir": str(self.merged),
                "UpperDir": str(self.upper),
                "WorkDir": str(self.work),
            },
            "Name": "overlay2",
        }


def new_container_id() -> str:
    """A random 64-hex container id.

    ``os.urandom`` is the source ``secrets.token_hex`` reads; calling it directly spares
    ``run`` importing ``secrets``, which loads ``hmac`` and with it OpenSSL (~5 ms)."""
    return os.urandom(32).hex()


class ContainerStore:
    """The containers of one store (records, names and layer dirs)."""

    def __init__(self, layout: Layout, layers: LayerStore) -> None:
        self.layout = layout
        self.layers = layers
        self.root = layout.root / "containers"

    # ------------------------------------------------------------------ paths
    def dir(self, cid: str) -> Path:
        """``containers/<id>``."""
        return self.root / cid

    def log_path(self, cid: str) -> Path:
        """``containers/<id>/<id>-json.log``."""
        return self.dir(cid) / f"{cid}-json.log"

    def dirs(self, cid: str) -> ContainerDirs:
        """The overlay dirs of ``cid`` (from its ``lower`` file, as written at create)."""
        top = self.layout.layer_dir(cid)
        init = self.layout.layer_dir(f"{cid}-init")
        try:
            lower_file = (top / "lower").read_text().strip()
        except OSError as exc:
            raise ContainerError(f"container {cid[:12]}: layer dir is missing: {exc}") from None
        links = [self.layout.overlay2 / item for item in lower_file.split(":") if item]
        diffs = [self.layout.links / os.readlink(p) for p in links]
        lower = [Path(os.path.normpath(d)) for d in diffs]
        return ContainerDirs(
            init=init / "diff",
            lower=lower,
            lower_links=links,
            upper=top / "diff",
            work=top / "work",
            merged=top / "merged",
        )

    @contextlib.contextmanager
    def locked(self, cid: str, timeout: float = 120.0) -> Iterator[None]:
        """Hold the per-container flock (state transitions, mounts, removal).

        Never creates the container dir (unlike a plain flock helper): NotFound when the
        container is gone, also when it was removed while this process waited for the lock.
        """
        try:
            fd = os.open(self.dir(cid) / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such container: {cid}") from None
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"container {cid[:12]}: timed out waiting for its lock",
                            hint="another lamina process is acting on it; retry",
                        ) from None
                    time.sleep(0.01)
            if not (self.dir(cid) / CONFIG).exists():
                raise NotFound(f"no such container: {cid}")
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ records
    def ids(self) -> list[str]:
        """Every complete container id (sorted)."""
        with contextlib.suppress(FileNotFoundError):
            return sorted(
                e
                for e in os.listdir(self.root)
                if len(e) == 64 and (self.root / e / CONFIG).exists()
            )
        return []

    def read(self, cid: str, name: str = CONFIG) -> dict[str, Any]:
        """A record (``config.v2.json`` or ``state.json``); NotFound when the container is gone."""
        try:
            data: dict[str, Any] = json.loads((self.dir(cid) / name).read_bytes())
        except FileNotFoundError:
            raise NotFound(f"no such container: {cid}") from None
        except ValueError as exc:
            raise ContainerError(f"container {cid[:12]}: {name} is corrupt: {exc}") from None
        return data

    def write(self, cid: str, doc: dict[str, Any], name: str = CONFIG) -> None:
        """Replace a record atomically."""
        write_atomic(self.dir(cid) / name, _dumps(doc), durable=False)

    def resolve(self, ref: str) -> str:
        """The id ``ref`` means: a full id, a name (with or without ``/``), or a unique prefix."""
        if not ref:
            raise NotFound("no such container: ''")
        name = ref.removeprefix("/")
        owner = self.name_owner(name)
        if owner is not None:
            return owner
        if len(ref) == 64 and (self.dir(ref) / CONFIG).exists():
            return ref
        if all(c in "0123456789abcdef" for c in ref):
            hits = [i for i in self.ids() if i.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise NotFound(f"multiple containers match {ref!r}; give more of the id")
        raise NotFound(f"no such container: {ref}")

    # ------------------------------------------------------------------ names
    def name_owner(self, name: str) -> str | None:
        """The id owning ``name``, or None (stale name files are ignored)."""
        if not name or "/" in name or name.startswith("."):
            return None
        try:
            owner = (self.root / NAMES / name).read_text().strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return owner if (self.dir(owner) / CONFIG).exists() or self._building(owner) else None

    def _building(self, cid: str) -> bool:
        return (self.root / f"{TMP_PREFIX}{cid}").exists()

    def reserve_name(self, name: str, cid: str) -> None:
        """Make ``cid`` the owner of ``name``; ContainerError (125) if another owns it."""
        names = self.root / NAMES
        names.mkdir(parents=True, exist_ok=True)
        path = names / name
        # The name file appears with its content (link(2) of a written temp file fails with
        # EEXIST like O_EXCL): a racer never reads it empty and takes it for stale.
        tmp = names / f"{TMP_PREFIX}{cid}"
        tmp.write_text(cid)
        try:
            self._claim_name(name, cid, tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _claim_name(self, name: str, cid: str, tmp: Path, path: Path) -> None:
        for _ in range(3):
            try:
                os.link(tmp, path)
            except FileExistsError:
                owner = self.name_owner(name)
                if owner is not None and owner != cid:
                    raise ContainerError(
                        f'the container name "/{name}" is already in use by container "{owner}"',
                        hint="remove (or rename) that container to reuse the name",
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # stale: its container is gone
                continue
            return
        raise ContainerError(f"reserving container name {name}: it keeps changing")

    def release_name(self, name: str, cid: str) -> None:
        """Remove ``name`` if ``cid`` owns it (idempotent)."""
        path = self.root / NAMES / name
        with contextlib.suppress(OSError):
            if path.read_text().strip() == cid:
                path.unlink()

    # ------------------------------------------------------------------ create / remove
    def create(self, cid: str, chain: Digest | None, config: dict[str, Any],
               state: dict[str, Any]) -> ContainerDirs:  # fmt: skip
        """Make the init layer, the container layer and the record dir (renamed in last).

        The name in ``config["Name"]`` is reserved once ``containers/.tmp-<id>`` exists, so
        a racer for the same name sees the reservation as live (never as stale), and released
        again when the creation fails (ContainerError when another container has the name).
        """
        tmp = self.root / f"{TMP_PREFIX}{cid}"
        tmp.mkdir(parents=True, mode=0o710)
        name = str(config.get("Name") or "").removeprefix("/")
        try:
            if name:
                self.reserve_name(name, cid)
            self._make_layers(cid, chain)
            write_atomic(tmp / CONFIG, _dumps(config), durable=False)
            write_atomic(tmp / STATE, _dumps(state), durable=False)
            os.rename(tmp, self.dir(cid))
        except BaseException:
            self.remove_layers(cid)
            if name:
                self.release_name(name, cid)
            remove_tree(tmp)
            raise
        return self.dirs(cid)

    def _make_layers(self, cid: str, chain: Digest | None) -> None:
        image_links: list[str] = []
        image_top: Path | None = None
        if chain is not None:
            records = self.layers.chain(chain)
            image_links = [f"l/{self.layers.short_id(r)}" for r in records]
            image_top = self.layers.diff_dir(records[0])
        init_short = self._make_layer(f"{cid}-init", image_links, copy_from=image_top)
        init_dir = self.layout.layer_dir(f"{cid}-init")
        fresh = image_top is None or not self.layers.backend.copies
        _write_init_files(init_dir / "diff", fresh=fresh)
        copies = self.layers.backend.copies
        self._make_layer(
            cid, [f"l/{init_short}", *image_links], copy_from=init_dir / "diff" if copies else None
        )
        (self.layout.layer_dir(cid) / "merged").mkdir(mode=0o700, exist_ok=True)

    def _make_layer(self, name: str, lower: list[str], *, copy_from: Path | None) -> str:
        path = self.layout.layer_dir(name)
        path.mkdir(mode=0o710)
        if copy_from is not None and self.layers.backend.copies:
            copy_tree(copy_from, path / "diff")
        else:
            (path / "diff").mkdir(mode=0o755)
        (path / "work").mkdir(mode=0o700)
        short = new_short_id()
        (path / "link").write_text(short)
        if lower:
            (path / "lower").write_text(":".join(lower))
        os.symlink(f"../{name}/diff", self.layout.link_path(short))
        return short

    def remove_layers(self, cid: str) -> None:
        """Unmount and remove ``<id>`` and ``<id>-init`` with their ``l/`` links (idempotent)."""
        for name in (cid, f"{cid}-init"):
            path = self.layout.layer_dir(name)
            if name == cid:
                self.layers.backend.unmount(path / "merged")
            with contextlib.suppress(OSError):
                short = (path / "link").read_text().strip()
                if short and "/" not in short:
                    os.unlink(self.layout.link_path(short))
            remove_tree(path)

    def remove(self, cid: str) -> None:
        """Remove a container's layers, record dir and name (idempotent; caller holds no lock
        of it, or holds it: the lock file goes with the dir)."""
        with contextlib.suppress(NotFound, ContainerError):
            name = str(self.read(cid).get("Name", "")).removeprefix("/")
            self.release_name(name, cid)
        self.remove_layers(cid)
        doomed = self.root / f"{TMP_PREFIX}del-{cid}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.dir(cid), doomed)
        remove_tree(doomed)

    def held(self) -> tuple[set[Digest], set[str]]:
        """(chain ids, overlay2 dir names) every container keeps; for gc and check."""
        chains: set[Digest] = set()
        names: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self.root):
                cid = entry.removeprefix(TMP_PREFIX)
                if len(cid) != 64:
                    continue
                names.update((cid, f"{cid}-init"))
                with contextlib.suppress(NotFound, ContainerError):
                    for chain in self.read(cid).get("LayerChain", []):
                        chains.add(Digest.parse(chain))
        return chains, names


def _dumps(doc: dict[str, Any]) -> bytes:
    """A record as compact JSON, as Docker writes it (the C encoder: an indented dump goes
    through json's pure-Python encoder, ~8x slower, and records are written at every start)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _write_init_files(diff: Path, *, fresh: bool) -> None:
    """Docker's init-layer placeholders (mount points for the files bound at start).

    ``fresh``: ``diff`` was just made empty (overlay), so nothing there needs replacing and
    the placeholders are created straight away; otherwise (vfs: a copy of the image's tree)
    what is in the way is replaced.
    """
    if fresh:
        for rel, kind in INIT_ENTRIES:
            _create_entry(diff / rel, kind)
        return
    for rel, kind in INIT_ENTRIES:
        path = diff / rel
        if kind == "dir":
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                path.unlink()
            path.mkdir(mode=0o755, exist_ok=True)
        elif kind == "file":
            if path.is_symlink() or path.is_dir():
                remove_tree(path) if path.is_dir() else path.unlink()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o755)
            os.fchmod(fd, 0o755)
            os.close(fd)
        else:
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir() and not path.is_symlink():
                    remove_tree(path)
                else:
                    path.unlink()
            os.symlink(kind, path)


def _create_entry(path: Path, kind: str) -> None:
    """One placeholder in a fresh init dir (parents come first in INIT_ENTRIES)."""
    if kind == "dir":
        os.mkdir(path, 0o755)
    elif kind == "file":
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o755)
        os.fchmod(fd, 0o755)
        os.close(fd)
    else:
        os.symlink(kind, path)
