"""The Go-template subset behind ``--format`` (``inspect``, ``images``, ``ps``, ``history``).

What scripts and CI plugins use in practice, with Go's semantics: field paths (``{{.A.B}}``,
``{{.}}``), ``json``, ``index`` (map key or list position), ``upper``/``lower``, string and
integer constants, and the ``range``/``if`` blocks with ``else`` and ``end`` — e.g. the Jenkins
Docker plugin's ``{{range.Mounts}}{{.Destination}}\\n{{end}}``. Inside ``range`` the dot is the
element; a map is walked in key order, as Go does. ``{{-``/``-}}`` trim the adjacent white
space. Values print as Go prints them (``<no value>``, ``true``, ``map[k:v]``, ``[a b]``).
Anything else (variables, pipelines, other functions) is a one-line usage error, never a
silent mis-rendering; so is an unclosed ``{{`` or a block without its ``end``.

Invariant: rendering is a pure function of the template and the data; it reads nothing else.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lamina.errors import UsageError

# Pattern text, compiled (and cached) by ``re`` on first use: most commands never render one.
_ACTION = r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}"
_TOKEN = r'"(?:[^"\\]|\\.)*"|\S+'
_KEYWORD = r"(range|if|else|end)(?!\w)"
_HINT = (
    'supported: {{.Field}}, {{json .Field}}, {{index .Field "key"}}, upper, lower, '
    "{{range .List}}...{{end}}, {{if .Field}}...{{else}}...{{end}}"
)

#: a parsed template: text, ("expr", EXPR), or (kind, EXPR, body, else-body) for range/if
Node = str | tuple[Any, ...]


def render(template: str, data: Any) -> str:
    """``template`` applied to ``data`` (a JSON-like value); ``\\n``/``\\t`` become control
    characters, as the docker CLI does for ``--format``."""
    nodes, _end = _parse(_lex(template), 0, top=True)
    return "".join(_run(nodes, data)).replace("\\n", "\n").replace("\\t", "\t")


def _lex(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", expr)], with ``{{-``/``-}}`` trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in re.finditer(_ACTION, template, re.S):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        out.append(("text", _literal(text)))
        out.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(("text", _literal(template[pos:])))
    return out


def _literal(text: str) -> str:
    if "{{" in text:
        raise UsageError("template: unclosed action", hint="close every {{ with }}")
    return text


def _parse(tokens: list[tuple[str, str]], i: int, *, top: bool = False) -> tuple[list[Node], int]:
    """Nodes from ``tokens[i:]`` up to a block's ``else``/``end`` (returned as the stop index,
    pointing at it) or the end of input (only allowed at ``top``)."""
    nodes: list[Node] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            if value:
                nodes.append(value)
            i += 1
            continue
        keyword = re.match(_KEYWORD, value)  # Go lexes `range.Mounts` as range + .Mounts
        word = keyword.group(1) if keyword else ""
        if word in ("end", "else"):
            if top:
                raise UsageError(f"template: unexpected {{{{{word}}}}}", hint=_HINT)
            return nodes, i
        if word in ("range", "if"):
            expr = value[len(word) :].strip()
            if not expr:
                raise UsageError(f"template: missing value for {word}", hint=_HINT)
            body, j = _parse(tokens, i + 1)
            other: list[Node] = []
            if j < len(tokens) and tokens[j][1] == "else":
                other, j = _parse(tokens, j + 1)
            if j >= len(tokens) or tokens[j][1] != "end":
                raise UsageError(f"template: unexpected EOF: {{{{{word}}}}} has no {{{{end}}}}")
            nodes.append((word, expr, body, other))
            i = j + 1
            continue
        nodes.append(("expr", value))
        i += 1
    if not top:
        raise UsageError("template: unexpected EOF: a block has no {{end}}")
    return nodes, i


def _run(nodes: list[Node], dot: Any) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "expr":
            out.append(_action(node[1], dot))
        elif node[0] == "if":
            # Go's truth is Python's: false, 0, nil and empty strings, lists and maps are false
            out.extend(_run(node[2] if _value(node[1], dot) else node[3], dot))
        else:  # range
            items = _items(_value(node[1], dot))
            if not items:
                out.extend(_run(node[3], dot))
            for item in items:
                out.extend(_run(node[2], item))
    return out


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, list):
        return value
    raise UsageError(f"template: range can't iterate over {_text(value)}")


def _lookup(value: Any, path: str) -> Any:
    if path == ".":
        return value
    for part in path.lstrip(".").split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise UsageError(f"template: can't evaluate field {part}")
    return value


def _argument(token: str, dot: Any) -> Any:
    """A string or integer constant, else a field path."""
    if token.startswith('"'):
        return json.loads(token)
    if token.lstrip("-").isdigit():
        return int(token)
    if not token.startswith("."):
        raise UsageError(f"template: unsupported argument {token!r}", hint=_HINT)
    return _lookup(dot, token)


def _call(expr: str, dot: Any) -> tuple[str, list[Any]]:
    tokens = re.findall(_TOKEN, expr)
    if not tokens:
        raise UsageError("template: empty action")
    func, args = (tokens[0], tokens[1:]) if not tokens[0].startswith(".") else ("", tokens)
    return func, [_argument(a, dot) for a in args]


def _value(expr: str, dot: Any) -> Any:
    """The value of a field path or ``index`` call (what ``range`` and ``if`` test)."""
    func, values = _call(expr, dot)
    if func == "" and len(values) == 1:
        return values[0]
    if func == "index" and len(values) == 2:
        return _index(*values)
    raise UsageError(f"template: unsupported value {{{{{expr}}}}}", hint=_HINT)


def _index(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    if isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container):
        return container[key]
    raise UsageError(f"template: index of {key!r} out of range")


def _action(expr: str, dot: Any) -> str:
    func, values = _call(expr, dot)
    if func == "" and len(values) == 1:
        return _text(values[0])
    if func == "json" and len(values) == 1:
        return json.dumps(values[0], separators=(",", ":"))
    if func == "index" and len(values) == 2:
        return _text(_index(*values))
    if func in ("upper", "lower") and len(values) == 1:
        s = _text(values[0])
        return s.upper() if func == "upper" else s.lower()
    raise UsageError(f"template: unsupported action {{{{{expr}}}}}", hint=_HINT)


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)
