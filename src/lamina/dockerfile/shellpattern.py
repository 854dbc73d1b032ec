"""Wildcard patterns of ``${x#p}``, ``${x%p}`` and ``${x/p/r}`` (BuildKit semantics).

BuildKit turns such a pattern into a Go regular expression: ``*`` becomes ``.*`` (``.*?`` for
the shortest-match forms), ``?`` becomes ``.``, every other character is literal, and there are
no ``[...]`` classes. A ``\\`` may escape only ``*``, ``?`` or ``\\``; before ``}`` or ``/`` it is
dropped (those characters had to be escaped inside ``${...}``); anything else is an error. As in
Go, ``.`` does not match a newline, so neither ``*`` nor ``?`` does.

This module matches those patterns WITHOUT a backtracking regex over the whole pattern, which
could take exponential time (``*a*a*a*a*b``). A pattern is split at its stars into fixed-length
segments; each segment is found with a quantifier-free regex (linear per start position), and
the stars between segments are resolved greedily by earliest occurrence, which is provably
enough for the shortest/longest and leftmost-longest answers BuildKit's regexes give. The cost is
O(len(text) * len(pattern)) in the worst case; callers cap both lengths.
"""

from __future__ import annotations

import re

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.regex import LazyPattern

__all__ = ["ShellPattern", "ShellPatternError", "expand_go_template", "reverse_raw_pattern"]


class ShellPatternError(ValueError):
    """A pattern that BuildKit's pattern converter rejects (an invalid ``\\`` escape)."""


@lazy_dataclass(frozen=True)
class _Segment:
    """A run of pattern items between stars: literal characters and ``?`` (``None``)."""

    items: tuple[str | None, ...]
    regex: re.Pattern[str]
    last_regex: re.Pattern[str]

    @classmethod
    def of(cls, items: list[str | None]) -> _Segment:
        body = "".join("[^\n]" if it is None else re.escape(it) for it in items)
        return cls(tuple(items), re.compile(body), re.compile(f"(?s:.*)(?:{body})"))

    def __len__(self) -> int:
        return len(self.items)

    def match_at(self, text: str, pos: int) -> bool:
        return not self.items or self.regex.match(text, pos) is not None

    def first(self, text: str, lo: int, hi: int) -> int | None:
        """Smallest start q in [lo, hi] where the segment matches, if any."""
        if not self.items:
            return lo
        m = self.regex.search(text, lo, min(len(text), hi + len(self.items)))
        return None if m is None else m.start()

    def last(self, text: str, lo: int, hi: int) -> int | None:
        """Largest start q in [lo, hi] where the segment matches, if any."""
        if not self.items:
            return hi
        m = self.last_regex.match(text, lo, min(len(text), hi + len(self.items)))
        return None if m is None else m.end() - len(self.items)


def _line_end(text: str, pos: int) -> int:
    """Index of the first newline at or after pos (len(text) if none): a star stops there."""
    nl = text.find("\n", pos)
    return len(text) if nl < 0 else nl


