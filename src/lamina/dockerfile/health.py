"""HEALTHCHECK arguments and flags -> :class:`~lamina.dockerfile.instructions.HealthConfig`, with
BuildKit's checks and wording (``instructions/parse.go``, ``parseHealthcheck``).

Invariants: pure; every failure is a :class:`HealthError` (a ``ValueError``) with BuildKit's
exact text, which the caller locates at the instruction; the kind (``NONE``/``CMD``) is checked
before the flags, as BuildKit does. Durations are nanoseconds: 0 means "not set", anything else
is at least :data:`MIN_DURATION_NS`; ``--retries`` is a non-negative Go ``int32``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lamina.dockerfile.duration import DurationError, parse_duration
from lamina.dockerfile.flags import FlagError, FlagKind, ParsedFlags, parse_flags
from lamina.dockerfile.instructions import HealthConfig

MIN_DURATION_NS = 1_000_000
_FLAGS: dict[str, FlagKind] = {
    "interval": "string", "timeout": "string", "start-period": "string",
    "start-interval": "string", "retries": "string",
}  # fmt: skip


class HealthError(ValueError):
    """A HEALTHCHECK error (BuildKit's text); the caller adds the location."""


def parse_health(args: Sequence[str], flags: Sequence[str], *, json: bool) -> HealthConfig:
    """The health config of ``HEALTHCHECK`` with (non-empty) ``args`` and raw ``flags``;
    ``json`` for the exec form. Raises :class:`HealthError`."""
    kind = args[0].upper()
    rest = args[1:]
    if kind == "NONE":
        if rest:
            raise HealthError("HEALTHCHECK NONE takes no arguments")
        return HealthConfig(test=("NONE",))
    if kind != "CMD":
        raise HealthError(f"Unknown type {_q(kind)} in HEALTHCHECK (try CMD)")
    try:
        parsed = parse_flags(flags, _FLAGS)
    except FlagError as exc:
        raise HealthError(str(exc)) from exc
    if not rest:
        raise HealthError("Missing command after HEALTHCHECK CMD")
    cmd = list(rest) if json else [" ".join(rest)]
    return HealthConfig(
        test=("CMD" if json else "CMD-SHELL", *cmd),
        interval=_duration(parsed, "interval"),
        timeout=_duration(parsed, "timeout"),
        start_period=_duration(parsed, "start-period"),
        start_interval=_duration(parsed, "start-interval"),
        retries=_retries(parsed.string("retries")),
    )


def _duration(flags: ParsedFlags, name: str) -> int:
    text = flags.string(name)
    if not text:
        return 0
    try:
        value = parse_duration(text)
    except DurationError as exc:
        raise HealthError(str(exc)) from exc
    if value == 0:
        return 0
    if value < MIN_DURATION_NS:
        raise HealthError(f"Interval {_q(name)} cannot be less than 1ms")
    return value


def _retries(text: str | None) -> int:
    if not text:
        return 0
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise HealthError(f"strconv.ParseInt: parsing {_q(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 31) <= value < 1 << 31:
        raise HealthError(f"strconv.ParseInt: parsing {_q(text)}: value out of range")
    if value < 0:
        raise HealthError(f"--retries cannot be negative ({value})")
    return value


def _q(s: str) -> str:
    from lamina.dockerfile.dump import go_quote

    return go_quote(s)
