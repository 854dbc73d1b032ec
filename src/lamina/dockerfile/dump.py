"""BuildKit's AST dump format (``Node.Dump``), byte-exact with upstream ``testfiles/*/result``.

Each instruction is one line ``(keyword ["--flag" ...] "arg" ...)``; an ONBUILD trigger is
nested as ``(onbuild (run "x"))``. Strings are written with :func:`go_quote` (Go's
``strconv.Quote``). Invariant: ``dump`` output always ends with exactly one newline.
"""

from __future__ import annotations

import re

from lamina._internal.regex import LazyPattern
from lamina.dockerfile.ast import Document, Node
from lamina.dockerfile.words import trim_space

_SIMPLE = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}
_NEEDS_ESCAPE = LazyPattern(r"[^ !#-\[\]-~]")


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    simple = _SIMPLE.get(ch)
    if simple is not None:
        return simple
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    if ch.isprintable():
        return ch
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote``: double-quoted, Go escapes, printable Unicode kept raw.

    Lone surrogates ``U+DC80..U+DCFF`` (undecodable bytes under ``surrogateescape``) are
    written as ``\\xHH``, like the invalid bytes they stand for.
    """
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, s) + '"'


def dump_node(node: Node) -> str:
    """One instruction in dump form, without the surrounding parentheses."""
    parts = [node.keyword.lower()]
    if node.flags:
        parts.append(" [" + " ".join(go_quote(f) for f in node.flags) + "]")
    for arg in node.args:
        parts.append(" " + go_quote(arg))
    if node.sub is not None:
        parts.append(" (" + dump_node(node.sub) + ")")
    return trim_space("".join(parts))


def dump(document: Document) -> str:
    """The whole AST: one ``(...)`` line per instruction, each ending in a newline."""
    return "".join("(" + dump_node(child) + ")\n" for child in document.children)
