"""lamina.registry."""

from __future__ import annotations
