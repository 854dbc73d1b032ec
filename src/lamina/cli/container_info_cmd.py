"""``ps``, ``logs``, ``top``, ``diff``, ``commit``, ``cp``, ``mount``, the container-only
``container export`` and ``container inspect`` (the ``container`` group itself is a lazy table
in :mod:`lamina.cli.main`), plus :func:`inspect_containers` for ``inspect``."""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any

import click

from lamina.cli.container_cmd import docker_exit, pass_ctx
from lamina.cli.main import Context
from lamina.cli.output import emit, human_ago, render_rows, table
from lamina.errors import UsageError


def _ts(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0


def _duration(seconds: float) -> str:
    return human_ago(seconds).removesuffix(" ago")


def status_text(state: dict[str, Any]) -> str:
    """Docker's STATUS column: ``Up 5 seconds``, ``Exited (0) 2 minutes ago``, ``Created``."""
    status = state.get("Status")
    if status == "running":
        return f"Up {_duration(_ts(str(state.get('StartedAt', ''))))}"
    if status == "exited":
        return f"Exited ({state.get('ExitCode', 0)}) {human_ago(_ts(state['FinishedAt']))}"
    return str(status).capitalize()


def _command_text(config: dict[str, Any], trunc: bool) -> str:
    text = " ".join([str(config.get("Path", "")), *map(str, config.get("Args") or [])])
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return json.dumps(text, ensure_ascii=False)


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers.")
@click.option("-q", "--quiet", is_flag=True, help="Only show ids.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", help="table, json, or a Go template.")
@click.option("-f", "--filter", "filters", multiple=True,
              help="KEY=VALUE: id, name, label, status, exited, ancestor.")  # fmt: skip
@click.option("-n", "--last", type=int, default=None, help="The last N containers (any state).")
@click.option("-l", "--latest", is_flag=True, help="The latest container (any state).")
@pass_ctx
def ps(
    ctx: Context, all_: bool, quiet: bool, no_trunc: bool, fmt: str | None,
    filters: tuple[str, ...], last: int | None, latest: bool,
) -> None:  # fmt: skip
    """List containers."""
    from lamina.cli import filters as flt
    from lamina.ops.container import list_ids

    wanted = flt.parse(filters, flt.PS_KEYS)
    if latest:
        last = 1
    every = all_ or flt.lists_stopped(wanted) or last is not None
    items = [i for i in list_ids(ctx.store(), all_=every) if flt.container_matches(wanted, *i)]
    if last is not None and last >= 0:  # newest first already; Docker: -n -1 means all
        items = items[:last]

    def short(cid: str) -> str:
        return cid if no_trunc else cid[:12]

    if quiet:
        for cid, _c, _s in items:
            click.echo(short(cid))
        return
    rows = []
    for cid, config, state in items:
        rows.append({
            "ID": short(cid), "Image": config["Config"].get("Image", ""),
            "Command": _command_text(config, not no_trunc),
            "CreatedAt": config.get("Created", ""),
            "RunningFor": human_ago(_ts(str(config.get("Created", "")))),
            "Status": status_text(state), "State": state.get("Status", ""), "Ports": "",
            "Names": str(config.get("Name", "")).removeprefix("/"),
        })  # fmt: skip
    if fmt and fmt != "table":
        render_rows(fmt, rows, id_title="CONTAINER ID")
        return
    keys = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")
    headers = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
    table(headers, [[str(r[k]) for k in keys] for r in rows])


def _tail_lines(tail: str) -> int | None:
    """``--tail``: a line count, or None for all ("all", or a negative count, as Docker)."""
    if tail == "all":
        return None
    try:
        n = int(tail)
    except ValueError:
        raise UsageError(
            f"invalid --tail value {tail!r}", hint='give a number of lines or "all"'
        ) from None
    return None if n < 0 else n


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Lines from the end (default all).")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--since", help="Only entries since this time (RFC 3339, Unix time or 10m).")
@click.option("--until", help="Only entries before this time (RFC 3339, Unix time or 10m).")
@click.argument("container")
@pass_ctx
def logs(
    ctx: Context, follow: bool, tail: str, timestamps: bool, since: str | None,
    until: str | None, container: str,
) -> None:  # fmt: skip
    """Show a container's output."""
    from lamina.ops.container_exec import iter_logs, log_time

    n = _tail_lines(tail)
    after = log_time(since) if since else None
    before = log_time(until) if until else None
    entries = iter_logs(ctx.store(), container, follow=follow, tail=n, since=after, until=before)
    for entry in entries:
        text = str(entry.get("log", ""))
        if timestamps:
            text = f"{entry.get('time', '')} {text}"
        out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
        out.write(text)
        out.flush()


