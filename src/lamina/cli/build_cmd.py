"""``lamina build``: flags -> :func:`lamina.ops.build.build`; progress rendering; errors.

Progress goes to stderr: ``plain`` prints BuildKit-style lines (``#5 [2/3] RUN make``, output
lines ``#5 0.123 text``, ``#5 CACHED``, ``#5 DONE 0.3s``), ``json`` one JSON object per
event, ``tty`` a live view drawn with rich (imported only then), ``auto`` = tty when stderr
is a terminal. SIGTERM is handled as Ctrl-C (running RUN containers are killed and every
mount is undone before exiting 130). ``--quiet`` shows nothing but the image id on stdout.
A failed build prints one ``Dockerfile:LINE: message`` error (with the RUN's last output
lines as the hint).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lamina.cli.main import Context
from lamina.cli.registry_cmd import authfile_option, open_registries, progress_printer, tls_option
from lamina.errors import BuildError, UsageError

pass_ctx = click.make_pass_decorator(Context)


def parse_pairs(
    values: tuple[str, ...], what: str, *, from_env: bool, unset_empty: bool = False
) -> dict[str, str]:
    """``K=V`` items as a dict. With ``from_env`` a bare ``K`` takes its value from the
    environment; when unset it is skipped (docker build), or "" with ``unset_empty`` (Kaniko)."""
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: empty name")
        if eq:
            out[key] = value
        elif from_env:
            if key in os.environ or unset_empty:
                out[key] = os.environ.get(key, "")
        else:
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
    return out


def _epoch(reproducible: bool) -> int | None:
    from lamina.cli.epoch import source_date_epoch

    epoch = source_date_epoch()
    if epoch is None and reproducible:
        return 0
    return epoch


class PlainRenderer:
    """BuildKit's ``--progress plain`` text."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __call__(self, event: Any) -> None:
        n = event.vertex
        if event.kind == "start":
            self.stream.write(f"\n#{n} {event.name}\n")
        elif event.kind == "log":
            self.stream.write(f"#{n} {event.elapsed:.3f} {event.text}\n")
        elif event.kind == "cached":
            source = f" ({event.text})" if event.text else ""
            self.stream.write(f"#{n} CACHED{source}\n")
        elif event.kind == "done":
            self.stream.write(f"#{n} DONE {event.elapsed:.1f}s\n")
        elif event.kind == "error":
            self.stream.write(f"#{n} ERROR: {event.text}\n")
        elif event.kind == "warning":
            self.stream.write(f"WARNING: {event.text}\n")
        self.stream.flush()

    def close(self) -> None:
        """Nothing to tear down."""


class JsonRenderer:
    """One JSON object per event."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __call__(self, event: Any) -> None:
        obj = {
            "kind": event.kind,
            "vertex": event.vertex,
            "name": event.name,
            "elapsed": round(event.elapsed, 6),
            "text": event.text,
            "stream": event.stream,
        }
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Nothing to tear down."""


