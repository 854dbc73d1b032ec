"""Shell-word expansion with BuildKit's semantics (``frontend/dockerfile/shell``).

``Lexer`` replaces ``$name`` and ``${name...}`` in Dockerfile instruction arguments, removes quotes
and escapes, and can split the result into words. The behaviour, including its quirks, follows
BuildKit's lexer as pinned by ``shared/conformance/buildkit-shell``:

* names are letters, digits and ``_`` (Unicode counts); a leading digit makes a positional name
  (``$1``, ``$001``); ``@ * # ? - $ ! 0`` are one-character special names; none of these is ever
  set by a Dockerfile. ``$`` before anything else is a literal ``$``.
* modifiers ``:-  -  :+  +  :?  ?  #  ##  %  %%  /  //``; the word after a modifier is itself
  expanded, and its variables are looked up even when the branch is not taken.
* single quotes keep everything; in double quotes the escape token escapes only ``"``, ``$`` and
  itself; elsewhere it escapes any character and a trailing one is dropped.
* an unquoted ``<<`` keeps the blanks after it in the same word (heredoc detection).

Invariants: expansion is pure (no I/O, no global state) and the only exception it raises is
``DockerfileError``, with BuildKit's message prefixed by ``failed to process "<word>"``. Every
expanded word is capped at ``max_length`` characters and ``${`` nesting at ``max_depth``, so a
hostile environment cannot make it build gigabytes or overflow the stack. Pattern modifiers run
in polynomial time (see ``shellpattern``). Deviation: BuildKit (at some versions) shares one word
buffer between nested expansions, which can drop text before a ``${x:-y}`` in ``process_words``;
this lexer keeps each nesting level separate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lamina.dockerfile.shellpattern import ShellPattern, ShellPatternError, reverse_raw_pattern
from lamina.errors import DockerfileError

__all__ = ["DEFAULT_MAX_LENGTH", "ExpandResult", "Lexer", "env_from_list", "go_quote"]

DEFAULT_MAX_LENGTH = 1 << 20
"""Default cap, in characters, on one expanded word (and on every value built inside it)."""

_MAX_PATTERN_WORK = 1 << 31
_SPECIAL_NAMES = frozenset("@*#?-$!0")
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_HEREDOC_BLANKS = frozenset(" \t\r")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpandResult:
    """The outcome of one expansion.

    ``result`` is the single-string form, ``words`` the split form. ``matched`` holds every name
    that was looked up and found, ``unmatched`` every name looked up and not found (including
    lookups in branches whose value was not used); BuildKit's UndefinedVar lint reads these.
    """

    result: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


def env_from_list(entries: list[str]) -> dict[str, str]:
    """Build an environment from ``KEY=VALUE`` strings; ``KEY`` alone is set-but-empty.

    Later duplicates win, as in BuildKit's ``EnvsFromSlice``.
    """
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


_GO_NAMED_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}


def go_quote(text: str) -> str:
    """Quote ``text`` as Go's ``%q`` does (used in error messages)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_NAMED_ESCAPES:
            out.append("\\" + _GO_NAMED_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


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
        for ch in text:
            self.add_char(ch)

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


class _Run:
    """The state of one expansion: input, position, lookups, and the active options."""

    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
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


class Lexer:
    """BuildKit's shell-word lexer. Stateless between calls, so safe to share across threads.

    ``escape`` is the Dockerfile escape token (``\\`` or a backtick). Keyword options mirror
    BuildKit's: ``raw_quotes`` keeps quote characters, ``raw_escapes`` keeps escape tokens,
    ``skip_unset_env`` leaves references to unset names as written, ``skip_process_quotes``
    treats quotes as ordinary characters; ``case_insensitive_env`` upper-cases names before
    lookup (BuildKit on Windows). ``max_length``
    caps each expanded word, ``max_depth`` the ``${`` nesting.
    """

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset_env: bool = False,
        skip_process_quotes: bool = False,
        case_insensitive_env: bool = False,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_depth: int = 100,
    ) -> None:
        if escape not in ("\\", "`"):
            raise DockerfileError(f"invalid escape token {escape!r}: must be ` or \\")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env
        self.skip_process_quotes = skip_process_quotes
        self.case_insensitive_env = case_insensitive_env
        self.max_length = max_length
        self.max_depth = max_depth

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> ExpandResult:
        """Expand ``word`` once, returning both forms and the names looked up."""
        if self.case_insensitive_env:
            env = {key.upper(): value for key, value in env.items()}
        run = _Run(self, word, env)
        try:
            result, words = run.until("", run.raw_escapes)
        except DockerfileError as exc:
            raise exc.with_context(f"failed to process {go_quote(word)}") from None
        except RecursionError:
            raise DockerfileError(
                f"failed to process {go_quote(word)}: substitutions nested too deeply"
            ) from None
        return ExpandResult(
            result=result,
            words=tuple(words),
            matched=frozenset(run.matched),
            unmatched=frozenset(run.unmatched),
        )

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` to one string (BuildKit ``ProcessWord``); spaces are kept."""
        return self.process_word_with_matches(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it into words (BuildKit ``ProcessWords``).

        Unquoted text from ``$`` expansions splits on whitespace; quoted text never does; an
        empty quoted string alone yields no word.
        """
        return list(self.process_word_with_matches(word, env).words)
