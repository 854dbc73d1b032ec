"""Pure OCI model: digests, media types, descriptors, manifests, indexes, configs, platforms.

No I/O happens in this package; every type is frozen and every ``to_json`` deterministic.

The names below are imported from their modules on first use (PEP 562), so that importing
one module (``lamina.oci.digest``, as the store's image list does) does not build every
model class: CLI start-up (issue 2) pays only for what a command uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lamina.oci.config import History, ImageConfig
    from lamina.oci.descriptor import Descriptor
    from lamina.oci.digest import Digest
    from lamina.oci.manifest import Index, Manifest
    from lamina.oci.platform import Platform

#: exported name -> the module that defines it
_EXPORTS = {
    "History": "lamina.oci.config",
    "ImageConfig": "lamina.oci.config",
    "Descriptor": "lamina.oci.descriptor",
    "Digest": "lamina.oci.digest",
    "Index": "lamina.oci.manifest",
    "Manifest": "lamina.oci.manifest",
    "Platform": "lamina.oci.platform",
}


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (then the name is a plain attribute)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["Descriptor", "Digest", "History", "ImageConfig", "Index", "Manifest", "Platform"]
