"""Output helpers for the CLI: docker-style tables, JSON, and a Go-template subset.

``--format`` accepts ``json``, ``table`` or a Go template as the docker CLI does, limited to
what scripts use in practice (:mod:`lamina.cli.gotemplate`, imported when a template is given).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from lamina.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path


def render_template(template: str, data: Any) -> str:
    """Render a Go template against ``data`` (:mod:`lamina.cli.gotemplate`)."""
    from lamina.cli.gotemplate import render

    return render(template, data)


#: column titles the docker CLI prints for ``--format 'table {{.Field}}...'``
HEADERS = {
    "ID": "ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Status": "STATUS", "State": "STATE", "Ports": "PORTS",
    "Names": "NAMES", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
    "CreatedSince": "CREATED", "Size": "SIZE", "CreatedBy": "CREATED BY", "Comment": "COMMENT",
}  # fmt: skip


def render_rows(fmt: str, rows: Sequence[dict[str, Any]], *, id_title: str = "ID") -> None:
    """``--format`` for listings (``ps``, ``images``, ``history``): ``json`` (one object per
    line), ``table TEMPLATE`` (a header of column titles, then columns aligned as the docker
    CLI's tabwriter does: at least 10 wide, 3 spaces between), or a template per row.
    ``id_title`` names the ``{{.ID}}`` column (``CONTAINER ID``, ``IMAGE ID``)."""
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not fmt.startswith("table") or fmt[5:6] not in (" ", "\t"):
        for row in rows:
            click.echo(render_template(fmt, row))
        return
    template = fmt[6:]
    titles = {k: (id_title if k == "ID" else v) for k, v in HEADERS.items()}
    header = re.sub(
        r"\{\{-?\s*(?:json\s+)?\.(\w+)\s*-?\}\}",
        lambda m: titles.get(m.group(1), m.group(1).upper()),
        template,
    )
    lines = [render_template(header, {}), *(render_template(template, row) for row in rows)]
    cells = [line.split("\t") for line in lines]
    widths: list[int] = []
    for row_cells in cells:
        for i, cell in enumerate(row_cells[:-1]):  # the last cell of a line is not padded
            if i >= len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell) + 3, 10)
    for row_cells in cells:
        padded = [c.ljust(widths[i]) for i, c in enumerate(row_cells[:-1])] + row_cells[-1:]
        click.echo("".join(padded).rstrip())


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


def check_output_path(output: Path) -> None:
    """As the docker CLI (``save -o``, ``export -o``): the file's directory must exist; it is
    never created (a typo must not make a directory tree somewhere)."""
    parent = output.absolute().parent
    if not parent.is_dir():
        raise UsageError(f"invalid output path: directory {str(parent)!r} does not exist")
    if output.is_dir():
        raise UsageError(f"invalid output path: {str(output)!r} is a directory")
