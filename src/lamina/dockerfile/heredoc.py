"""Here-document detection for RUN, COPY and ADD (BuildKit ``heredocsFromLine``/``ParseHeredoc``).

A heredoc word matches ``^(\\d*)<<(-?)\\s*([^<]*)$``; its delimiter part must lex to exactly one
shell word. ``name`` is that word with quotes and escapes processed; ``expand`` is False when a
quote was removed. Shell-word lexing here is the small subset the detection needs (quotes,
escapes, whitespace); ``$`` is kept literally, as BuildKit does with an empty environment.

Invariants: pure functions; errors are :class:`HeredocError` (the parser adds the location).
"""

from __future__ import annotations

import re

from lamina._internal.regex import LazyPattern
from lamina.dockerfile.ast import Heredoc
from lamina.dockerfile.words import is_space

_HEREDOC_RE = LazyPattern(r"^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
_OPENER_RE = LazyPattern(r"^\d*<<-?\Z")
_LEADING_TABS_RE = LazyPattern(r"^\t+", re.MULTILINE)

#: Instructions whose shell form may carry heredocs.
HEREDOC_INSTRUCTIONS = frozenset({"run", "copy", "add"})


class HeredocError(ValueError):
    """A heredoc delimiter could not be lexed (an unterminated quote)."""


def _lex_words(src: str, *, raw_quotes: bool, raw_escapes: bool, join_opener: bool) -> list[str]:
    """Split ``src`` into shell words with ``\\`` as escape; raise HeredocError on open quotes.

    With ``join_opener`` a word that is just ``<<``/``<<-`` (optionally with a leading fd)
    swallows the blanks after it, so ``<< EOF`` stays one word, as BuildKit's lexer does.
    """
    words: list[str] = []
    word: list[str] = []
    started = False
    absorbing = False  # inside the blanks after a ``<<`` opener
    i = 0
    n = len(src)
    while i < n:
        ch = src[i]
        if is_space(ch):
            if absorbing or (join_opener and started and _OPENER_RE.match("".join(word))):
                absorbing = True
                word.append(ch)
                i += 1
                continue
            if started:
                words.append("".join(word))
                word = []
                started = False
            i += 1
            continue
        started = True
        absorbing = False
        if ch == "'":
            end = src.find("'", i + 1)
            if end < 0:
                raise HeredocError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            word.append(src[i : end + 1] if raw_quotes else src[i + 1 : end])
            i = end + 1
            continue
        if ch == '"':
            i = _lex_double(src, i, word, raw_quotes=raw_quotes, raw_escapes=raw_escapes)
            continue
        if ch == "\\":
            if raw_escapes:
                word.append(ch)
            i += 1
            if i < n:
                word.append(src[i])
                i += 1
            continue
        word.append(ch)
        i += 1
    if started:
        words.append("".join(word))
    return words


def _lex_double(src: str, i: int, word: list[str], *, raw_quotes: bool, raw_escapes: bool) -> int:
    """Append the double-quoted section starting at ``src[i]``; return the index after it."""
    n = len(src)
    if raw_quotes:
        word.append('"')
    i += 1
    while True:
        if i >= n:
            raise HeredocError(
                "unexpected end of statement while looking for matching double-quote"
            )
        ch = src[i]
        if ch == '"':
            if raw_quotes:
                word.append('"')
            return i + 1
        if ch == "\\":
            if i + 1 >= n:
                if raw_escapes:
                    word.append(ch)
                i += 1
                continue
            nxt = src[i + 1]
            if nxt in '"$\\':
                if raw_escapes:
                    word.append(ch)
                word.append(nxt)
                i += 2
                continue
        word.append(ch)
        i += 1


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a single shell word opens (empty content), None if it is not one.

    Raises HeredocError when the delimiter has an unterminated quote (``<<'EOF``).
    """
    m = _HEREDOC_RE.match(word)
    if m is None:
        return None
    fd_text, dash, rest = m.groups()
    if not rest:
        return None
    words = _lex_words(rest, raw_quotes=False, raw_escapes=False, join_opener=False)
    if len(words) != 1:
        return None
    raw = _lex_words(rest, raw_quotes=True, raw_escapes=False, join_opener=False)
    if len(raw) != 1:
        raise HeredocError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    fd = int(fd_text) if fd_text else 0
    return Heredoc(
        name=name, content="", expand=quotes == raw_quotes, chomp=dash == "-", file_descriptor=fd
    )


def maybe_heredoc(word: str) -> Heredoc | None:
    """Like :func:`parse_heredoc` but None instead of an error (BuildKit ``MustParseHeredoc``)."""
    try:
        return parse_heredoc(word)
    except HeredocError:
        return None


def heredocs_from_line(line: str) -> list[Heredoc]:
    """Every heredoc opened on a logical line, in order (names only, content empty).

    A line whose quotes do not balance has no heredocs. Raises HeredocError for a heredoc
    word with a malformed delimiter.
    """
    try:
        words = _lex_words(line, raw_quotes=True, raw_escapes=True, join_opener=True)
    except HeredocError:
        return []
    docs: list[Heredoc] = []
    for word in words:
        doc = parse_heredoc(word)
        if doc is not None:
            docs.append(doc)
    return docs


def chomp_heredoc_content(src: str) -> str:
    """Remove leading tabs from every line (what ``<<-`` means, applied at build time)."""
    return _LEADING_TABS_RE.sub("", src)
