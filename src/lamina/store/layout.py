"""Paths, ids and permissions of the on-disk store (Docker's overlay2 layout, see ARCHITECTURE §3).

::

    <root>/                      0711
      lock                       store-wide flock: images.json + layerdb mutations (short)
      gc.lock                    loads hold it shared; gc/prune take it exclusively
      images.json                names -> manifest digests, image records
      driver                     the storage driver this store was created with
      blobs/sha256/<hex>         0700: compressed layers, manifests, configs
      ingest/                    0700: blobs being written
      layerdb/sha256/<chain>/    diff, parent (absent for a base layer), size, cache-id,
                                 blobs.json (compressed blobs known for the layer)
      overlay2/                  0710
        <id>/diff link lower work  a layer (<id> = random 64 hex, Docker's cache-id)
        l/<short> -> ../<id>/diff  26-char base32 short ids that keep mount options short
        .tmp-<id>/               a layer being built (never registered; gc removes)
      tmp/                       probes, per-chain apply locks, regenerated tars
      userns/                    rootless only: pause.json + lock (lamina.runtime.userns)

Chain ids follow the OCI image-spec: ChainID(L0) = DiffID(L0) and
ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.oci.digest import Digest

TMP_PREFIX = ".tmp-"
SHORT_ID_LEN = 26


def default_root(euid: int, env: Mapping[str, str]) -> Path:
    """``/var/lib/lamina`` for root, else ``$XDG_DATA_HOME/lamina`` or ``~/.local/share/lamina``."""
    if euid == 0:
        return Path("/var/lib/lamina")
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lamina"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "share" / "lamina"


def chain_id(parent: Digest | None, diff_id: Digest) -> Digest:
    """The OCI ChainID of a layer with ``diff_id`` on top of the chain ``parent``."""
    if parent is None:
        return diff_id
    return Digest.of_bytes(f"{parent} {diff_id}".encode())


def chain_ids(diff_ids: tuple[Digest, ...] | list[Digest]) -> list[Digest]:
    """The chain ids of every layer of an image, base first."""
    out: list[Digest] = []
    for d in diff_ids:
        out.append(chain_id(out[-1] if out else None, d))
    return out


def new_layer_id() -> str:
    """A random 64-hex layer directory id (like Docker's cache-ids)."""
    return os.urandom(32).hex()  # what secrets.token_hex reads, without loading hmac/OpenSSL


def new_short_id() -> str:
    """A random 26-char base32 id for ``overlay2/l/`` (16 random bytes, no padding)."""
    import base64

    return base64.b32encode(os.urandom(16)).decode().rstrip("=")


def is_layer_id(name: str) -> bool:
    """True for a 64-hex layer id (optionally with Docker's ``-init`` suffix)."""
    base = name.removesuffix("-init")
    return len(base) == 64 and all(c in "0123456789abcdef" for c in base)


def lock_name(key: str) -> str:
    """A file name for a lock keyed by ``key`` (hashed: keys may hold any characters)."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock"


@lazy_dataclass(frozen=True)
class Layout:
    """Every path of a store rooted at ``root``."""

    root: Path

    @property
    def lock(self) -> Path:
        """The store-wide flock (images.json and layerdb mutations)."""
        return self.root / "lock"

    @property
    def gc_lock(self) -> Path:
        """Held shared by loads, exclusively by gc/prune/check."""
        return self.root / "gc.lock"

    @property
    def images_json(self) -> Path:
        """Names and image records."""
        return self.root / "images.json"

    @property
    def driver_file(self) -> Path:
        """The driver the store was created with."""
        return self.root / "driver"

    @property
    def overlay2(self) -> Path:
        """Layer directories (Docker's overlay2 layout)."""
        return self.root / "overlay2"

    @property
    def links(self) -> Path:
        """``overlay2/l``: short-id symlinks to layer diff dirs."""
        return self.overlay2 / "l"

    @property
    def layerdb(self) -> Path:
        """``layerdb/sha256``: one directory per chain id."""
        return self.root / "layerdb" / "sha256"

    @property
    def tmp(self) -> Path:
        """Probes, apply locks, regenerated tars (gc empties it)."""
        return self.root / "tmp"

    @property
    def apply_locks(self) -> Path:
        """Per-chain flocks that serialise applying the same layer."""
        return self.tmp / "locks"

    def layer_dir(self, layer_id: str) -> Path:
        """``overlay2/<id>``."""
        return self.overlay2 / layer_id

    def link_path(self, short: str) -> Path:
        """``overlay2/l/<short>``."""
        return self.links / short

    def ensure(self) -> None:
        """Create the skeleton with Docker's permissions (idempotent)."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        for d, mode in (
            (self.overlay2, 0o710),
            (self.links, 0o700),
            (self.layerdb, 0o700),
            (self.tmp, 0o700),
        ):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
        os.chmod(self.layerdb.parent, 0o700)
