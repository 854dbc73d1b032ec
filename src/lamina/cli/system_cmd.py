"""``system df``, ``system prune``, ``system check``, the ``prune`` verbs of ``container`` and
``image``, and ``version``."""

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
@click.option("-a", "--all", "all_unused", is_flag=True, help="Every image no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--volumes", is_flag=True, help="Accepted: lamina makes no volumes.")
@pass_ctx
def prune(ctx: Context, all_unused: bool, force: bool, volumes: bool) -> None:
    """Remove stopped containers, unnamed images (-a: every image) no container uses, unused
    layers and blobs, and leftovers of interrupted commands."""
    from lamina.ops.system import prune as do_prune

    if not _confirm(force, "all stopped containers", _images_what(all_unused), "unused layers"):
        return
    containers, images, freed = do_prune(ctx.store(), all_unused=all_unused)
    _report(containers, images, freed)


def _images_what(all_unused: bool) -> str:
    return "all images without at least one container" if all_unused else "all dangling images"


def _confirm(force: bool, *what: str) -> bool:
    if force:
        return True
    items = "".join(f"\n  - {w}" for w in what)
    return click.confirm(f"WARNING! This will remove:{items}\nAre you sure you want to continue?")


def _report(containers: list[str], images: list[str], freed: int) -> None:
    """Docker's prune output: deleted ids by kind, then the space reclaimed."""
    if containers:
        click.echo("Deleted Containers:\n" + "\n".join(containers) + "\n")
    if images:
        click.echo("Deleted Images:\n" + "\n".join(f"deleted: {i}" for i in images) + "\n")
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@click.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def container_prune(ctx: Context, force: bool) -> None:
    """Remove all stopped containers."""
    from lamina.ops.system import prune_containers

    if not _confirm(force, "all stopped containers"):
        return
    ids, freed = prune_containers(ctx.store())
    _report(ids, [], freed)


@click.command(name="prune")
@click.option("-a", "--all", "all_unused", is_flag=True, help="Every image no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def image_prune(ctx: Context, all_unused: bool, force: bool) -> None:
    """Remove images without names (-a: every image) that no container uses."""
    from lamina.ops.system import prune_images

    if not _confirm(force, _images_what(all_unused)):
        return
    ids, freed = prune_images(ctx.store(), all_unused=all_unused)
    _report([], ids, freed)


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


@click.command()
@click.option("-f", "--format", "fmt", help="json or a Go template ({{.Client.Version}}, ...).")
@pass_ctx
def version(ctx: Context, fmt: str | None) -> None:
    """Show version information, in ``docker version``'s shape.

    There is no daemon: ``Server`` describes the store this command would use, so scripts that
    check ``{{.Server.Version}}`` to see whether the engine is reachable get an answer."""
    import platform

    from lamina import __version__
    from lamina.oci.platform import Platform

    arch = Platform.host().architecture
    client = {"Platform": {"Name": "lamina"}, "Version": __version__, "Os": "linux",
              "Arch": arch, "PythonVersion": platform.python_version()}  # fmt: skip
    server = {"Platform": {"Name": "lamina (daemonless)"}, "Version": __version__,
              "Os": "linux", "Arch": arch, "KernelVersion": platform.release(),
              "Root": str(ctx.root)}  # fmt: skip
    info = {"Client": client, "Server": server}
    if fmt == "json":
        click.echo(json.dumps(info))
        return
    if fmt:
        from lamina.cli.output import render_template

        click.echo(render_template(fmt, info))
        return
    click.echo(f"Client:\n Version:        {__version__}\n Python version: "
               f"{client['PythonVersion']}\n OS/Arch:        linux/{arch}\n")  # fmt: skip
    click.echo(f"Server: lamina (daemonless)\n Version:        {__version__}\n Kernel:         "
               f"{server['KernelVersion']}\n Root:           {ctx.root}")  # fmt: skip
