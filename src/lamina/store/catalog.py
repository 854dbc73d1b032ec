"""A read-only view of a store's image list, for ``lamina images`` (CLI start-up, issue 2).

:class:`Catalog` answers the two questions the image list asks — which images are there
(``images.json``) and how big is each layer (the layerdb ``size`` files) — without opening a
:class:`~lamina.store.store.Store`: no driver probe, blob store, union-fs backend or container
store is imported or created, which is most of ``lamina images``' start-up time.

Invariants: it never writes (a missing store reads as empty and is not created); it reads the
same files with the same readers as ``Store`` does, and takes no lock — ``images.json`` and
layerdb entries are replaced atomically, so a reader sees a whole old or a whole new version.
"""

from __future__ import annotations

from pathlib import Path

from lamina.errors import NotFound
from lamina.oci.digest import Digest
from lamina.store.images import ImageDB, ImageRecord
from lamina.store.layerdb import LayerDB, LayerRecord
from lamina.store.layout import Layout


class Catalog:
    """The images and layer records of the store at ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        layout = Layout(root)
        self._images = ImageDB(layout.images_json)
        self._layers = LayerDB(layout.layerdb)

    def list_images(self) -> list[ImageRecord]:
        """Every image with its names, most recently loaded first (as ``Store.list_images``)."""
        return list(self._images.load().iter_records())

    def get_layer(self, chain: Digest) -> LayerRecord:
        """The record of layer ``chain`` (``refcount`` left 0); NotFound if it is absent."""
        record = self._layers.get(chain)
        if record is None:
            raise NotFound(f"layer {chain} not found in the store")
        return record
