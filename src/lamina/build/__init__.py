"""lamina.build."""

from __future__ import annotations
