"""Low-level text splitting shared by the parser: BuildKit's word and flag scanners.

These mirror BuildKit's ``parseWords``, ``extractBuilderFlags`` and JSON-array detection.
Invariants: pure functions over ``str``; linear time in the input length (words are built
in lists, never by repeated string concatenation); no exceptions other than
:class:`NotStringArray` escape them.

Deviation: BuildKit's flag scanner walks bytes (so ``--chown=josé`` turns into mojibake);
this one walks characters, which gives the intended value.
"""

from __future__ import annotations

import json
import re

from lamina._internal.regex import LazyPattern

#: Go's ``unicode.IsSpace`` set.
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_GO_SPACE_SET = frozenset(GO_SPACE)
#: BuildKit's ``reWhitespace`` (ASCII blanks, no newline).
WHITESPACE_RE = re.compile(r"[\t\v\f\r ]+")
_SURROGATE_RE = LazyPattern("[\ud800-\udfff]")


class NotStringArray(ValueError):
    """A JSON array held something other than strings (a hard parse error in BuildKit)."""

    MESSAGE = "when using JSON array syntax, arrays must be comprised of strings only"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


def is_space(ch: str) -> bool:
    """Go's ``unicode.IsSpace`` for one character."""
    return ch in _GO_SPACE_SET


def trim_space(s: str) -> str:
    """Go's ``strings.TrimSpace``."""
    return s.strip(GO_SPACE)


def trim_left_space(s: str) -> str:
    """Go's ``strings.TrimLeftFunc(s, unicode.IsSpace)``."""
    return s.lstrip(GO_SPACE)


def split_whitespace(s: str) -> list[str]:
    """Split on runs of ``[\\t\\v\\f\\r ]`` (BuildKit ``reWhitespace.Split(s, -1)``)."""
    return WHITESPACE_RE.split(s)


_SPACE_CLASS = "".join(re.escape(c) for c in GO_SPACE)
_PLAIN_RUNS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {}


def _plain_runs(escape: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Regexes for runs of ordinary characters outside quotes and inside double quotes."""
    runs = _PLAIN_RUNS.get(escape)
    if runs is None:
        esc = re.escape(escape)
        runs = (re.compile(f"[^{_SPACE_CLASS}'\"{esc}]+"), re.compile(f'[^"{esc}]+'))
        _PLAIN_RUNS[escape] = runs
    return runs


def parse_words(rest: str, escape: str = "\\") -> list[str]:
    """BuildKit's ``parseWords``: split on whitespace outside quotes, keeping quotes and escapes.

    An escape character at the very end is dropped; an unterminated quote runs to the end.
    Ordinary characters are consumed in regex runs, so the cost is linear with a small constant.
    """
    plain, dquoted = _plain_runs(escape)
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    in_word = False
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        if not quote:
            m = plain.match(rest, i)
            if m is not None:
                word.append(m.group())
                in_word = True
                i = m.end()
                continue
            if ch in _GO_SPACE_SET:
                if in_word and (blank_ok or word):
                    words.append("".join(word))
                word = []
                blank_ok = False
                in_word = False
                i += 1
                continue
            in_word = True
            if ch in "'\"":
                quote = ch
                blank_ok = True
            elif ch == escape:
                if i + 1 == n:
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if quote == '"':
            m = dquoted.match(rest, i)
        else:
            end = rest.find("'", i)
            m = None
            if end != i:
                word.append(rest[i : end if end >= 0 else n])
                i = end if end >= 0 else n
                continue
        if m is not None:
            word.append(m.group())
            i = m.end()
            continue
        if ch == quote:
            quote = ""
        elif ch == escape and quote != "'":
            if i + 1 == n:
                quote = ""
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _scan_flag_word(line: str, i: int, escape: str) -> tuple[str, bool, int]:
    """Read one flag word starting at ``i``; return (word, blank_ok, index after it)."""
    n = len(line)
    m = _plain_runs(escape)[0].match(line, i)
    if m is not None and (m.end() == n or line[m.end()] in _GO_SPACE_SET):
        return m.group(), False, m.end()
    buf: list[str] = []
    blank_ok = False
    quote = ""
    while i < n:
        ch = line[i]
        if not quote:
            if ch in _GO_SPACE_SET:
                break
            if ch in "'\"":
                quote = ch
                blank_ok = True
                i += 1
                continue
        elif ch == quote:
            quote = ""
            i += 1
            continue
        if ch == escape:
            if i + 1 == n:
                quote = ""
                i += 1
                continue
            i += 1
            ch = line[i]
        buf.append(ch)
        i += 1
    return "".join(buf), blank_ok, i


def extract_flags(line: str, escape: str = "\\") -> tuple[str, list[str]]:
    """BuildKit's ``extractBuilderFlags``: leading ``--`` words become flags.

    Returns ``(rest, flags)``. Quotes inside a flag word are removed, the escape character
    takes the next character literally, a bare ``--`` ends the flags and is dropped.
    """
    flags: list[str] = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in _GO_SPACE_SET:
            i += 1
        if i >= n:
            return "", flags
        if not line.startswith("--", i):
            return line[i:], flags
        word, blank_ok, i = _scan_flag_word(line, i, escape)
        if i >= n:
            if word != "--" and (blank_ok or word):
                flags.append(word)
            return "", flags
        if word == "--":
            return line[i:], flags
        if blank_ok or word:
            flags.append(word)


def split_command(line: str, escape: str = "\\") -> tuple[str, list[str], str]:
    """Split a logical line into ``(keyword, flags, rest)`` like BuildKit's ``splitCommand``."""
    parts = WHITESPACE_RE.split(trim_space(line), maxsplit=1)
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = extract_flags(parts[1], escape)
    return parts[0], flags, trim_space(rest)


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def parse_json_array(rest: str) -> list[str] | None:
    """Exec-form detection: the strings of a JSON array, or None if ``rest`` is not one.

    Raises :class:`NotStringArray` when it is a JSON array with a non-string element.
    Invalid UTF-8 and lone surrogates in strings become U+FFFD, as in Go.
    """
    text = trim_left_space(rest)
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise NotStringArray()
        if _SURROGATE_RE.search(item):
            item = _SURROGATE_RE.sub("\ufffd", item)
        out.append(item)
    return out
