"""Instruction flags (BuildKit ``BFlags``) and "did you mean" suggestions.

A flag word is ``--name`` or ``--name=value``. Kinds: ``string`` (needs ``=``), ``bool``
(``--x``, ``--x=true|false`` case-insensitively) and ``strings`` (repeatable, accumulates).
Invariants: unknown names and repeated non-list flags are errors; :attr:`ParsedFlags.used`
lists every flag that appeared, in first-appearance order, even when set to its default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import Literal

from lamina._internal.lazydataclass import lazy_dataclass

FlagKind = Literal["string", "bool", "strings"]


class FlagError(ValueError):
    """A flag is unknown, repeated, or has a malformed value."""


def levenshtein(a: str, b: str) -> int:
    """Edit distance between two strings (insert, delete, substitute all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def suggest(value: str, options: Iterable[str], *, case_sensitive: bool = False) -> str | None:
    """The closest option to ``value`` within a small edit distance, or None."""
    if not value or len(value) > 64:
        return None
    needle = value if case_sensitive else value.lower()
    limit = 2 if len(needle) > 3 else 1
    best: tuple[int, str] | None = None
    for opt in options:
        cand = opt if case_sensitive else opt.lower()
        dist = levenshtein(needle, cand)
        if dist <= limit and (best is None or dist < best[0]):
            best = (dist, opt)
    return None if best is None else best[1]


def with_suggestion(message: str, value: str, options: Iterable[str], *, prefix: str = "") -> str:
    """``message`` plus `` (did you mean X?)`` when a close option exists."""
    match = suggest(value, options)
    return f"{message} (did you mean {prefix}{match}?)" if match else message


@lazy_dataclass(frozen=True, kw_only=True)
class ParsedFlags:
    """Flag values by name: str for string flags, bool for bool flags, tuple for lists."""

    values: Mapping[str, str | bool | tuple[str, ...]] = field(default_factory=dict)
    used: tuple[str, ...] = ()

    def string(self, name: str) -> str | None:
        """The value of a string flag, None when absent."""
        value = self.values.get(name)
        return value if isinstance(value, str) else None

    def boolean(self, name: str) -> bool | None:
        """The value of a bool flag, None when absent."""
        value = self.values.get(name)
        return value if isinstance(value, bool) else None

    def strings(self, name: str) -> tuple[str, ...]:
        """All values of a list flag, in order (empty when absent)."""
        value = self.values.get(name)
        return value if isinstance(value, tuple) else ()


_NO_FLAGS = ParsedFlags()


def parse_flags(args: Sequence[str], spec: Mapping[str, FlagKind]) -> ParsedFlags:
    """Validate flag words (without their leading ``--`` removed) against ``spec``."""
    if not args:
        return _NO_FLAGS
    values: dict[str, str | bool | tuple[str, ...]] = {}
    used: list[str] = []
    for arg in args:
        if not arg.startswith("--"):
            raise FlagError(f"arg should start with -- : {arg}")
        body = arg[2:]
        name, eq, value = body.partition("=")
        if not name and not eq:
            continue
        kind = spec.get(name)
        if kind is None:
            raise FlagError(with_suggestion(f"unknown flag: --{name}", name, spec, prefix="--"))
        if name in used and kind != "strings":
            raise FlagError(f"duplicate flag specified: --{name}")
        if name not in used:
            used.append(name)
        if kind == "bool":
            if eq and not value:
                raise FlagError(f"missing a value on flag: --{name}")
            lowered = value.lower()
            if lowered in ("", "true"):
                values[name] = True
            elif lowered == "false":
                values[name] = False
            else:
                raise FlagError(f"expecting boolean value for flag --{name}, not: {value}")
        elif not eq:
            raise FlagError(f"missing a value on flag: --{name}")
        elif kind == "string":
            values[name] = value
        else:
            previous = values.get(name, ())
            assert isinstance(previous, tuple)
            values[name] = (*previous, value)
    return ParsedFlags(values=values, used=tuple(used))
