"""Pure OCI model: digests, media types, descriptors, manifests, indexes, configs, platforms.

No I/O happens in this package; every type is frozen and every ``to_json`` deterministic.

The names below are imported from their modules on first use (PEP 562), so that importing
one module (``lamina.oci.digest``, as the store's image list does) does not build every
model class: CLI start-up (issue 2) pays only for what a command uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lamina._internal.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = ["Descriptor", "Digest", "History", "ImageConfig", "Index", "Manifest", "Platform"]
