"""Dockerfile text -> :class:`~lamina.dockerfile.ast.Document`, with BuildKit's exact rules.

The algorithm is BuildKit's ``parser.Parse``: physical lines split on ``\\n`` only, a UTF-8 BOM
dropped, trailing ``\\r``/``\\n`` stripped from every line, parser directives on the first lines,
comments skipped (also inside continuations), an escape character as the last non-blank
character continuing the line, blank lines inside a continuation skipped with a warning, and
heredoc bodies collected after RUN/COPY/ADD lines that contain ``<<``.

Invariants: the only exception raised is :class:`~lamina.errors.DockerfileError` (with path,
line and column); time and memory are linear in the input size. A physical line of 65536
bytes or more is rejected, as in BuildKit.
"""

from __future__ import annotations

from collections.abc import Callable

from lamina.dockerfile.ast import Document, Heredoc, Node, ParseWarning
from lamina.dockerfile.directives import DirectiveError, DirectiveParser
from lamina.dockerfile.heredoc import HEREDOC_INSTRUCTIONS, HeredocError, heredocs_from_line
from lamina.dockerfile.words import (
    GO_SPACE,
    WHITESPACE_RE,
    NotStringArray,
    parse_json_array,
    parse_words,
    split_command,
    split_whitespace,
    trim_left_space,
)
from lamina.errors import DockerfileError

MAX_LINE_BYTES = 65535
#: a Dockerfile larger than this is refused (a file, ``-f -`` or ``build -`` alike)
MAX_DOCKERFILE = 16 << 20
_BOM = "\ufeff"
_EMPTY_CONTINUATION_URL = "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"

#: (args, json, sub) produced by a line parser.
_Parsed = tuple[tuple[str, ...], bool, Node | None]


class _LineError(ValueError):
    """An error of one logical line; the caller adds the location."""


def _parse_string(rest: str, escape: str) -> _Parsed:
    return ((rest,) if rest else ()), False, None


def _parse_whitespace_list(rest: str, escape: str) -> _Parsed:
    return (tuple(split_whitespace(rest)) if rest else ()), False, None


def _parse_maybe_json(rest: str, escape: str) -> _Parsed:
    if not rest:
        return (), False, None
    arr = parse_json_array(rest)
    if arr is not None:
        return tuple(arr), True, None
    return (rest,), False, None


def _parse_maybe_json_to_list(rest: str, escape: str) -> _Parsed:
    arr = parse_json_array(rest)
    if arr is not None:
        return tuple(arr), True, None
    return _parse_whitespace_list(rest, escape)


def _parse_words_list(rest: str, escape: str) -> _Parsed:
    return tuple(parse_words(rest, escape)), False, None


def _name_value(rest: str, escape: str, key: str) -> _Parsed:
    words = parse_words(rest, escape)
    if not words:
        return (), False, None
    if "=" not in words[0]:
        parts = WHITESPACE_RE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _LineError(f"{key} must have two arguments")
        return (parts[0], parts[1], ""), False, None
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise _LineError(
                f"Syntax error - can't find = in {_go_quote(word)}. Must be of the form: name=value"
            )
        k, v = word.split("=", 1)
        out += (k, v, "=")
    return tuple(out), False, None


def _parse_env(rest: str, escape: str) -> _Parsed:
    return _name_value(rest, escape, "ENV")


def _parse_label(rest: str, escape: str) -> _Parsed:
    return _name_value(rest, escape, "LABEL")


def _parse_health(rest: str, escape: str) -> _Parsed:
    sep = 0
    n = len(rest)
    while sep < n and rest[sep] not in GO_SPACE:
        sep += 1
    if sep == 0:
        return (), False, None
    args, is_json, _ = _parse_maybe_json(trim_left_space(rest[sep:]), escape)
    return (rest[:sep], *args), is_json, None


def _parse_ignore(rest: str, escape: str) -> _Parsed:
    return ("",), False, None


def _go_quote(s: str) -> str:
    from lamina.dockerfile.dump import go_quote

    return go_quote(s)


_DISPATCH: dict[str, Callable[[str, str], _Parsed]] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_words_list,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_whitespace_list,
    "from": _parse_whitespace_list,
    "healthcheck": _parse_health,
    "label": _parse_label,
    "maintainer": _parse_string,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


def parse_line(
    line: str,
    escape: str = "\\",
    *,
    start_line: int = 0,
    end_line: int = 0,
    comments: tuple[str, ...] = (),
) -> Node:
    """Parse one logical line (continuations already joined) into a Node without heredocs.

    Raises ValueError subclasses (the caller turns them into DockerfileError).
    """
    keyword, flags, rest = split_command(line, escape)
    instr = keyword.lower()
    sub: Node | None = None
    if instr == "onbuild":
        args: tuple[str, ...] = ()
        is_json = False
        if rest:
            sub = parse_line(rest, escape, start_line=start_line, end_line=end_line)
    else:
        args, is_json, sub = _DISPATCH.get(instr, _parse_ignore)(rest, escape)
    return Node(
        keyword=keyword,
        args=args,
        flags=tuple(flags),
        json=is_json,
        sub=sub,
        original=line,
        start_line=start_line,
        end_line=end_line,
        comments=comments,
    )


def can_contain_heredoc(node: Node) -> bool:
    """RUN/COPY/ADD in shell form (also as an ONBUILD trigger) may carry heredocs."""
    if node.instruction == "onbuild" and node.sub is not None:
        node = node.sub
    return node.instruction in HEREDOC_INSTRUCTIONS and not node.json


