"""The frozen Dockerfile AST produced by :func:`lamina.dockerfile.parser.parse`.

Invariants:

* Every model here is a frozen, slotted, keyword-only dataclass: values, never mutated.
* ``Node.args`` holds the argument strings exactly as BuildKit's line parsers produce them
  (raw: quotes and escape characters of shell-form text are kept; JSON strings are decoded).
* ``Node.keyword`` is the instruction word as written; ``Node.instruction`` is its lower case.
* Line numbers are 1-based and count every physical line of the file (directives, comments
  and blank lines included). ``end_line`` is the last physical line the node consumed
  (continuations, skipped lines inside continuations and heredoc bodies included).
* Strings decoded from bytes use ``surrogateescape``: an invalid UTF-8 byte ``0xHH`` appears as
  the lone surrogate ``U+DCHH`` and is dumped as ``\\xHH``.
"""

from __future__ import annotations

from dataclasses import field

from lamina._internal.lazydataclass import lazy_dataclass


@lazy_dataclass(frozen=True, kw_only=True)
class Heredoc:
    """One ``<<NAME`` here-document attached to a RUN/COPY/ADD instruction.

    ``content`` is the raw body: every line up to (not including) the terminator, with its
    newline; it is never chomped by the parser even when ``chomp`` (``<<-``) is set.
    ``expand`` is False when any part of the delimiter was quoted.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    file_descriptor: int = 0


@lazy_dataclass(frozen=True, kw_only=True)
class Node:
    """One instruction of the Dockerfile (a top-level child of the AST, or ONBUILD's trigger).

    ``sub`` is set only for ONBUILD: the trigger instruction parsed as a complete line
    (then ``args`` is empty). ``json`` is True for exec (JSON array) form. ``original`` is the
    logical line (continuations joined) as BuildKit records it. ``comments`` are the comment
    lines directly above the instruction (without ``#``), used for documentation comments.
    """

    keyword: str
    args: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    json: bool = False
    sub: Node | None = None
    heredocs: tuple[Heredoc, ...] = ()
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    comments: tuple[str, ...] = ()

    @property
    def instruction(self) -> str:
        """The lower-cased keyword (``run``, ``copy``...), used for dispatch."""
        return self.keyword.lower()


@lazy_dataclass(frozen=True, kw_only=True)
class Directive:
    """A parser directive (``# syntax=``, ``# escape=``, ``# check=``); ``name`` is lower case."""

    name: str
    value: str
    line: int


@lazy_dataclass(frozen=True, kw_only=True)
class ParseWarning:
    """A non-fatal finding of the parser (BuildKit's ``Warning``): rule, short text, detail, URL."""

    rule: str
    short: str
    detail: tuple[str, ...] = ()
    url: str = ""
    start_line: int = 0
    end_line: int = 0


@lazy_dataclass(frozen=True, kw_only=True)
class Document:
    """The result of parsing one Dockerfile.

    ``children`` is never empty (a file without instructions fails to parse). ``escape`` is the
    escape character in force (``\\`` or a backtick). ``lines`` are the physical lines of the
    source (no newlines, BOM removed) so that :meth:`text_of` can return any node's raw text.
    """

    children: tuple[Node, ...]
    directives: tuple[Directive, ...] = ()
    warnings: tuple[ParseWarning, ...] = ()
    escape: str = "\\"
    path: str = "Dockerfile"
    lines: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def start_line(self) -> int:
        """The first child's start line."""
        return self.children[0].start_line if self.children else 0

    @property
    def end_line(self) -> int:
        """The last child's end line."""
        return self.children[-1].end_line if self.children else 0

    def directive(self, name: str) -> Directive | None:
        """The directive called ``name`` (lower case), or None."""
        for d in self.directives:
            if d.name == name:
                return d
        return None

    def text_of(self, node: Node) -> str:
        """The raw source text of ``node``: its physical lines joined with newlines."""
        return "\n".join(self.lines[node.start_line - 1 : node.end_line])
