"""OCI whiteout naming (image-spec "Representing Changes": ``.wh.`` files and opaque markers)."""

from __future__ import annotations

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
#: Names starting with ``.wh..wh.`` are reserved by the spec; only OPAQUE is defined.
META_PREFIX = ".wh..wh."


def is_whiteout(basename: str) -> bool:
    """True for ``.wh.<name>`` and the opaque marker."""
    return basename.startswith(PREFIX)


def is_opaque(basename: str) -> bool:
    """True for the opaque-directory marker."""
    return basename == OPAQUE


def whiteout_target(basename: str) -> str | None:
    """The name a ``.wh.<name>`` entry deletes, or None for opaque/meta or invalid names."""
    if not basename.startswith(PREFIX) or basename.startswith(META_PREFIX):
        return None
    name = basename[len(PREFIX) :]
    if name in ("", ".", "..") or "/" in name:
        return None
    return name


def whiteout_name(basename: str) -> str:
    """The ``.wh.`` marker name that deletes ``basename``."""
    return PREFIX + basename
