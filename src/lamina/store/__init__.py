"""The local store: images, layers (Docker's overlay2 layout), blobs and locking.

:class:`Store` is the one object the upper layers hold; see :mod:`lamina.store.layout` for the
on-disk layout and :mod:`lamina.store.store` for locking and crash safety.

The names below are imported from their modules on first use (PEP 562): ``lamina images``
reads the image list through :mod:`lamina.store.catalog` without loading the blob store,
the union-fs backend or the runtime (CLI start-up, issue 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lamina._internal.lazy import lazy_exports

if TYPE_CHECKING:
    from lamina.store.image import StoreImage, StoreLayer
    from lamina.store.images import ImageRecord
    from lamina.store.layerdb import BlobRef, LayerRecord
    from lamina.store.layers import LayerDirs
    from lamina.store.layout import chain_id, chain_ids, default_root
    from lamina.store.store import Store

#: exported name -> the module that defines it
_EXPORTS = {
    "StoreImage": "lamina.store.image",
    "StoreLayer": "lamina.store.image",
    "ImageRecord": "lamina.store.images",
    "BlobRef": "lamina.store.layerdb",
    "LayerRecord": "lamina.store.layerdb",
    "LayerDirs": "lamina.store.layers",
    "chain_id": "lamina.store.layout",
    "chain_ids": "lamina.store.layout",
    "default_root": "lamina.store.layout",
    "Store": "lamina.store.store",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "BlobRef",
    "ImageRecord",
    "LayerDirs",
    "LayerRecord",
    "Store",
    "StoreImage",
    "StoreLayer",
    "chain_id",
    "chain_ids",
    "default_root",
]
