"""lamina._internal."""

from __future__ import annotations
