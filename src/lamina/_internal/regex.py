"""Regular expressions compiled on first use, for module-level pattern constants.

``re.compile`` at import costs 0.1–0.7 ms per pattern here; the Dockerfile frontend alone
compiled ~20 patterns on every command that loads it, which a ``RUN``-only build never uses
(~5 ms of a build's start-up). :class:`LazyPattern` stands in for such a constant: the first
call of any method compiles the pattern, later calls go to the compiled pattern directly.

Invariants: a LazyPattern behaves as the ``re.Pattern`` it wraps for the methods it offers
(same arguments, same results); compiling twice from two threads is harmless (``re`` returns
equal patterns), so no lock is taken.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

_END = sys.maxsize


class LazyPattern:
    """``re.compile(source, flags)``, done when the pattern is first used."""

    __slots__ = ("_compiled", "_flags", "_source")

    def __init__(self, source: str, flags: int = 0) -> None:
        self._source = source
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern (compiled now if this is its first use)."""
        pattern = self._compiled
        if pattern is None:
            pattern = self._compiled = re.compile(self._source, self._flags)
        return pattern

    @property
    def pattern(self) -> str:
        """The source text, as ``re.Pattern.pattern`` (does not compile)."""
        return self._source

    def match(self, string: str, pos: int = 0, endpos: int = _END) -> re.Match[str] | None:
        return self.compiled().match(string, pos, endpos)

    def fullmatch(self, string: str, pos: int = 0, endpos: int = _END) -> re.Match[str] | None:
        return self.compiled().fullmatch(string, pos, endpos)

    def search(self, string: str, pos: int = 0, endpos: int = _END) -> re.Match[str] | None:
        return self.compiled().search(string, pos, endpos)

    def sub(self, repl: str | Callable[[re.Match[str]], str], string: str, count: int = 0) -> str:
        return self.compiled().sub(repl, string, count)

    def split(self, string: str, maxsplit: int = 0) -> list[str | Any]:
        return self.compiled().split(string, maxsplit)

    def findall(self, string: str, pos: int = 0, endpos: int = _END) -> list[Any]:
        return self.compiled().findall(string, pos, endpos)

    def finditer(self, string: str, pos: int = 0, endpos: int = _END) -> Iterator[re.Match[str]]:
        return self.compiled().finditer(string, pos, endpos)
