"""``load``, ``save``, ``import``, ``export``, ``pull``, ``copy``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from lamina.cli.epoch import source_date_epoch
from lamina.cli.main import Context
from lamina.cli.output import check_output_path
from lamina.cli.registry_cmd import open_registries, registry_options
from lamina.errors import UsageError

pass_ctx = click.make_pass_decorator(Context)


def _platform(text: str | None) -> object:
    if text is None:
        return None
    from lamina.oci.platform import Platform

    return Platform.parse(text)


@click.command()
@click.option(
    "-i",
    "--input",
    "input_",
    type=click.Path(path_type=Path),
    help="Archive to read (docker-archive or oci-archive, detected; default: stdin).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@pass_ctx
def load(ctx: Context, input_: Path | None, quiet: bool) -> None:
    """Load images from an archive into the store (from stdin without -i, as docker load)."""
    from lamina.ops.archive import load as do_load

    store = ctx.store()
    with contextlib.ExitStack() as stack:
        if input_ is None or str(input_) == "-":
            input_ = stack.enter_context(_spooled_stdin(store.root / "tmp"))
        for name in do_load(store, input_):
            if not quiet:
                label = "Loaded image ID" if name.startswith("sha256:") else "Loaded image"
                click.echo(f"{label}: {name}")


@contextlib.contextmanager
def _spooled_stdin(tmp_root: Path) -> Iterator[Path]:
    """stdin copied (1 MiB at a time) to a private file in the store's tmp: loading indexes
    the archive, so it needs a file it can seek in. Removed afterwards."""
    import sys
    import tempfile

    from lamina.ops.archive import spool_stdin

    if sys.stdin.isatty():
        raise UsageError(
            "requested load from stdin, but stdin is a terminal", hint="use -i FILE or a pipe"
        )
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="load-") as tmp:
        path = spool_stdin(Path(tmp))
        if path.stat().st_size == 0:
            raise UsageError("requested load from stdin, but stdin is empty")
        yield path


@click.command()
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Archive file (default: stdout)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker-archive", "oci-archive"]),
    default="docker-archive",
    show_default=True,
)
@click.argument("refs", nargs=-1, required=True)
@pass_ctx
def save(ctx: Context, output: Path | None, fmt: str, refs: tuple[str, ...]) -> None:
    """Save an image of the store to an archive (to stdout without -o, as docker save)."""
    import sys

    from lamina.ops.archive import save as do_save

    if output is not None:
        check_output_path(output)
        do_save(ctx.store(), list(refs), output, fmt=fmt)
        return
    if sys.stdout.isatty():
        raise UsageError("refusing to write an archive to a terminal", hint="use -o FILE or a pipe")
    import shutil
    import tempfile

    store = ctx.store()
    (store.root / "tmp").mkdir(parents=True, exist_ok=True)
    # the archive writers need a path (they seek back to finish headers): stage it in the
    # store's tmp, then stream it out in 1 MiB pieces
    with tempfile.TemporaryDirectory(dir=store.root / "tmp", prefix="save-") as tmp:
        staged = Path(tmp) / "archive.tar"
        do_save(store, list(refs), staged, fmt=fmt)
        with staged.open("rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()


@click.command(name="import")
@click.option(
    "-c",
    "--change",
    "changes",
    multiple=True,
    help="Dockerfile instruction to apply (CMD, ENV, ENTRYPOINT, ...).",
)
@click.option("-m", "--message", help="Commit message for the history entry.")
@click.option("--platform", help="Platform of the image (default: this host's).")
@click.argument("source")
@click.argument("ref", required=False)
@pass_ctx
def import_(
    ctx: Context,
    changes: tuple[str, ...],
    message: str | None,
    platform: str | None,
    source: str,
    ref: str | None,
) -> None:
    """Create an image from a rootfs tarball (SOURCE is a file or - for stdin)."""
    from lamina.oci.platform import Platform
    from lamina.ops.archive import import_rootfs

    image_id = import_rootfs(
        ctx.store(),
        source,
        ref,
        changes=changes,
        message=message,
        epoch=source_date_epoch(),
        platform=Platform.parse(platform) if platform else None,
    )
    click.echo(image_id)


@click.command()
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write to a file instead of stdout."
)
@click.argument("ref")
@pass_ctx
def export(ctx: Context, output: Path | None, ref: str) -> None:
    """Export a container's filesystem (as docker export), or else an image's flattened
    filesystem, as a tar archive. A name that is both means the container."""
    import sys

    from lamina.errors import NotFound
    from lamina.ops.archive import export as do_export

    if output is None and sys.stdout.isatty():
        raise UsageError("refusing to write a tar to a terminal", hint="use -o FILE or a pipe")
    if output is not None:
        check_output_path(output)
    store = ctx.store()
    try:
        cid = store.containers.resolve(ref)
    except NotFound:
        do_export(store, ref, output, epoch=source_date_epoch())
        return
    from lamina.ops.container_fs import export_to

    export_to(store, cid, output, epoch=source_date_epoch())


@click.command()
@click.option("--name", help="Name to give the image in the store.")
@click.option("--platform", help="Platform to pick from a multi-platform index.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@registry_options
@click.argument("source")
@pass_ctx
def pull(
    ctx: Context, /, name: str | None, platform: str | None, quiet: bool, source: str, **opts: Any
) -> None:
    """Pull an image into the store: a registry NAME (as docker pull), or a transport
    reference (docker://, oci:, oci-archive:, docker-archive:)."""
    from lamina.oci.platform import Platform
    from lamina.ops.archive import pull as do_pull
    from lamina.ops.registry import registry_name

    with open_registries(opts, [registry_name(source)]) as registries:
        got = do_pull(
            ctx.store(),
            source,
            name=name,
            platform=Platform.parse(platform) if platform else None,
            registries=registries,
        )
    if not quiet:
        click.echo(got)


@click.command()
@click.option("--platform", help="Platform to pick when the destination holds one image.")
@registry_options
@click.argument("source")
@click.argument("dest")
@pass_ctx
def copy(ctx: Context, /, platform: str | None, source: str, dest: str, **opts: Any) -> None:
    """Copy an image between transports (a bare name is the local store)."""
    from lamina import transports
    from lamina.oci.platform import Platform
    from lamina.ops.archive import copy as do_copy

    refs = [transports.parse(source), transports.parse(dest)]
    with open_registries(opts, refs) as registries:
        desc = do_copy(
            ctx.store(),
            source,
            dest,
            platform=Platform.parse(platform) if platform else None,
            registries=registries,
        )
    click.echo(str(desc.digest))
