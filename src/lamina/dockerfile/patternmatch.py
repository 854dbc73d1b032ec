"""``.dockerignore`` pattern matching with moby/patternmatcher semantics.

Building a matcher trims each pattern, drops empty ones, applies Go's ``filepath.Clean``, takes a
leading ``!`` as an exception, and checks the syntax the way Go's ``filepath.Match`` does. A path
(relative, ``/``-separated) is matched against the patterns in order: a normal pattern is tried
only while the path is not yet excluded, an exception only while it is; a pattern hits when it
matches the path or any of its ancestors; the last hit wins.

Translation of one pattern (upstream builds a Go regexp; so do we, for Python, with ``fullmatch``):
``*`` is any run without ``/``, ``?`` one character but ``/``, ``**`` any number of segments
(``**/`` eats its slash; a trailing ``**`` matches everything below), ``[...]`` a class, ``\\x``
a literal ``x``. Patterns with no wildcards compare as strings, ``dir/**`` as a prefix, and a
pattern that starts with ``**`` and has no other wildcard as a plain suffix (``**file`` matches
``xfile``), as upstream does.

Deviations, on purpose: inside a class ``*`` and ``?`` are literal, and ``\\d``-style escapes
mean the letter, as ``filepath.Match`` reads them (upstream's regexp would read them as regexp
syntax). A class range that runs backwards (``[z-a]``) is an error the first time the pattern is
evaluated, as upstream, but the error text is ours.

Invariants: a built matcher is immutable and thread-safe; the only exception raised is
``DockerfileError`` (``path`` = the pattern source given, default ``.dockerignore``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import DockerfileError

__all__ = ["MatchInfo", "Pattern", "PatternMatcher", "go_clean", "go_trim_space"]

_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)


def go_trim_space(text: str) -> str:
    """Go's ``strings.TrimSpace``: strip Unicode white space from both ends."""
    return text.strip(_GO_SPACE)


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on Unix: collapse ``//``, drop ``.``, resolve ``..``."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


class _BadPattern(Exception):
    """Internal: the pattern is malformed (Go's ErrBadPattern)."""


def _parse_class(pattern: str, i: int) -> tuple[list[tuple[str, str]], bool, int]:
    """Parse a ``[...]`` class whose ``[`` is at ``i - 1``; return ranges, negated, next index.

    Follows ``filepath.Match``: ``]`` or ``-`` may not start a range, ``\\`` escapes, a class
    must be closed, and ``[a-b-c]`` is rejected.
    """
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[tuple[str, str]] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            return ranges, negated, i + 1
        lo, i = _class_char(pattern, i)
        hi = lo
        if pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        ranges.append((lo, hi))


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise _BadPattern
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise _BadPattern
    if i + 1 >= len(pattern):
        raise _BadPattern
    return pattern[i], i + 1


