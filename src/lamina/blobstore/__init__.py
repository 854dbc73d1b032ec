"""Content-addressed blobs: ``blobs/<alg>/<hex>``, written through ``ingest/``, verified, gc.

See :mod:`lamina.blobstore.cas` for the contract (verified, atomic, idempotent, concurrent-safe).
"""

from __future__ import annotations

from lamina.blobstore.cas import BlobStore
from lamina.blobstore.ingest import STALE_AFTER, Ingest

__all__ = ["STALE_AFTER", "BlobStore", "Ingest"]
