"""``push``, ``login``, ``logout``, and the registry flags ``pull`` and ``copy`` share.

The environment is read here (and only here): ``HOME``, ``DOCKER_CONFIG``,
``REGISTRY_AUTH_FILE``, ``XDG_RUNTIME_DIR`` and ``PATH`` (for credential helpers) are passed down
to :mod:`lamina.ops.registry`. Passwords are never echoed, printed or put in an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lamina.cli.main import Context
from lamina.errors import LaminaError, UsageError

if TYPE_CHECKING:
    from lamina.transports import Progress
    from lamina.transports.docker import Registries

pass_ctx = click.make_pass_decorator(Context)
F = TypeVar("F", bound=Callable[..., Any])
ENV_KEYS = ("HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "PATH")


def environment() -> dict[str, str]:
    """The part of the environment registry credentials depend on."""
    return {k: os.environ[k] for k in ENV_KEYS if k in os.environ}


def tls_option(f: F) -> F:
    """``--tls-verify[=BOOL]`` (default true)."""
    return click.option(
        "--tls-verify",
        type=click.BOOL,
        default=True,
        is_flag=False,
        flag_value=True,
        show_default=True,
        help="Require HTTPS with verified certificates (false: allow insecure registries; "
        "plain HTTP is always allowed for localhost/127.0.0.0/8).",
    )(f)


def authfile_option(f: F) -> F:
    """``--authfile PATH``."""
    return click.option(
        "--authfile",
        type=click.Path(path_type=Path),
        help="Credentials file (default: $REGISTRY_AUTH_FILE, else "
        "$DOCKER_CONFIG/config.json or ~/.docker/config.json, then podman's auth.json).",
    )(f)


def registry_options(f: F) -> F:
    """Every flag that builds the command's :class:`Registries`."""
    f = click.option(
        "--registry-mirror",
        "mirrors",
        multiple=True,
        help="Mirror to try before docker.io (repeatable).",
    )(f)
    f = click.option("--creds", help="USER[:PASSWORD] for the registries of this command.")(f)
    return tls_option(authfile_option(f))


def open_registries(
    opts: dict[str, Any], refs: Iterable[object] = (), *, strip: bool = True
) -> Registries:
    """The command's registries from its flags (popped from ``opts`` when ``strip``);
    ``--creds`` apply to the hosts of the registry references among ``refs``."""
    from lamina.ops.registry import open_registries as build
    from lamina.transports.docker import DockerRef

    get = opts.pop if strip else opts.get
    hosts = [r.host for r in refs if isinstance(r, DockerRef)]
    return build(
        environment(),
        auth_file=get("authfile", None),
        tls_verify=get("tls_verify", True),
        creds=get("creds", None),
        creds_hosts=hosts,
        mirrors=get("mirrors", ()),
    )


def _short(desc: object) -> str:
    digest = getattr(desc, "digest", "")
    return str(digest).split(":")[-1][:12]


def progress_printer(quiet: bool) -> Callable[[Progress], None] | None:
    """Docker-style lines on stderr (``abcdef123456: Pushed``) unless ``quiet``."""
    if quiet:
        return None

    def show(p: Progress) -> None:
        if p.kind != "layer" or p.state == "copying":
            return
        text = "Layer already exists" if p.state == "skipped" else "Pushed"
        click.echo(f"{_short(p.descriptor)}: {text}", err=True)

    return show


@click.command()
@registry_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the pushed digest.")
@click.argument("image")
@click.argument("dest", required=False)
@pass_ctx
def push(ctx: Context, /, quiet: bool, image: str, dest: str | None, **opts: Any) -> None:
    """Push IMAGE from the store to DEST (default: IMAGE's own name in its registry).

    DEST without a transport prefix is a registry name; docker://, oci:, oci-archive: and
    docker-archive: destinations work too.
    """
    from lamina.ops.registry import push as do_push
    from lamina.ops.registry import registry_name

    targets = [registry_name(dest)] if dest else [registry_name(image)]
    with open_registries(opts, targets) as registries:
        dst, desc = do_push(
            ctx.store(), image, dest, registries=registries, progress=progress_printer(quiet)
        )
    if quiet:
        click.echo(str(desc.digest))
        return
    tag = getattr(getattr(dst, "reference", None), "tag", None) or str(dst)
    click.echo(f"{tag}: digest: {desc.digest} size: {desc.size}")


def _read_password(password: str | None, password_stdin: bool) -> str:
    if password_stdin:
        if password is not None:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        return sys.stdin.readline().rstrip("\r\n")
    if password is not None:
        click.echo(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True
        )
        return password
    if not sys.stdin.isatty():
        raise UsageError("no password given", hint="use --password-stdin or run on a terminal")
    return str(click.prompt("Password", hide_input=True, err=True))


@click.command()
@click.option("-u", "--username", help="User name.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@authfile_option
@tls_option
@click.argument("registry", required=False, default="docker.io")
def login(
    username: str | None,
    password: str | None,
    password_stdin: bool,
    authfile: Path | None,
    tls_verify: bool,
    registry: str,
) -> None:
    """Log in to REGISTRY (default docker.io) and store the credentials."""
    from lamina.ops.registry import login as do_login

    if username is None:
        if password_stdin or not sys.stdin.isatty():
            raise UsageError("no username given", hint="use -u USER")
        username = str(click.prompt("Username", err=True))
    secret = _read_password(password, password_stdin)
    try:
        do_login(
            registry,
            username,
            secret,
            env=environment(),
            auth_file=authfile,
            tls_verify=tls_verify,
        )
    except LaminaError as exc:
        if len(secret) >= 4 and secret in exc.message:  # defence in depth: never show the password
            exc.message = exc.message.replace(secret, "***")
        raise
    click.echo("Login Succeeded")


@click.command()
@authfile_option
@click.argument("registry", required=False, default="docker.io")
def logout(authfile: Path | None, registry: str) -> None:
    """Remove the stored credentials for REGISTRY (default docker.io)."""
    from lamina.ops.registry import logout as do_logout

    if do_logout(registry, env=environment(), auth_file=authfile):
        click.echo(f"Removed login credentials for {registry}")
    else:
        click.echo(f"Not logged in to {registry}")
