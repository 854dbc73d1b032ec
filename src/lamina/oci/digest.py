"""Content digests (OCI image-spec "Digests").

Invariant: a :class:`Digest` is always well formed — ``algorithm`` is a registered algorithm
(``sha256`` or ``sha512``) and ``encoded`` is lowercase hex of exactly the algorithm's length.
Anything else is rejected by :meth:`Digest.parse` with :class:`~lamina.errors.ImageError`, so a
digest can be used safely as a path component (``blobs/<alg>/<hex>``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ImageError

if TYPE_CHECKING:  # hashlib (OpenSSL) is loaded only by code that hashes
    import hashlib

_HEX_LEN = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@lazy_dataclass(frozen=True, order=True)
class Digest:
    """An ``algorithm:encoded`` content digest; ``str()`` gives the canonical form."""

    algorithm: str
    encoded: str

    def __post_init__(self) -> None:
        want = _HEX_LEN.get(self.algorithm)
        if want is None:
            raise ImageError(f"unsupported digest algorithm {self.algorithm!r}")
        if len(self.encoded) != want or not _HEX.fullmatch(self.encoded):
            raise ImageError(f"invalid {self.algorithm} digest {self.encoded[:80]!r}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 hex>`` (or sha512); raise ImageError on anything else."""
        if not isinstance(text, str):
            raise ImageError(f"invalid digest {text!r}: not a string")
        alg, sep, enc = text.partition(":")
        if not sep:
            raise ImageError(f"invalid digest {text[:80]!r}: missing algorithm")
        return cls(alg, enc)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        import hashlib

        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def from_hasher(cls, hasher: hashlib._Hash) -> Digest:
        """The digest of whatever ``hasher`` (sha256/sha512) has consumed."""
        return cls(hasher.name, hasher.hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A new hash object of this digest's algorithm."""
        import hashlib

        return hashlib.new(self.algorithm)

    @property
    def hex(self) -> str:
        """The encoded part (alias used for paths and ids)."""
        return self.encoded

    def short(self, n: int = 12) -> str:
        """The first ``n`` hex characters, as `docker images` shows ids."""
        return self.encoded[:n]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"