def parse(source: str | bytes, *, path: str = "Dockerfile") -> Document:
    """Parse a whole Dockerfile. Bytes are decoded as UTF-8 (invalid bytes kept, escaped).

    Raises DockerfileError (message, path, line, column) for every malformed input.
    """
    text = source.decode("utf-8", "surrogateescape") if isinstance(source, bytes) else source
    return _Parser(text, path).run()


class _Parser:
    """One parse run: walks the physical lines with a cursor."""

    def __init__(self, text: str, path: str) -> None:
        if text.startswith(_BOM):
            text = text[1:]
        self.lines = text.split("\n")
        self.last_has_newline = bool(self.lines) and self.lines[-1] == ""
        if self.last_has_newline:
            self.lines.pop()
        self.path = path
        self.pos = 0
        self.directives = DirectiveParser()
        self.warnings: list[ParseWarning] = []

    def error(self, message: str, line: int, column: int = 1) -> DockerfileError:
        return DockerfileError(message, path=self.path, line=line, column=column)

    def next_line(self) -> str:
        """Return the next physical line (without ``\\n``); advance the cursor."""
        raw = self.lines[self.pos]
        self.pos += 1
        if (
            len(raw) > MAX_LINE_BYTES // 4
            and len(raw.encode("utf-8", "surrogateescape")) > MAX_LINE_BYTES
        ):
            raise self.error(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}", self.pos
            )
        return raw

    def run(self) -> Document:
        children: list[Node] = []
        comments: list[str] = []
        n = len(self.lines)
        while self.pos < n:
            raw = self.next_line()
            start = self.pos
            token = raw.rstrip("\r\n")
            stripped = trim_left_space(token)
            is_comment = stripped.startswith("#")
            if is_comment:
                comment = raw[1:].strip(GO_SPACE)
                if comment:
                    comments.append(comment)
                else:
                    comments = []
            if not self.directives.done:
                try:
                    self.directives.feed(stripped, start)
                except DirectiveError as exc:
                    raise self.error(str(exc), start) from exc
            if is_comment:
                continue
            line, end_of_line = self.trim_continuation(stripped)
            if end_of_line and not line:
                continue
            line = self.read_continuation(line, end_of_line, start)
            node = self.make_node(line, start, tuple(comments))
            children.append(node)
            comments = []
        if not children:
            raise self.error("file with no instructions", max(1, min(n, 1)))
        return Document(
            children=tuple(children),
            directives=tuple(self.directives.parsed),
            warnings=tuple(self.warnings),
            escape=self.directives.escape,
            path=self.path,
            lines=tuple(self.lines),
        )

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """BuildKit ``trimContinuationCharacter``: (line without the escape, is end of line)."""
        esc = self.directives.escape
        s = line.rstrip(" \t")
        if not s.endswith(esc):
            return line, True
        if len(s) == 1:
            return "", False
        if s[-2] == esc:
            return line, True
        return s[:-1], False

    def read_continuation(self, line: str, end_of_line: bool, start: int) -> str:
        parts = [line]
        empty_seen = False
        n = len(self.lines)
        while not end_of_line and self.pos < n:
            token = self.next_line().rstrip("\r\n")
            stripped = trim_left_space(token)
            if stripped.startswith("#"):
                continue
            if not stripped:
                empty_seen = True
                continue
            part, end_of_line = self.trim_continuation(token)
            parts.append(part)
        joined = "".join(parts)
        if empty_seen:
            self.warnings.append(
                ParseWarning(
                    rule="NoEmptyContinuation",
                    short=f"Empty continuation line found in: {joined}",
                    detail=("Empty continuation lines will become errors in a future release",),
                    url=_EMPTY_CONTINUATION_URL,
                    start_line=start,
                    end_line=self.pos,
                )
            )
        return joined

    def make_node(self, line: str, start: int, comments: tuple[str, ...]) -> Node:
        esc = self.directives.escape
        try:
            node = parse_line(line, esc, start_line=start, end_line=self.pos, comments=comments)
        except NotStringArray as exc:
            raise self.error(NotStringArray.MESSAGE, start) from exc
        except _LineError as exc:
            raise self.error(str(exc), start) from exc
        if "<<" not in line or not can_contain_heredoc(node):
            return node
        try:
            docs = heredocs_from_line(line)
        except HeredocError as exc:
            raise self.error(str(exc), start) from exc
        if not docs:
            return node
        filled = tuple(self.read_heredoc(doc, start) for doc in docs)
        sub = node.sub
        if sub is not None:
            sub = _replace(sub, end_line=self.pos)
        return _replace(node, heredocs=filled, end_line=self.pos, sub=sub)

    def read_heredoc(self, doc: Heredoc, start: int) -> Heredoc:
        body: list[str] = []
        n = len(self.lines)
        while self.pos < n:
            raw = self.next_line()
            candidate = raw.rstrip("\r\n")
            if doc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == doc.name:
                return _replace_heredoc(doc, "".join(body))
            body.append(raw)
            if self.pos < n or self.last_has_newline:
                body.append("\n")
        raise self.error("unterminated heredoc", start)


def _replace(node: Node, **changes: object) -> Node:
    from dataclasses import replace

    return replace(node, **changes)  # type: ignore[arg-type]


def _replace_heredoc(doc: Heredoc, content: str) -> Heredoc:
    return Heredoc(
        name=doc.name,
        content=content,
        expand=doc.expand,
        chomp=doc.chomp,
        file_descriptor=doc.file_descriptor,
    )
