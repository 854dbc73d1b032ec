"""Parser directives: ``# syntax=``, ``# escape=``, ``# check=`` (BuildKit ``directives.go``).

Directives are only recognised on the first lines of a file, before any instruction, blank
line, ordinary comment or unknown ``# key=value`` line; the first such line ends scanning for
good. Names are case-insensitive and reported lower case. Repeating a directive and an escape
other than backslash or backtick are errors.

:func:`detect_syntax` is BuildKit's separate ``DetectSyntax`` entry point (it also accepts a
``#!`` shebang first line, ``//`` comments and a whole-file JSON object); :func:`parse` does not
use those forms.
"""

from __future__ import annotations

import json
import re

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.regex import LazyPattern
from lamina.dockerfile.ast import Directive

_DIRECTIVE_RE = re.compile(
    r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z"
)
_SLASH_DIRECTIVE_RE = LazyPattern(
    r"^//[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z"
)
ALLOWED = frozenset({"syntax", "escape", "check"})
VALID_ESCAPES = frozenset({"\\", "`"})


class DirectiveError(ValueError):
    """A directive is repeated or has an invalid value."""


class DirectiveParser:
    """Feed physical lines (newline and leading blanks removed) in order; collect directives.

    Invariant: once :attr:`done` is True no further directive is recognised.
    """

    __slots__ = ("_seen", "done", "escape", "parsed")

    def __init__(self) -> None:
        self.done = False
        self.escape = "\\"
        self.parsed: list[Directive] = []
        self._seen: set[str] = set()

    def feed(self, line: str, line_no: int) -> Directive | None:
        """Examine one line; return the directive it holds, if any. Raises DirectiveError."""
        if self.done:
            return None
        m = _DIRECTIVE_RE.match(line)
        if m is None:
            self.done = True
            return None
        name = m.group(1).lower()
        if name not in ALLOWED:
            self.done = True
            return None
        if name in self._seen:
            raise DirectiveError(f"only one {name} parser directive can be used")
        self._seen.add(name)
        value = m.group(2)
        if name == "escape":
            if value not in VALID_ESCAPES:
                raise DirectiveError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
        directive = Directive(name=name, value=value, line=line_no)
        self.parsed.append(directive)
        return directive


def parse_directives(text: str) -> list[Directive]:
    """All directives at the top of ``text`` (BuildKit ``DirectiveParser.ParseAll``)."""
    parser = DirectiveParser()
    for no, line in enumerate(text.split("\n"), start=1):
        if parser.done:
            break
        parser.feed(line.rstrip("\r").lstrip(), no)
    return parser.parsed


@lazy_dataclass(frozen=True, kw_only=True)
class SyntaxDirective:
    """Result of :func:`detect_syntax`: the frontend reference, its full value, and its line."""

    ref: str
    cmdline: str
    line: int


def _detect(text: str, key: str, *, allow_slash: bool) -> SyntaxDirective | None:
    if text.startswith("\ufeff"):
        text = text[1:]
    if allow_slash and text.lstrip().startswith("{"):
        return _detect_json(text, key)
    for no, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").lstrip()
        if no == 1 and line.startswith("#!"):
            continue
        m = _DIRECTIVE_RE.match(line)
        if m is None and allow_slash:
            m = _SLASH_DIRECTIVE_RE.match(line)
        if m is None:
            return None
        if m.group(1).lower() == key:
            value = m.group(2)
            return SyntaxDirective(ref=value.split(" ", 1)[0], cmdline=value, line=no)
    return None


def _detect_json(text: str, key: str) -> SyntaxDirective | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    if not isinstance(value, str):
        return None
    return SyntaxDirective(ref=value.split(" ", 1)[0], cmdline=value, line=1)


def detect_syntax(text: str) -> SyntaxDirective | None:
    """BuildKit ``DetectSyntax``: the ``syntax`` directive, also in ``//`` or JSON-object form."""
    return _detect(text, "syntax", allow_slash=True)


def detect_check(text: str) -> SyntaxDirective | None:
    """BuildKit ``ParseDirective("check", ...)``: only the ``#`` comment form counts."""
    return _detect(text, "check", allow_slash=False)
