"""lamina.dockerfile."""

from __future__ import annotations
