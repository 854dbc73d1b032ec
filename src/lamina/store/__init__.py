"""The local store: images, layers (Docker's overlay2 layout), blobs and locking.

:class:`Store` is the one object the upper layers hold; see :mod:`lamina.store.layout` for the
on-disk layout and :mod:`lamina.store.store` for locking and crash safety.
"""

from __future__ import annotations

from lamina.store.image import StoreImage, StoreLayer
from lamina.store.images import ImageRecord
from lamina.store.layerdb import BlobRef, LayerRecord
from lamina.store.layers import LayerDirs
from lamina.store.layout import chain_id, chain_ids, default_root
from lamina.store.store import Store

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
