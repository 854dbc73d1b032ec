"""The abstract image model: Layer, Image, Index protocols and their partial bases.

Every source (store, oci layout, archives, registry) *returns* these; every sink *accepts* them.
"""

from __future__ import annotations

from lamina.image.model import Image, ImageIndex, Layer
from lamina.image.partial import BlobImage, BlobLayer

__all__ = ["BlobImage", "BlobLayer", "Image", "ImageIndex", "Layer"]
