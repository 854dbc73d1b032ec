"""The expansion engine behind ``lamina.dockerfile.shell.Lexer`` (BuildKit ``shellWord``).

Split from ``shell`` to keep modules small; see that module for the semantics and invariants.
Callers use ``Lexer``; this module is its private half and may change without notice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.regex import LazyPattern
from lamina.dockerfile.shellpattern import ShellPattern, ShellPatternError, reverse_raw_pattern
from lamina.errors import DockerfileError

__all__ = ["Expansion", "LexOptions"]

_MAX_PATTERN_WORK = 1 << 28
"""Refuse a pattern modifier when len(value) * len(pattern) exceeds this (worst-case work)."""
_SPECIAL_NAMES = frozenset("@*#?-$!0")
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_SPACE_RE = LazyPattern("[" + re.escape("".join(sorted(_GO_SPACE))) + "]")
_HEREDOC_BLANKS = frozenset(" \t\r")


@lazy_dataclass(frozen=True, kw_only=True)
class LexOptions:
    """The knobs of one lexer (see ``Lexer`` for their meaning)."""

    escape: str
    raw_quotes: bool
    raw_escapes: bool
    skip_unset_env: bool
    skip_process_quotes: bool
    case_insensitive_env: bool
    max_length: int
    max_depth: int


def _is_name_char(ch: str) -> bool:
    return ch.isalpha() or ch.isdecimal() or ch == "_"


class _TooLarge(DockerfileError):
    """An expansion outgrew its cap; never rewritten into a syntax error."""


class _Words:
    """Accumulates the split form: unquoted expansion text splits on Go whitespace."""

    __slots__ = ("current", "in_word", "size", "words")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current: list[str] = []
        self.size = 0
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch not in _GO_SPACE:
            self.add_raw(ch)
        elif self.in_word and self.size:
            self.finish()

    def add_split(self, text: str) -> None:
        """Add expansion text: each run of whitespace ends the current word (if non-empty)."""
        for k, part in enumerate(_SPACE_RE.split(text)):
            if k and self.in_word and self.size:
                self.finish()
            if part:
                self.add_raw(part)

    def add_raw(self, text: str) -> None:
        self.current.append(text)
        self.size += len(text)
        self.in_word = True

    def finish(self) -> list[str]:
        if self.size:
            self.words.append("".join(self.current))
            self.current = []
            self.size = 0
            self.in_word = False
        return self.words


class Expansion:
    """The state of one expansion: input, position, lookups, and the active options.

    ``until("", raw_escapes)`` expands the whole input; ``matched``/``unmatched`` then hold
    the names looked up. Raises only DockerfileError (or RecursionError past the stack).
    """

    def __init__(self, options: LexOptions, text: str, env: Mapping[str, str]) -> None:
        self.lx = options
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = options.raw_escapes
        self.depth = 0
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def fail(self, message: str) -> DockerfileError:
        return DockerfileError(message)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def check(self, size: int) -> None:
        if size > self.lx.max_length:
            raise _TooLarge(f"expanded word exceeds {self.lx.max_length} characters")

    def lookup(self, name: str) -> str | None:
        key = name.upper() if self.lx.case_insensitive_env else name
        value = self.env.get(key)
        (self.unmatched if value is None else self.matched).add(name)
        return value

    def until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Expand up to ``stop`` (consumed; "" = end of input); return text and words."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._until(stop)
        finally:
            self.raw_escapes = saved

    def _until(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        size = 0
        words = _Words()
        esc = self.lx.escape
        quotes = not self.lx.skip_process_quotes
        while (ch := self.peek()) != "":
            if stop and ch == stop:
                self.pos += 1
                return "".join(out), words.finish()
            if ch == "$":
                piece = self.dollar()
                words.add_split(piece)
            elif ch == "<":
                piece = self.heredoc_marker()
                words.add_raw(piece)
            elif quotes and ch == "'":
                piece = self.single_quoted()
                words.add_raw(piece)
            elif quotes and ch == '"':
                piece = self.double_quoted()
                words.add_raw(piece)
            else:
                self.pos += 1
                piece = ch
                if ch == esc:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        out.append(ch)
                        size += 1
                    piece = self.take()
                    if not piece:
                        break
                    words.add_raw(piece)
                else:
                    words.add_char(ch)
            out.append(piece)
            size += len(piece)
            self.check(size)
        if stop:
            raise self.fail(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.finish()

    def single_quoted(self) -> str:
        raw = self.lx.raw_quotes
        self.pos += 1
        end = self.text.find("'", self.pos)
        if end < 0:
            raise self.fail("unexpected end of statement while looking for matching single-quote")
        body = self.text[self.pos : end]
        self.pos = end + 1
        return f"'{body}'" if raw else body

    def double_quoted(self) -> str:
        raw = self.lx.raw_quotes
        esc = self.lx.escape
        self.pos += 1
        out: list[str] = ['"'] if raw else []
        size = 0
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.pos += 1
                if raw:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                piece = self.dollar()
            else:
                self.pos += 1
                piece = ch
                if ch == esc:
                    if self.raw_escapes:
                        out.append(ch)
                    nxt = self.peek()
                    if nxt == "":
                        continue
                    if nxt in ('"', "$", esc):
                        piece = self.take()
            out.append(piece)
            size += len(piece)
            self.check(size)

    def heredoc_marker(self) -> str:
        self.pos += 1
        if self.peek() != "<":
            return "<"
        self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _HEREDOC_BLANKS:
            self.pos += 1
        return "<<" + self.text[start : self.pos]

    def name(self) -> str:
        text, start = self.text, self.pos
        ch = self.peek()
        if ch == "":
            return ""
        if ch.isdecimal():
            while self.pos < len(text) and text[self.pos].isdecimal():
                self.pos += 1
            return text[start : self.pos]
        if ch in _SPECIAL_NAMES:
            self.pos += 1
            return ch
        while self.pos < len(text) and _is_name_char(text[self.pos]):
            self.pos += 1
        return text[start : self.pos]

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.lx.skip_unset_env else ""
            self.check(len(value))
            return value
        self.pos += 1
        first = self.peek()
        if first == "":
            raise self.fail("syntax error: missing '}'")
        if first in "{}:":
            raise self.fail("syntax error: bad substitution")
        self.depth += 1
        if self.depth > self.lx.max_depth:
            raise self.fail(f"substitutions nested deeper than {self.lx.max_depth}")
        try:
            return self.braced(self.name())
        finally:
            self.depth -= 1

    def braced(self, name: str) -> str:
        op = self.take()
        if op == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.lx.skip_unset_env else ""
            self.check(len(value))
            return value
        if op == "/":
            return self.substitute(name)
        if op == "":
            raise self.fail("syntax error: missing '}'")
        colon = op == ":"
        if colon:
            op = self.take()
        shown = (":" if colon else "") + (op or "\ufffd")
        if op not in ("+", "-", "?", "#", "%") and not colon:
            raise self.fail(f"unsupported modifier ({shown}) in substitution")
        pattern_mode = op in ("#", "%")
        if colon and pattern_mode:
            raise self.fail(f"unsupported modifier ({shown}) in substitution")
        word = self.word_until("}", pattern_mode)
        value = self.lookup(name)
        if value is None and self.lx.skip_unset_env:
            return "${" + name + shown + word + "}"
        empty = value is None or (colon and value == "")
        if op == "-":
            return word if empty else str(value)
        if op == "+":
            return "" if empty else word
        if op == "?":
            if value is None:
                raise self.fail(f"{name}: {word or 'is not allowed to be unset'}")
            if empty:
                raise self.fail(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if op in ("#", "%"):
            return self.trim(value or "", word, op)
        raise self.fail(f"unsupported modifier ({shown}) in substitution")

    def word_until(self, stop: str, raw_escapes: bool) -> str:
        try:
            return self.until(stop, raw_escapes)[0]
        except _TooLarge:
            raise
        except DockerfileError:
            if self.peek() == "":
                raise self.fail(
                    "syntax error: missing '}'"
                    if stop == "}"
                    else "syntax error: missing '/' in ${}"
                ) from None
            raise

    def compile(self, pattern: str, value: str) -> ShellPattern:
        if len(value) * (len(pattern) + 1) > _MAX_PATTERN_WORK:
            raise self.fail("pattern substitution too large to evaluate")
        try:
            return ShellPattern(pattern)
        except ShellPatternError as exc:
            raise self.fail(f"invalid pattern ({pattern}) in substitution: {exc}") from None

    def trim(self, value: str, word: str, op: str) -> str:
        longest = word.startswith(op)
        if longest:
            word = word[1:]
        if op == "#":
            end = self.compile(word, value).match_prefix(value, longest=longest)
            return value if end is None else value[end:]
        rev = value[::-1]
        end = self.compile(reverse_raw_pattern(word), value).match_prefix(rev, longest=longest)
        return value if end is None else rev[end:][::-1]

    def substitute(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.pos += 1
        pattern = self.word_until("/", True)
        replacement = self.word_until("}", True)
        value = self.lookup(name)
        if value is None and self.lx.skip_unset_env:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        value = value or ""
        compiled = self.compile(pattern, value)
        if not replace_all:
            result = compiled.replace_first(value, replacement)
        else:
            try:
                result = compiled.replace_all(value, replacement, limit=self.lx.max_length)
            except ShellPatternError as exc:
                raise self.fail(str(exc)) from None
        self.check(len(result))
        return result
