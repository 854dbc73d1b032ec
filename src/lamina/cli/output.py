"""Output helpers for the CLI: docker-style tables, JSON, and a Go-template subset.

``--format`` accepts ``json``, ``table`` or a Go template as the docker CLI does, limited to
what scripts use in practice: ``{{.A.B}}``, ``{{json .A}}``, ``{{index .A "k"}}``,
``{{upper .A}}``/``{{lower .A}}`` and literal text. Anything else is a one-line usage error.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import click

from lamina.errors import UsageError

# Pattern text, compiled (and cached) by ``re`` on first use: most commands never render a
# template, so start-up does not pay for compiling these.
_ACTION = r"\{\{-?\s*(.*?)\s*-?\}\}"
_TOKEN = r'"(?:[^"\\]|\\.)*"|\S+'


def _lookup(value: Any, path: str) -> Any:
    if path == ".":
        return value
    for part in path.lstrip(".").split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise UsageError(f"template: can't evaluate field {part}")
    return value


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


def _argument(token: str, data: Any) -> Any:
    """A string or integer constant, else a field path."""
    if token.startswith('"'):
        return json.loads(token)
    if token.lstrip("-").isdigit():
        return int(token)
    return _lookup(data, token)


def _eval(expr: str, data: Any) -> str:
    tokens = re.findall(_TOKEN, expr)
    if not tokens:
        raise UsageError("template: empty action")
    func, args = (tokens[0], tokens[1:]) if not tokens[0].startswith(".") else ("", tokens)
    values = [_argument(a, data) for a in args]
    if func == "" and len(values) == 1:
        return _text(values[0])
    if func == "json" and len(values) == 1:
        return json.dumps(values[0], separators=(",", ":"))
    if func == "index" and len(values) == 2:
        container, key = values
        if isinstance(container, dict):
            return _text(container.get(key))
        if isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container):
            return _text(container[key])
        raise UsageError(f"template: index of {key!r} out of range")
    if func in ("upper", "lower") and len(values) == 1:
        s = _text(values[0])
        return s.upper() if func == "upper" else s.lower()
    raise UsageError(
        f"template: unsupported action {{{{{expr}}}}}",
        hint='supported: {{.Field}}, {{json .Field}}, {{index .Field "key"}}, upper, lower',
    )


def _literal(text: str) -> str:
    """Text between actions; a ``{{`` here has no ``}}``: Go's "unclosed action"."""
    if "{{" in text:
        raise UsageError("template: unclosed action", hint="close every {{ with }}")
    return text


def render_template(template: str, data: Any) -> str:
    """Render a Go-template subset against ``data`` (a JSON-like dict)."""
    out: list[str] = []
    pos = 0
    for m in re.finditer(_ACTION, template, re.S):
        out.append(_literal(template[pos : m.start()]))
        out.append(_eval(m.group(1), data))
        pos = m.end()
    out.append(_literal(template[pos:]))
    return "".join(out).replace("\\n", "\n").replace("\\t", "\t")


def emit(items: Sequence[dict[str, Any]], fmt: str | None, *, as_list: bool = True) -> None:
    """Print ``items`` as docker does for inspect: a JSON array, or one template line each."""
    if fmt in (None, "", "json"):
        click.echo(json.dumps(list(items) if as_list else items[0], indent=4))
        return
    for item in items:
        click.echo(render_template(fmt, item))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A docker-style table: columns padded with three spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [list(headers), *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        click.echo("   ".join(cells).rstrip())


def human_size(n: int) -> str:
    """Docker's size units (decimal: kB, MB, GB)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{n}B"


def human_ago(ts: float, now: float | None = None) -> str:
    """``2 hours ago``-style ages as `docker images` shows them."""
    delta = max(0.0, (time.time() if now is None else now) - ts)
    for unit, secs in (
        ("year", 31536000),
        ("month", 2592000),
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if delta >= secs:
            n = int(delta // secs)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago" if delta < 1 else f"{int(delta)} seconds ago"