def _validate(pattern: str) -> None:
    """Raise _BadPattern where Go's ``filepath.Match(pattern, ".")`` would."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "\\":
            if i >= len(pattern):
                raise _BadPattern
            i += 1
        elif ch == "[":
            _, _, i = _parse_class(pattern, i)


def _class_regex(ranges: list[tuple[str, str]], negated: bool) -> str:
    body = "".join(
        re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in ranges
    )
    return f"[{'^' if negated else ''}{body}]"


@lazy_dataclass(frozen=True)
class Pattern:
    """One compiled pattern. ``text`` is the cleaned pattern without its ``!``."""

    text: str
    exclusion: bool
    kind: str  # "exact", "prefix", "suffix" or "regex"
    regex: re.Pattern[str] | None
    error: str | None

    @classmethod
    def compile(cls, text: str, exclusion: bool) -> Pattern:
        """Translate a cleaned, syntax-checked pattern the way patternmatcher does."""
        out: list[str] = []
        kind = "exact"
        error: str | None = None
        i, n, token = 0, len(text), 0
        while i < n:
            ch = text[i]
            i += 1
            if ch == "*" and i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regex"
                else:
                    out.append("(?:.*/)?")
                    kind = "regex"
                if token == 0:
                    kind = "suffix"
            elif ch == "*":
                out.append("[^/]*")
                kind = "regex"
            elif ch == "?":
                out.append("[^/]")
                kind = "regex"
            elif ch == "\\":
                if i < n:
                    out.append(re.escape(text[i]))
                    i += 1
                    kind = "regex"
                else:
                    out.append(re.escape("\\"))
            elif ch == "[":
                ranges, negated, i = _parse_class(text, i)
                if any(lo > hi for lo, hi in ranges):
                    error = f"invalid character class range in pattern {text!r}"
                out.append(_class_regex(ranges, negated))
                kind = "regex"
            elif ch == "^":
                out.append("^")
            else:
                out.append(re.escape(ch))
            token += 1
        regex = re.compile("".join(out)) if kind == "regex" and error is None else None
        return cls(text, exclusion, kind, regex, error)

    def match(self, path: str) -> bool:
        """Whether this pattern matches ``path`` itself (ancestors are the matcher's job)."""
        if self.error is not None:
            raise _BadPattern(self.error)
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None


@lazy_dataclass(frozen=True)
class MatchInfo:
    """Per-pattern results for a directory, reused for its children (fsutil's fast path)."""

    parent_matched: tuple[bool, ...]


class PatternMatcher:
    """An ordered list of exclude patterns with ``!`` exceptions (moby/patternmatcher)."""

    __slots__ = ("exclusions", "patterns", "source")

    def __init__(self, patterns: Iterable[str], *, source: str = ".dockerignore") -> None:
        """Build the matcher; raise DockerfileError on ``!`` alone or a malformed pattern."""
        self.source = source
        compiled: list[Pattern] = []
        for raw in patterns:
            text = go_trim_space(raw)
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise DockerfileError('illegal exclusion pattern: "!"', path=source)
                text = text[1:]
            try:
                _validate(text)
                compiled.append(Pattern.compile(text, exclusion))
            except _BadPattern:
                raise DockerfileError(f"syntax error in pattern {raw!r}", path=source) from None
        self.patterns: tuple[Pattern, ...] = tuple(compiled)
        self.exclusions = any(p.exclusion for p in compiled)

    def _match(self, pattern: Pattern, path: str) -> bool:
        try:
            return pattern.match(path)
        except _BadPattern as exc:
            raise DockerfileError(str(exc), path=self.source) from None

    def _ancestor_match(self, pattern: Pattern, path: str) -> bool:
        parent = go_clean(path[: path.rfind("/") + 1])
        if parent == ".":
            return False
        dirs = parent.split("/")
        return any(self._match(pattern, "/".join(dirs[: k + 1])) for k in range(len(dirs)))

    def matches(self, path: str) -> bool:
        """Whether ``path`` is excluded (upstream ``MatchesOrParentMatches``); ``.`` never is."""
        if path == ".":
            return False
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            if self._match(pattern, path) or self._ancestor_match(pattern, path):
                matched = not pattern.exclusion
        return matched

    def drops(self, rel: str, is_dir: bool) -> bool:
        """Whether a copy leaves out ``rel`` (``COPY --exclude``, fsutil's rule): a match is
        dropped, except a directory an exception (``!pattern``) may re-include something in,
        which must still be entered."""
        if not self.matches(rel):
            return False
        if is_dir and self.exclusions:
            below = rel + "/"
            return not any(p.exclusion and (p.text + "/").startswith(below) for p in self.patterns)
        return True

    def matches_using_parent(
        self, path: str, parent: MatchInfo | None = None
    ) -> tuple[bool, MatchInfo]:
        """Like ``matches``, reusing the parent directory's ``MatchInfo`` (fsutil's walk).

        A pattern the parent hit counts as hit; otherwise only ``path`` itself is tried (all
        ancestors when ``parent`` is None). Upstream's quirk is kept: a pattern skipped for the
        parent is not retried against the ancestors of ``path``.
        """
        previous: Sequence[bool] = parent.parent_matched if parent is not None else ()
        if previous and len(previous) != len(self.patterns):
            raise DockerfileError("wrong number of values in parent match info", path=self.source)
        matched = False
        results: list[bool] = []
        for k, pattern in enumerate(self.patterns):
            hit = bool(previous) and previous[k]
            if not hit:
                if pattern.exclusion != matched:
                    results.append(False)
                    continue
                hit = self._match(pattern, path)
                if not hit and not previous:
                    hit = self._ancestor_match(pattern, path)
            results.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, MatchInfo(tuple(results))