class TtyRenderer:
    """A live view (rich): one line per vertex with its state and time, recent output."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.rows: dict[int, list[Any]] = {}
        self.logs: dict[int, list[str]] = {}
        self.warnings: list[str] = []
        self.started = time.monotonic()
        self.live = Live(console=self.console, refresh_per_second=8, transient=False)
        self.live.start()

    def _render(self) -> Any:
        from rich.text import Text

        out = Text(f"[+] Building {time.monotonic() - self.started:.1f}s\n", style="bold")
        for n, (name, state, elapsed) in sorted(self.rows.items()):
            style = {"CACHED": "cyan", "ERROR": "red", "DONE": "blue"}.get(state, "yellow")
            out.append(f" => {state:<7} ", style=style)
            out.append(f"#{n} {name}")
            out.append(f" {elapsed:.1f}s\n" if state != "CACHED" else "\n")
            if state == "RUNNING":
                for line in self.logs.get(n, [])[-5:]:
                    out.append(f"    {line}\n", style="dim")
        for w in self.warnings:
            out.append(f"WARNING: {w}\n", style="yellow")
        return out

    def __call__(self, event: Any) -> None:
        n = event.vertex
        if event.kind == "start":
            self.rows[n] = [event.name, "RUNNING", 0.0]
        elif event.kind == "log":
            self.logs.setdefault(n, []).append(event.text)
            self.rows[n][2] = event.elapsed
        elif event.kind in ("cached", "done", "error"):
            self.rows[n][1:] = [event.kind.upper(), event.elapsed]
        elif event.kind == "warning":
            self.warnings.append(event.text)
        self.live.update(self._render())

    def close(self) -> None:
        """Draw the final state and stop the live display."""
        self.live.update(self._render())
        self.live.stop()


def _renderer(mode: str, quiet: bool) -> Any:
    if quiet:
        return None
    if mode == "auto":
        mode = "tty" if sys.stderr.isatty() else "plain"
    if mode == "json":
        return JsonRenderer(sys.stderr)
    if mode == "tty":
        return TtyRenderer()
    return PlainRenderer(sys.stderr)


def _no_attestations(provenance: str | None, sbom: str | None) -> None:
    """CI scripts pass buildx's ``--provenance=false``/``--sbom=false`` to get a plain image
    manifest, which is what lamina always makes; asking for attestations is an error, not a
    silently different result."""
    for flag, value in (("--provenance", provenance), ("--sbom", sbom)):
        if value is not None and value.strip().lower() not in ("false", "0"):
            raise UsageError(
                f"{flag}={value}: lamina does not make attestation manifests",
                hint=f"drop {flag}, or pass {flag}=false",
            )


def _clear_iidfile(path: Path) -> None:
    """As buildx: an old id file goes before the build (a failed build leaves none), and a
    path that cannot be written is refused before any work rather than after it."""
    if not path.absolute().parent.is_dir():
        raise UsageError(
            f"invalid --iidfile {path}: directory {path.absolute().parent} does not exist"
        )
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise UsageError(f"invalid --iidfile {path}: {exc.strerror}") from None


@click.command()
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image (repeatable).")
@click.option("-f", "--file", "dockerfile", help="Dockerfile path (default CONTEXT/Dockerfile).")
@click.option("--build-arg", "build_args", multiple=True, help="Build-time variable K[=V].")
@click.option("--target", help="Build this stage (default: the last).")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option("--pull", is_flag=True, help="Always pull base images from their registries.")
@click.option("--platform", help="Target platform (default: this host's).")
@click.option("--label", "labels", multiple=True, help="Image label K=V (repeatable).")
@click.option("--secret", "secrets", multiple=True, help="Secret id=ID,src=PATH (repeatable).")
@click.option(
    "--ssh",
    "ssh",
    multiple=True,
    help="SSH agent: default | ID=SOCKET | ID=KEY[,KEY] (repeatable).",
)
@click.option(
    "--network",
    type=click.Choice(["host", "none", "default"]),
    default="host",
    help="Network for RUN (default host; none isolates).",
)
@click.option(
    "--isolation",
    type=click.Choice(["auto", "oci", "chroot"]),
    default="auto",
    help="RUN isolation: oci = runc/crun, chroot = the built-in namespaces runtime.",
)
@click.option(
    "--runtime",
    type=click.Choice(["runc", "crun", "native"]),
    default=None,
    help="OCI runtime for RUN (crun falls back to runc where it does not work).",
)
@click.option("--output", "-o", "outputs", multiple=True, help="type=TYPE,dest=PATH export.")
@click.option("--iidfile", type=click.Path(path_type=Path), help="Write the image id here.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "tty", "plain", "json"]),
    default="auto",
    help="Progress on stderr: tty live view, plain lines, or JSON events.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@click.option("--reproducible", is_flag=True, help="Use SOURCE_DATE_EPOCH or 0 for all times.")
@click.option("--check", is_flag=True, help="Only lint the Dockerfile.")
@click.option("--push", is_flag=True, help="Push every -t name after the build.")
@click.option("--load", is_flag=True, help="Store the image locally (buildx's flag; the default).")
@click.option("--provenance", help="buildx's attestation flag: only false is accepted.")
@click.option("--sbom", help="buildx's attestation flag: only false is accepted.")
@click.option("--creds", help="USER[:PASSWORD] for the registries pushed to.")
@click.option(
    "--cache-from",
    "cache_from",
    multiple=True,
    help="Import build cache: type=registry,ref=HOST/REPO[:TAG] (repeatable).",
)
@click.option(
    "--cache-to",
    "cache_to",
    multiple=True,
    help="Export build cache: type=registry,ref=HOST/REPO[:TAG][,mode=min|max] (repeatable).",
)
@click.option("--cache-repo", help="Registry cache HOST/REPO to import from and export to.")
@authfile_option
@tls_option
@click.argument("context")
@pass_ctx
def build(ctx: Context, /, **opts: Any) -> None:
    """Build an image from a Dockerfile and a CONTEXT: a directory, a tar file, a git URL
    (https://host/repo.git#REF:DIR, git@host:repo.git, github.com/owner/repo), or - (stdin:
    a tar, possibly compressed, or else the Dockerfile itself with an empty context)."""
    from lamina.build.cachespec import parse_cache_spec
    from lamina.build.outputs import parse_output
    from lamina.build.secrets import parse_secret
    from lamina.build.ssh import parse_ssh
    from lamina.oci.platform import Platform
    from lamina.ops.build import build as do_build

    # SIGTERM stops the build like Ctrl-C: containers are killed, mounts undone, then exit.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    _no_attestations(opts.pop("provenance"), opts.pop("sbom"))
    opts.pop("load")  # the local store is always written (unless --output says otherwise)
    if opts["iidfile"] is not None:
        _clear_iidfile(opts["iidfile"])
    renderer = _renderer(opts["progress"], opts["quiet"])
    callback: Callable[[Any], None] | None = renderer
    df_name = Path(opts["dockerfile"]).name if opts["dockerfile"] not in (None, "-") else None
    cache_from = [parse_cache_spec(c, flag="--cache-from") for c in opts["cache_from"]]
    cache_to = [parse_cache_spec(c, flag="--cache-to") for c in opts["cache_to"]]
    caches = [spec.ref.name for spec in (*cache_from, *cache_to)]
    if opts["cache_repo"]:
        caches.append(opts["cache_repo"])
    registries = _registries(opts, caches)
    try:
        result = do_build(
            ctx.store(),
            opts["context"],
            dockerfile=opts["dockerfile"],
            tags=opts["tags"],
            build_args=parse_pairs(opts["build_args"], "--build-arg", from_env=True),
            target=opts["target"],
            no_cache=opts["no_cache"],
            pull=opts["pull"],
            platform=Platform.parse(opts["platform"]) if opts["platform"] else None,
            labels=parse_pairs(opts["labels"], "--label", from_env=False),
            secrets=[parse_secret(s, os.environ) for s in opts["secrets"]],
            ssh=[parse_ssh(s, os.environ) for s in opts["ssh"]],
            network=opts["network"],
            isolation=opts["isolation"],
            runtime=opts["runtime"],
            outputs=[parse_output(o) for o in opts["outputs"]],
            epoch=_epoch(opts["reproducible"]),
            progress=callback,
            check=opts["check"],
            push=opts["push"],
            registries=registries,
            push_progress=progress_printer(opts["quiet"]),
            cache_from=cache_from,
            cache_to=cache_to,
            cache_repo=opts["cache_repo"],
        )
    except BuildError as exc:
        if exc.line:
            exc.message = f"{df_name or 'Dockerfile'}:{exc.line}: {exc.message}"
            exc.args = (exc.message,)
        raise
    finally:
        registries.close()
        if renderer is not None:
            renderer.close()
    if opts["check"]:
        if result.warnings:
            for w in result.warnings:
                click.echo(w.format(df_name or "Dockerfile"))
            raise click.exceptions.Exit(1)
        return
    image_id = str(result.image_id)
    if opts["iidfile"] is not None:
        try:
            opts["iidfile"].write_text(image_id)
        except OSError as exc:
            raise UsageError(f"writing --iidfile {opts['iidfile']}: {exc.strerror}") from None
    if opts["quiet"]:
        click.echo(image_id)
    else:
        click.echo(f"writing image {image_id} done", err=True)
        for tag in opts["tags"]:
            click.echo(f"naming to {tag} done", err=True)
    for name, digest in result.pushed:
        click.echo(f"pushed {name}@{digest}", err=True)


class _LazyRegistries:
    """The build's registries, made by the first call (the build's ``registries`` factory);
    ``close`` closes them if they were made. Loading the registry client costs ~0.15 s, which
    a build that pulls, pushes and caches nothing should not pay."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: Any = None

    def __call__(self) -> Any:
        if self._made is None:
            self._made = self._make()
        return self._made

    def close(self) -> None:
        if self._made is not None:
            self._made.close()


def _registries(opts: dict[str, Any], caches: list[str]) -> _LazyRegistries:
    """The registries ``--push``/``type=registry`` and the ``caches`` (registry repositories)
    talk to (``--creds`` for their hosts). Made now when the build will talk to a registry or
    a registry flag was given (its errors show at once), else on first use (a FROM pull)."""
    from lamina.build.outputs import parse_output, push_names

    outputs = [parse_output(o) for o in opts["outputs"]]
    names = [*push_names(outputs, opts["tags"], opts["push"]), *caches]

    def make() -> Any:
        from lamina.ops.registry import registry_name

        return open_registries(opts, [registry_name(n) for n in names])

    lazy = _LazyRegistries(make)
    flags = opts.get("authfile") or opts.get("creds") or opts.get("tls_verify") is False
    if names or flags:
        lazy()
    return lazy
