"""Readers that hash and count what passes through them and check it against expectations.

Invariant: a :class:`VerifyingReader` raises :class:`~lamina.errors.DigestMismatch` as soon as
more than the expected size has been read, and at end of stream if the size or digest differ;
callers therefore never commit unverified content as long as they read to EOF before commit.

Imports ``lamina.oci.digest``, a leaf module that the layering test ranks with ``_internal``.
"""

from __future__ import annotations

from typing import IO, Protocol

from lamina.errors import DigestMismatch
from lamina.oci.digest import Digest


class Readable(Protocol):
    """Anything with ``read(n)``."""

    def read(self, n: int = -1, /) -> bytes: ...


class VerifyingReader:
    """Wrap ``raw``; hash with ``expected``'s algorithm (sha256 if None) and count bytes."""

    def __init__(
        self,
        raw: Readable | IO[bytes],
        expected: Digest | None = None,
        size: int | None = None,
        *,
        what: str = "blob",
    ) -> None:
        import hashlib  # here, not at import: OpenSSL's set-up is paid only by code that hashes

        self._raw = raw
        self.expected = expected
        self.expected_size = size
        self._hasher = hashlib.new(expected.algorithm if expected else "sha256")
        self.count = 0
        self.what = what
        self._done = False

    def read(self, n: int = -1, /) -> bytes:
        """Read up to ``n`` bytes, verifying at EOF."""
        data = self._raw.read(n)
        if data:
            self.count += len(data)
            if self.expected_size is not None and self.count > self.expected_size:
                raise DigestMismatch(
                    f"{self.what}: more than the declared {self.expected_size} bytes"
                )
            self._hasher.update(data)
        elif n != 0:
            self._finish()
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        """``readinto`` in terms of ``read`` (lets io.BufferedReader wrap this)."""
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        """io protocol."""
        return True

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self.expected_size is not None and self.count != self.expected_size:
            raise DigestMismatch(
                f"{self.what}: size {self.count} does not match the declared {self.expected_size}"
            )
        if self.expected is not None and self.digest() != self.expected:
            raise DigestMismatch(
                f"{self.what}: content has digest {self.digest()}, expected {self.expected}"
            )

    def drain(self, chunk: int = 1 << 20) -> None:
        """Read (and discard) the rest of the stream, verifying it."""
        while self.read(chunk):
            pass

    def digest(self) -> Digest:
        """The digest of what has been read so far."""
        return Digest(self._hasher.name, self._hasher.hexdigest())

    @property
    def verified(self) -> bool:
        """True once EOF was reached and everything matched."""
        return self._done


def own_verifier(stream: object, digest: Digest, size: int | None) -> VerifyingReader | None:
    """``stream``'s own verifier (its ``verifier`` attribute, as image layer streams have) if
    it checks exactly ``digest`` (and ``size`` unless None) and nothing was read through it
    yet; else None.

    Reading through that verifier, or vouching with it (:class:`VouchedReader`), checks the
    bytes as fully as a new :class:`VerifyingReader` would, without hashing them twice.
    """
    inner = getattr(stream, "verifier", None)
    if not isinstance(inner, VerifyingReader) or inner.count or inner.expected != digest:
        return None
    if size is not None and inner.expected_size != size:
        return None
    return inner


class VouchedReader(VerifyingReader):
    """A reader over bytes that ``voucher`` reads in step (the same bytes, e.g. a plain layer
    tar teed from its verified blob stream): it counts but does not hash them again.

    At EOF it requires ``voucher`` to have verified (the voucher reaches its own EOF first,
    since this stream's bytes come through it), else DigestMismatch; :meth:`digest` is the
    voucher's. ``voucher.expected`` is this reader's expected digest.
    """

    def __init__(self, raw: Readable | IO[bytes], voucher: VerifyingReader, *, what: str) -> None:
        super().__init__(raw, voucher.expected, None, what=what)
        self._voucher = voucher

    def read(self, n: int = -1, /) -> bytes:
        """Read up to ``n`` bytes; at EOF check that the voucher verified them."""
        data = self._raw.read(n)
        if data:
            self.count += len(data)
        elif n != 0 and not self._done:
            self._done = True
            if not _matched(self._voucher) or self._voucher.count != self.count:
                raise DigestMismatch(f"{self.what}: content was not verified to the end")
        return data

    def digest(self) -> Digest:
        """The voucher's digest."""
        return self._voucher.digest()


def _matched(reader: VerifyingReader) -> bool:
    """True if ``reader`` reached EOF with the expected digest and size (checked again here,
    so an error it raised and someone swallowed cannot pass)."""
    return (
        reader.verified
        and reader.expected is not None
        and reader.digest() == reader.expected
        and reader.expected_size in (None, reader.count)
    )
