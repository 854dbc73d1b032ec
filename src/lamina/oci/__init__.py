"""Pure OCI model: digests, media types, descriptors, manifests, indexes, configs, platforms.

No I/O happens in this package; every type is frozen and every ``to_json`` deterministic.
"""

from __future__ import annotations

from lamina.oci.config import History, ImageConfig
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Index, Manifest
from lamina.oci.platform import Platform

__all__ = ["Descriptor", "Digest", "History", "ImageConfig", "Index", "Manifest", "Platform"]
