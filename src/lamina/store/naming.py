"""Names and ids of stored images: normalising, resolving, planning ``rmi``.

Names are stored fully normalised by :mod:`lamina.reference` (``docker.io/library/busybox:
latest``) so ``busybox`` and ``docker.io/library/busybox:latest`` are one name. Resolution
order (as Docker's daemon): an exact name, then a full digest (image id or manifest digest),
then a ``name@digest`` pin, then a unique hex prefix of an image id or manifest digest.
"""

from __future__ import annotations

import contextlib

from lamina import reference
from lamina.errors import ImageError, InvalidReference, NotFound, StorageError
from lamina.oci.digest import Digest
from lamina.store.images import ImageRecord, ImageTable

MIN_PREFIX = 4


def normalise(name: str) -> str:
    """The canonical stored form of an image name (raises InvalidReference)."""
    return str(reference.parse(name))


def familiar(name: str) -> str:
    """The short form users see (``busybox:latest``); the name itself if it does not parse."""
    try:
        return reference.parse(name).familiar()
    except InvalidReference:
        return name


def _by_name(table: ImageTable, ref: str) -> Digest | None:
    try:
        parsed = reference.parse(ref)
    except InvalidReference:
        return None
    if parsed.digest is not None:
        return parsed.digest if parsed.digest in table.images else None
    return table.names.get(str(parsed))


def _by_digest(table: ImageTable, text: str) -> Digest | None:
    try:
        digest = Digest.parse(text)
    except ImageError:
        return None
    if digest in table.images:
        return digest
    hits = sorted(d for d, r in table.images.items() if r.id == digest)
    return hits[0] if hits else None


def _by_prefix(table: ImageTable, ref: str) -> Digest | None:
    prefix = ref.removeprefix("sha256:").lower()
    if len(prefix) < MIN_PREFIX or not all(c in "0123456789abcdef" for c in prefix):
        return None
    by_id = {d for d, r in table.images.items() if r.id.encoded.startswith(prefix)}
    if not by_id:
        by_id = {d for d in table.images if d.encoded.startswith(prefix)}
    ids = {table.images[d].id for d in by_id}
    if len(ids) > 1:
        raise NotFound(
            f"image id prefix {prefix!r} is ambiguous ({len(ids)} images)",
            hint="give more characters of the id",
        )
    return min(by_id) if by_id else None


def resolve(table: ImageTable, ref: str) -> Digest:
    """The manifest digest ``ref`` means; NotFound if none (or ambiguous)."""
    found = _by_name(table, ref)
    if found is None:
        found = _by_digest(table, ref)
    if found is None:
        found = _by_prefix(table, ref)
    if found is None:
        raise NotFound(f"no such image: {ref}")
    return found


def plan_removal(
    table: ImageTable, ref: str, *, force: bool
) -> tuple[list[tuple[str, str]], ImageRecord | None]:
    """Untag per ``docker rmi`` rules, mutating ``table.names``.

    Returns the events so far and the record to delete (None when only a name was removed).
    """
    digest = resolve(table, ref)
    record = table.record(digest)
    name: str | None = None
    with contextlib.suppress(InvalidReference):
        parsed = str(reference.parse(ref))
        if table.names.get(parsed) == digest:
            name = parsed
    if name is not None:
        del table.names[name]
        events = [("Untagged", familiar(name))]
        return events, (record if len(record.names) == 1 else None)
    if len(record.names) > 1 and not force:
        raise StorageError(
            f"conflict: unable to delete {record.id.short()} (must be forced) - image is "
            "referenced in multiple repositories",
            hint="remove it by name, or use --force",
        )
    for n in record.names:
        del table.names[n]
    return [("Untagged", familiar(n)) for n in record.names], record
