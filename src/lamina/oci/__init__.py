"""lamina.oci."""

from __future__ import annotations
