"""Go ``time.Duration`` text: parse (``1m30s``, ``100ms``) and format (``1h0m0s``).

Durations are integers of nanoseconds. Invariant: ``format_duration(parse_duration(s))`` is
Go's canonical spelling of ``s``.
"""

from __future__ import annotations

from lamina._internal.regex import LazyPattern

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART_RE = LazyPattern(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")
_MAX = (1 << 63) - 1


class DurationError(ValueError):
    """Text that Go's ``time.ParseDuration`` rejects."""


def parse_duration(text: str) -> int:
    """Nanoseconds in ``text`` (``[-+]?(number unit)+`` or ``0``); raises DurationError."""
    err = DurationError(f'time: invalid duration "{text}"')
    s = text
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise err
    total = 0
    pos = 0
    while pos < len(s):
        m = _PART_RE.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise err
        unit = _UNITS.get(m.group(2))
        if unit is None:
            raise DurationError(f'time: unknown unit "{m.group(2)}" in duration "{text}"')
        whole, _, frac = m.group(1).partition(".")
        total += int(whole or "0") * unit
        if frac:
            total += int(frac) * unit // (10 ** len(frac))
        if total > _MAX:
            raise err
        pos = m.end()
    return sign * total


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = []
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        v //= 10
    text = "." + "".join(reversed(digits)) if printed else ""
    return text, v


def format_duration(ns: int) -> str:
    """Go's ``Duration.String()``: ``1h0m0s``, ``1.5s``, ``100ms``, ``0s``."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        if u < 1_000:
            out = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            out = f"{whole}{frac}µs"
        else:
            frac, whole = _fmt_frac(u, 6)
            out = f"{whole}{frac}ms"
    else:
        frac, secs = _fmt_frac(u, 9)
        out = f"{secs % 60}{frac}s"
        mins = secs // 60
        if mins > 0:
            out = f"{mins % 60}m{out}"
            hours = mins // 60
            if hours > 0:
                out = f"{hours}h{out}"
    return "-" + out if neg else out
