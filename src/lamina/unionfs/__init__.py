"""lamina.unionfs."""

from __future__ import annotations
