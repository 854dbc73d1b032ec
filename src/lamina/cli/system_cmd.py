"""``system df``, ``system prune``, ``system check``."""

from __future__ import annotations

import json

import click

from lamina.cli.main import Context
from lamina.cli.output import human_size, table

pass_ctx = click.make_pass_decorator(Context)


@click.group()
def system() -> None:
    """Manage the store."""


@system.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def df(ctx: Context, fmt: str) -> None:
    """Show disk usage of the store."""
    from lamina.ops.system import disk_usage

    usage = disk_usage(ctx.store())
    if fmt == "json":
        click.echo(json.dumps(usage, indent=2, sort_keys=True))
        return
    rows = [
        [k, human_size(v) if not k.endswith("count") else str(v)] for k, v in sorted(usage.items())
    ]
    table(["WHAT", "SIZE"], rows)


@system.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def prune(ctx: Context, force: bool) -> None:
    """Remove unnamed images, unused layers and blobs, and leftovers of interrupted commands."""
    from lamina.ops.system import prune as do_prune

    if not force and not click.confirm(
        "This removes all images without names and all unused layers. Continue?", default=False
    ):
        return
    ids, freed = do_prune(ctx.store())
    for image_id in ids:
        click.echo(f"Deleted: {image_id}")
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@system.command()
@click.option("--repair", is_flag=True, help="Remove leftovers of interrupted commands first.")
@pass_ctx
def check(ctx: Context, repair: bool) -> None:
    """Verify every blob, layer and image in the store (exit 1 on any inconsistency).

    Items ``system prune`` would reclaim are listed on stderr and do not fail the check.
    """
    from lamina.ops.system import check as do_check

    problems, reclaimable = do_check(ctx.store(), repair=repair)
    for item in reclaimable:
        click.echo(f"reclaimable: {item}", err=True)
    for p in problems:
        click.echo(p)
    if problems:
        raise SystemExit(1)
    click.echo("store ok")