@click.command(context_settings={"allow_interspersed_args": False})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def top(ctx: Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Show the processes of a running container (``ps`` options may follow)."""
    from lamina.ops.container_exec import top as top_op

    titles, rows = top_op(ctx.store(), container, ps_args)
    table(titles, [r + [""] * (len(titles) - len(r)) for r in rows])


@click.command()
@click.argument("container")
@pass_ctx
def diff(ctx: Context, container: str) -> None:
    """Show changed files in a container's filesystem (sorted)."""
    from lamina.ops.container_fs import diff as diff_op

    for change in diff_op(ctx.store(), container):
        click.echo(str(change))


def _epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else None


@click.command()
@click.option("-c", "--change", "changes", multiple=True, help="Dockerfile instruction to apply.")
@click.option("-m", "--message", help="Commit message.")
@click.option("-a", "--author", help="Author.")
@click.option("-p", "--pause/--no-pause", default=True, help="Accepted for compatibility.")
@click.argument("container")
@click.argument("reference", required=False)
@pass_ctx
def commit(ctx: Context, changes: tuple[str, ...], message: str | None, author: str | None,
           pause: bool, container: str, reference: str | None) -> None:  # fmt: skip
    """Create a new image from a container's changes; print its id."""
    from lamina.ops.container_fs import commit as commit_op

    click.echo(commit_op(ctx.store(), container, reference, changes=changes, message=message,
                         author=author, epoch=_epoch()))  # fmt: skip


@click.command()
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.argument("src")
@click.argument("dest")
@pass_ctx
def cp(ctx: Context, follow_link: bool, src: str, dest: str) -> None:
    """Copy files between a container and the host (CONTAINER:PATH on one side).

    A SRC of '-' extracts a tar read from stdin into a container directory; a DEST of '-'
    writes a tar of the container path to stdout (use ./- for a host file named '-').
    -L copies what a symlink SRC points to (inside the container for a container SRC), under
    SRC's name. Every failure exits 1, as ``docker cp``.
    """
    from lamina.errors import ContainerError
    from lamina.ops.container_cp import cp as cp_op

    stdout = sys.stdout.buffer if dest == "-" else None
    stdin = sys.stdin.buffer if src == "-" else None
    try:
        cp_op(ctx.store(), src, dest, stdin=stdin, stdout=stdout, follow_link=follow_link)
    except ContainerError as exc:
        exc.exit_code = 1  # not a runtime failure (125): docker cp exits 1
        raise
    if stdout is not None:
        stdout.flush()


@click.command()
@click.argument("container")
@pass_ctx
def mount(ctx: Context, container: str) -> None:
    """Mount a container's rootfs and print its MergedDir."""
    from lamina.ops.container_fs import mount as mount_op

    click.echo(str(mount_op(ctx.store(), container)))


@click.command(name="export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
@click.argument("container")
@pass_ctx
def container_export(ctx: Context, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    from pathlib import Path

    from lamina.cli.output import check_output_path
    from lamina.ops.container_fs import export_to

    if output is not None:
        check_output_path(Path(output))
    export_to(ctx.store(), container, Path(output) if output else None, epoch=_epoch())


def inspect_containers(ctx: Context, refs: tuple[str, ...]) -> tuple[list[dict[str, Any]],
                                                                      list[str]]:  # fmt: skip
    """(inspect documents, refs that name no container)."""
    from lamina.errors import NotFound
    from lamina.ops.container_fs import inspect as inspect_op

    found, missing = [], []
    for ref in refs:
        try:
            found.append(inspect_op(ctx.store(), ref))
        except NotFound:
            missing.append(ref)
    return found, missing


@click.command(name="inspect")
@click.option("-f", "--format", "fmt", help="json or a Go template.")
@click.argument("containers", nargs=-1, required=True)
@pass_ctx
@docker_exit
def container_inspect(ctx: Context, fmt: str | None, containers: tuple[str, ...]) -> None:
    """Show low-level information on containers."""
    from lamina.errors import NotFound

    found, missing = inspect_containers(ctx, containers)
    if found or fmt in (None, "json"):
        emit(found, fmt)
    if missing:
        raise NotFound(f"no such container: {', '.join(missing)}")
