"""lamina.blobstore."""

from __future__ import annotations
