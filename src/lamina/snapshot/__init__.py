"""lamina.snapshot."""

from __future__ import annotations
