"""Docker's size syntax (go-units' ``RAMInBytes``): ``64m``, ``2g``, ``1.5GiB``, ``1 kb``,
``1048576``. Units are binary (``k`` = 1024) whatever their spelling; ``b``/``ib`` suffixes are
optional. One parser for ``RUN --mount=type=tmpfs,size=`` and ``run --shm-size``.
"""

from __future__ import annotations

from lamina._internal.regex import LazyPattern

# go-units' sizeRegex, as BuildKit and the docker CLI use it
_SIZE_RE = LazyPattern(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def ram_in_bytes(text: str) -> int | None:
    """Bytes for ``text``, or None when it is not a size (the caller words the error)."""
    m = _SIZE_RE.match(text)
    if m is None:
        return None
    try:
        number = float(m.group(1))  # the regex admits "1.2.3"; ParseFloat refuses it too
    except ValueError:
        return None
    mult = 1024 ** ("kmgtp".index(m.group(2).lower()) + 1) if m.group(2) else 1
    return int(number * mult)
