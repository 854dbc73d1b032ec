"""``SOURCE_DATE_EPOCH``: the build and export time clamp, read from the environment.

A module of its own so ``lamina build`` reads it without loading the archive commands (their
click options and decorators, ~1.5 ms of start-up); the environment is read in ``cli/`` only.
"""

from __future__ import annotations

import os

from lamina.errors import UsageError


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` from the environment (a non-negative integer), or None."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a non-negative integer")
    return int(value)
