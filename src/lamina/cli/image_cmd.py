"""``images``, ``tag``, ``rmi``, ``inspect``, ``history``."""

from __future__ import annotations

import click

from lamina.cli.main import Context
from lamina.cli.output import emit, human_ago, human_size, render_rows, table
from lamina.errors import LaminaError, NotFound

pass_ctx = click.make_pass_decorator(Context)


def _created_ts(created: str | None) -> float | None:
    if not created:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Every image (builds keep no intermediate images: the same list).")  # fmt: skip
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
@click.option("--format", "fmt", help="json, table, or a Go template.")
@click.option("-f", "--filter", "filters", multiple=True, help="KEY=VALUE: dangling, reference.")
@click.argument("repository", required=False)
@pass_ctx
def images(
    ctx: Context, quiet: bool, all_: bool, no_trunc: bool, digests: bool, fmt: str | None,
    filters: tuple[str, ...], repository: str | None,
) -> None:  # fmt: skip
    """List images in the store (only REPOSITORY[:TAG] when given)."""
    from lamina.ops.image import list_images

    rows = list_images(ctx.catalog())
    if filters:
        from lamina.cli import filters as flt

        wanted = flt.parse(filters, flt.IMAGE_KEYS)
        rows = [r for r in rows if flt.image_matches(wanted, r.repository, r.tag)]
    if repository:  # as Docker: every tag of the repository, or just the tag given
        from lamina import reference

        ref = reference.parse(repository, default_tag=False)
        repo, tag = ref.familiar_name(), ref.tag
        rows = [r for r in rows if r.repository == repo and tag in (None, r.tag)]

    def short(digest: str) -> str:
        return digest if no_trunc else digest.removeprefix("sha256:")[:12]

    if quiet:
        seen: list[str] = []
        for r in rows:
            if short(r.id) not in seen:
                seen.append(short(r.id))
        click.echo("\n".join(seen)) if seen else None
        return
    if fmt and fmt != "table":
        items = []
        for r in rows:
            ts = _created_ts(r.created)
            items.append({
                "Repository": r.repository, "Tag": r.tag, "ID": short(r.id), "Digest": r.digest,
                "CreatedAt": r.created or "",
                "CreatedSince": human_ago(ts) if ts is not None else "N/A",
                "Size": human_size(r.size),
            })  # fmt: skip
        render_rows(fmt, items, id_title="IMAGE ID")
        return
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED", "SIZE"]
    out = []
    for r in rows:
        ts = _created_ts(r.created)
        out.append(
            [
                r.repository,
                r.tag,
                *([r.digest] if digests else []),
                short(r.id),
                human_ago(ts) if ts is not None else "N/A",
                human_size(r.size),
            ]
        )
    table(headers, out)


@click.command()
@click.argument("source")
@click.argument("target")
@pass_ctx
def tag(ctx: Context, source: str, target: str) -> None:
    """Add the name TARGET to the image SOURCE."""
    from lamina.ops.image import tag as do_tag

    do_tag(ctx.store(), source, target)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove an image that has several names.")
@click.argument("refs", nargs=-1, required=True)
@pass_ctx
def rmi(ctx: Context, force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    from lamina.ops.image import familiar, remove

    failed: LaminaError | None = None
    for ref in refs:
        try:
            for kind, what in remove(ctx.store(), [ref], force=force):
                click.echo(f"{kind}: {familiar(what) if kind == 'Untagged' else what}")
        except LaminaError as exc:
            click.echo(f"lamina: error: {exc}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            failed = exc
    if failed is not None:
        raise SystemExit(1)


@click.command()
@click.option("-f", "--format", "fmt", help="json (default) or a Go template.")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["container", "image"]),
    default=None,
    help="What to inspect (default: a container if one has that name, else an image).",
)
@click.argument("refs", nargs=-1, required=True)
@pass_ctx
def inspect(ctx: Context, fmt: str | None, kind: str | None, refs: tuple[str, ...]) -> None:
    """Show low-level information on containers and images, as JSON."""
    _inspect(ctx, fmt, kind, refs)


@click.command(name="inspect")
@click.option("-f", "--format", "fmt", help="json (default) or a Go template.")
@click.argument("refs", nargs=-1, required=True)
@pass_ctx
def image_inspect(ctx: Context, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Show low-level information on images, as JSON."""
    _inspect(ctx, fmt, "image", refs)


def _inspect(ctx: Context, fmt: str | None, kind: str | None, refs: tuple[str, ...]) -> None:
    from lamina.ops.image import inspect_image

    found, missing = [], []
    for ref in refs:
        if kind in (None, "container"):
            from lamina.cli.container_info_cmd import inspect_containers

            docs, _ = inspect_containers(ctx, (ref,))
            if docs:
                found.extend(docs)
                continue
            if kind == "container":
                missing.append(ref)
                continue
        try:
            found.append(inspect_image(ctx.store(), ref))
        except NotFound:
            missing.append(ref)
    if found or fmt in (None, "json"):
        emit(found, fmt)
    if missing:
        what = {"container": "container", "image": "image"}.get(kind or "", "object")
        raise NotFound(f"no such {what}: {', '.join(missing)}")


@click.command()
@click.option("-H", "--human/--no-human", default=True, help="Human-readable sizes and dates.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the CREATED BY column.")
@click.option("--format", "fmt", help="json or a Go template.")
@click.argument("ref")
@pass_ctx
def history(ctx: Context, human: bool, no_trunc: bool, fmt: str | None, ref: str) -> None:
    """Show the history of an image, newest first."""
    from lamina.ops.image import history as get_history

    items = []  # Docker's history fields, plus the raw Created/Id this command always gave
    for r in get_history(ctx.store(), ref):
        ts = _created_ts(r["Created"])
        image_id = r.get("Id", "<missing>")
        if image_id != "<missing>" and not no_trunc:
            image_id = image_id.removeprefix("sha256:")[:12]
        items.append({
            **r, "ID": image_id, "CreatedAt": r["Created"],
            "CreatedSince": human_ago(ts) if ts is not None else "N/A",
            "Size": human_size(r["Size"]) if human else r["Size"],
        })  # fmt: skip
    if fmt and fmt != "table":
        render_rows(fmt, items, id_title="IMAGE")
        return
    out = []
    for i in items:
        created_by = i["CreatedBy"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        when = i["CreatedSince"] if human or i["CreatedSince"] == "N/A" else i["CreatedAt"]
        out.append([i["ID"], when, created_by, str(i["Size"]), i["Comment"]])
    table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], out)
