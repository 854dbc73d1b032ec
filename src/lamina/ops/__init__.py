"""User verbs as plain functions over a :class:`lamina.store.Store`: what the CLI (and later
the Engine API server) calls. No printing here: results are returned as values."""

from __future__ import annotations