class ShellPattern:
    """A parsed pattern: ``segments[0] * segments[1] * ... * segments[-1]``.

    Invariants: there is one more segment than there are (collapsed) stars; the first and last
    segments may be empty, inner segments are never empty (``**`` is the same as ``*``).
    """

    __slots__ = ("segments", "source")

    def __init__(self, source: str) -> None:
        """Parse ``source`` (the raw pattern text); raise ShellPatternError on a bad escape."""
        self.source = source
        segments: list[_Segment] = []
        current: list[str | None] = []
        i, n = 0, len(source)
        while i < n:
            ch = source[i]
            i += 1
            if ch == "*":
                if current or not segments:
                    segments.append(_Segment.of(current))
                current = []
                continue
            if ch == "?":
                current.append(None)
                continue
            if ch == "\\":
                nxt = source[i] if i < n else ""
                if nxt in ("}", "/"):
                    continue
                if nxt not in ("*", "?", "\\"):
                    shown = nxt if nxt else "EOF"
                    raise ShellPatternError(f"invalid escape '\\{shown}'")
                i += 1
                ch = nxt
            current.append(ch)
        segments.append(_Segment.of(current))
        self.segments = tuple(segments)

    def _chain(self, text: str, p: int, longest: bool) -> int | None:
        """Match segments[1:] after position p (a star precedes each); return the end or None."""
        segs = self.segments
        for seg in segs[1:-1]:
            q = seg.first(text, p, _line_end(text, p))
            if q is None:
                return None
            p = q + len(seg)
        last = segs[-1]
        hi = _line_end(text, p)
        q = last.last(text, p, hi) if longest else last.first(text, p, hi)
        return None if q is None else q + len(last)

    def match_prefix(self, text: str, start: int = 0, *, longest: bool) -> int | None:
        """End of the shortest (or longest) match that starts exactly at ``start``, or None."""
        first = self.segments[0]
        if not first.match_at(text, start):
            return None
        p = start + len(first)
        if len(self.segments) == 1:
            return p
        return self._chain(text, p, longest)

    def search(self, text: str, pos: int = 0) -> tuple[int, int] | None:
        """Leftmost match at or after ``pos``, longest at that start (Go's ``.*`` semantics)."""
        first = self.segments[0]
        if len(self.segments) == 1:
            if not first.items:
                return (pos, pos) if pos <= len(text) else None
            m = first.regex.search(text, pos)
            return None if m is None else (m.start(), m.end())
        s = pos
        while s <= len(text):
            start = first.first(text, s, len(text))
            if start is None:
                return None
            end = self._chain(text, start + len(first), True)
            if end is not None:
                return start, end
            # A failed chain from p fails from every later p on the same line, because every
            # window the stars could use is then a subset of the failed one.
            s = max(start + 1, _line_end(text, start + len(first)) + 1 - len(first))
        return None

    def replace_first(self, text: str, replacement: str) -> str:
        """Replace the first match (literally, no ``$`` templates), like ``${x/p/r}``."""
        found = self.search(text)
        if found is None:
            return text
        return text[: found[0]] + replacement + text[found[1] :]

    def replace_all(self, text: str, replacement: str, *, limit: int) -> str:
        """Replace every match like Go's ``Regexp.ReplaceAllString`` (``${x//p/r}``).

        ``$0``/``${0}`` in the replacement is the match, ``$$`` a dollar (Go template rules).
        Raises ShellPatternError when the result would exceed ``limit`` characters.
        """
        out: list[str] = []
        size = 0
        last_end = 0
        pos = 0
        while pos <= len(text):
            found = self.search(text, pos)
            if found is None:
                break
            a, b = found
            out.append(text[last_end:a])
            size += a - last_end
            if b > last_end or a == 0:
                piece = expand_go_template(replacement, text[a:b])
                out.append(piece)
                size += len(piece)
            if size > limit:
                raise ShellPatternError(f"substitution result exceeds {limit} characters")
            last_end = b
            pos = pos + 1 if pos + 1 > b else b
        out.append(text[last_end:])
        return "".join(out)


def reverse_raw_pattern(pattern: str) -> str:
    """Reverse a raw pattern, keeping each ``\\x`` escape pair in order (BuildKit's rule).

    ``%``-trimming is done by matching the reversed pattern against the reversed value. A lone
    trailing ``\\`` is reversed like any other character.
    """
    pairs: list[str] = []
    i, last = 0, len(pattern) - 1
    while i <= last:
        if pattern[i] == "\\" and i != last:
            pairs.append(pattern[i : i + 2])
            i += 2
        else:
            pairs.append(pattern[i])
            i += 1
    return "".join(reversed(pairs))


_TEMPLATE_NAME = LazyPattern(r"\{?([^\W]+)")


def expand_go_template(template: str, match: str) -> str:
    """Expand ``$`` references in a Go ``ReplaceAllString`` replacement.

    The pattern has no capture groups, so ``$0``/``${0}`` is the whole match and any other
    well-formed name is empty; ``$$`` is ``$``; a malformed reference keeps its ``$``.
    """
    if "$" not in template:
        return template
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            break
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        m = _TEMPLATE_NAME.match(template, i)
        brace = i < n and template[i] == "{"
        if m is None or (brace and not template.startswith("}", m.end())):
            out.append("$")
            continue
        name = m.group(1)
        i = m.end() + (1 if brace else 0)
        if name == "0":
            out.append(match)
    out.append(template[i:])
    return "".join(out)
