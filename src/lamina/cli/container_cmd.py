"""``run``, ``create``, ``start``, ``exec``, ``stop``, ``kill``, ``wait``, ``rm``, ``rename``.

Exit codes as Docker: ``run``/``exec``/``start -a`` pass the container's status through;
lamina's own failures are 125 (:func:`docker_exit`), a command that does not exist 127, one
that cannot be executed 126. Environment variables named without a value (``-e NAME``) are
taken from lamina's environment here, in the CLI (library code never reads it).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lamina.cli.main import Context
from lamina.errors import LaminaError, UsageError

pass_ctx = click.make_pass_decorator(Context)
F = TypeVar("F", bound=Callable[..., Any])
_NO_INTERSPERSE = {"allow_interspersed_args": False}


def docker_exit(func: F) -> F:
    """Map lamina's errors to exit status 125 (126/127 and explicit codes are kept)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LaminaError as exc:
            if exc.exit_code not in (126, 127) and "exit_code" not in vars(exc):
                exc.exit_code = 125
            raise

    return wrapper  # type: ignore[return-value]


def _env(items: tuple[str, ...], files: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for path in files:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"reading env file {path}: {exc.strerror}") from None
        out.extend(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
    out.extend(items)
    resolved = []
    for item in out:
        if "=" in item:
            resolved.append(item)
        elif item in os.environ:
            resolved.append(f"{item}={os.environ[item]}")
    return tuple(resolved)


def _run_options(f: F) -> F:
    opts = [
        click.option("--name", help="Assign a name to the container."),
        click.option("-e", "--env", "env", multiple=True, help="Set environment variables."),
        click.option("--env-file", multiple=True, help="Read environment variables from a file."),
        click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount SRC:DST[:ro]."),
        click.option(
            "--volumes-from", multiple=True, help="Mount the volumes of a container (CTR[:ro|:rw])."
        ),
        click.option("--tmpfs", multiple=True, help="Mount a tmpfs (PATH[:OPTS])."),
        click.option("-w", "--workdir", help="Working directory inside the container."),
        click.option("-u", "--user", help="USER[:GROUP] to run as."),
        click.option("--entrypoint", help="Override the image's ENTRYPOINT."),
        click.option("-h", "--hostname", help="Container host name."),
        click.option("--network", "--net", default="none", help="none or host."),
        click.option("--read-only", is_flag=True, help="Mount the rootfs read-only."),
        click.option(
            "--init", is_flag=True, help="Run tini as PID 1: it forwards signals and reaps zombies."
        ),
        click.option("--rm", "auto_remove", is_flag=True, help="Remove the container on exit."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open."),
        click.option("-l", "--label", "labels", multiple=True, help="Set metadata (K=V)."),
        click.option("--runtime", help="crun, runc or native (default: the first that works)."),
        click.option("--add-host", "add_hosts", multiple=True, help="Add NAME:IP to /etc/hosts."),
        click.option("--dns", multiple=True, help="DNS server for resolv.conf."),
        click.option("--dns-search", multiple=True, help="DNS search domain."),
        click.option("--dns-option", "dns_options", multiple=True, help="resolv.conf option."),
        click.option("--shm-size", help="Size of /dev/shm (e.g. 2g; default 64m)."),
        click.option("--cap-add", multiple=True, help="Add a capability (or ALL)."),
        click.option("--cap-drop", multiple=True, help="Drop a capability (or ALL)."),
        click.option("--group-add", multiple=True, help="Add a supplementary group."),
        click.option("--stop-signal", help="Signal that stop sends (default SIGTERM)."),
        click.option("--stop-timeout", type=int, help="Seconds stop waits (default 10)."),
        click.option(
            "--cidfile",
            type=click.Path(dir_okay=False),
            help="Write the container id to this file.",
        ),
        click.option(
            "--pull",
            "pull_policy",
            default="missing",
            type=click.Choice(["missing", "always", "never"]),
            help="Pull the image from its registry: when missing (default), always, or never.",
        ),
        click.option("-p", "--publish", "publish", multiple=True, hidden=True),
        click.option("--privileged", is_flag=True, hidden=True),
        click.argument("image"),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]
    for opt in reversed(opts):
        f = opt(f)
    from lamina.cli.registry_cmd import registry_options

    return registry_options(f)


def _prepared(ctx: Context, kw: dict[str, Any]) -> Any:
    """run/create's :class:`RunOptions`: built (every flag checked, env files read) before the
    image is pulled if needed, so a bad flag never costs a pull; then named after the image
    as stored."""
    _refuse_unsupported(kw)
    opts = _options(kw)
    _ensure_image(ctx, kw)
    if kw["image"] == opts.image:
        return opts
    import dataclasses

    return dataclasses.replace(opts, image=kw["image"])


def _refuse_unsupported(kw: dict[str, Any]) -> None:
    if kw["publish"]:  # explicit, not click's "no such option": say what works instead
        raise UsageError(
            "-p/--publish: lamina makes no bridge network, so ports are not mapped",
            hint="use --network host: the container's ports are then the host's",
        )
    if kw["privileged"]:
        raise UsageError(
            "--privileged is not supported (every host device and capability, nothing masked)",
            hint="grant what the job needs with --cap-add and -v",
        )


def _ensure_image(ctx: Context, kw: dict[str, Any]) -> None:
    """``--pull``, as Docker's run/create: fetch a missing (or, ``always``, every) image from
    its registry first — or any transport (``oci:DIR:REF``...) — and say so on stderr. The
    registry flags (``--authfile``, ``--creds``, ``--tls-verify``...) are popped from ``kw``;
    ``kw["image"]`` becomes the stored name."""
    from lamina.cli.registry_cmd import open_registries

    policy, image = kw.pop("pull_policy"), kw["image"]
    reg_opts = {k: kw.pop(k) for k in ("authfile", "tls_verify", "creds", "mirrors")}
    if image.startswith("local:"):  # the store's transport name: never pulled
        kw["image"] = image.removeprefix("local:")
        return
    if policy == "never":
        return
    if policy == "missing":
        from lamina.errors import NotFound

        try:
            ctx.store().get_image(image)
            return
        except NotFound:
            click.echo(f"Unable to find image '{image}' locally", err=True)
    from lamina.ops.archive import pull as do_pull
    from lamina.ops.registry import registry_name

    with open_registries(reg_opts, [registry_name(image)]) as registries:
        got = do_pull(ctx.store(), image, registries=registries)
    click.echo(f"Status: Downloaded newer image for {got}", err=True)
    kw["image"] = got


def _options(kw: dict[str, Any]) -> Any:
    from lamina.ops.container import RunOptions

    labels = dict(item.partition("=")[::2] for item in kw["labels"])
    return RunOptions(
        image=kw["image"], command=tuple(kw["command"]), name=kw["name"],
        env=_env(kw["env"], kw["env_file"]), volumes=kw["volumes"],
        volumes_from=kw["volumes_from"], tmpfs=kw["tmpfs"],
        workdir=kw["workdir"], user=kw["user"], entrypoint=kw["entrypoint"],
        hostname=kw["hostname"], network=kw["network"], read_only=kw["read_only"],
        init=kw["init"], auto_remove=kw["auto_remove"], tty=kw["tty"],
        interactive=kw["interactive"], runtime=kw["runtime"], labels=labels,
        add_hosts=kw["add_hosts"], dns=kw["dns"], dns_search=kw["dns_search"],
        dns_options=kw["dns_options"], shm_size=kw["shm_size"], cap_add=kw["cap_add"],
        cap_drop=kw["cap_drop"], group_add=kw["group_add"], stop_signal=kw["stop_signal"],
        stop_timeout=kw["stop_timeout"], cidfile=kw["cidfile"],
    )  # fmt: skip


def _attach(interactive: bool) -> Any:
    from lamina.ops.container import Attach

    sys.stdout.flush()
    return Attach(stdin=0 if interactive else None, stdout=1, stderr=2)


@click.command(context_settings=_NO_INTERSPERSE)
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@_run_options
@pass_ctx
@docker_exit
def run(ctx: Context, /, detach: bool, **kw: Any) -> None:
    """Create and start a container from IMAGE."""
    from lamina.ops.container import run as run_op

    opts = _prepared(ctx, kw)
    cid, status = run_op(ctx.store(), opts, detach=detach, attach=_attach(opts.interactive))
    if detach:
        click.echo(cid)
    elif status:
        click.get_current_context().exit(status)


@click.command(context_settings=_NO_INTERSPERSE)
@_run_options
@pass_ctx
@docker_exit
def create(ctx: Context, /, **kw: Any) -> None:
    """Create a container from IMAGE without starting it; print its id."""
    from lamina.ops.container import create as create_op

    click.echo(create_op(ctx.store(), _prepared(ctx, kw)))


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach stdout/stderr; exit with its status.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin.")
@click.argument("containers", nargs=-1, required=True)
@pass_ctx
@docker_exit
def start(ctx: Context, attach: bool, interactive: bool, containers: tuple[str, ...]) -> None:
    """Start stopped containers."""
    from lamina.ops.container import resolve_many
    from lamina.ops.container import start as start_op

    store = ctx.store()
    ids = resolve_many(store, containers)
    if attach:
        status = start_op(store, ids[0], attach=_attach(interactive))
        click.get_current_context().exit(status)
    for ref, cid in zip(containers, ids, strict=True):
        start_op(store, cid)
        click.echo(ref)


@click.command(name="exec", context_settings=_NO_INTERSPERSE)
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", "env", multiple=True, help="Set environment variables.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP] to run as.")
@click.option("--env-file", multiple=True, help="Read environment variables from a file.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
@docker_exit
def exec_(ctx: Context, /, container: str, command: tuple[str, ...], **kw: Any) -> None:
    """Run a command in a running container."""
    from lamina.ops.container_exec import exec_ as exec_op

    sys.stdout.flush()
    status = exec_op(
        ctx.store(), container, command, user=kw["user"], workdir=kw["workdir"],
        env=_env(kw["env"], kw["env_file"]), tty=kw["tty"], interactive=kw["interactive"],
        detach=kw["detach"],
    )  # fmt: skip
    if status:
        click.get_current_context().exit(status)


def _each(containers: tuple[str, ...], action: Callable[[str], object]) -> None:
    """Docker's multi-container verbs: act on each, echo it, report failures at the end."""
    failed: list[LaminaError] = []
    for ref in containers:
        try:
            action(ref)
            click.echo(ref)
        except LaminaError as exc:
            failed.append(exc)
            click.echo(f"lamina: error: {exc}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
    if failed:
        click.get_current_context().exit(failed[-1].exit_code if len(failed) == 1 else 1)


@click.command()
@click.option("-t", "--time", "--timeout", "timeout", type=int,
              help="Seconds to wait before killing.")  # fmt: skip
@click.option("-s", "--signal", "sig", help="Signal to send (default: the container's).")
@click.argument("containers", nargs=-1, required=True)
@pass_ctx
def stop(ctx: Context, timeout: int | None, sig: str | None, containers: tuple[str, ...]) -> None:
    """Stop running containers (stop signal, then SIGKILL)."""
    from lamina.ops.container_exec import parse_signal
    from lamina.ops.container_exec import stop as stop_op

    number = parse_signal(sig) if sig else None
    _each(containers, lambda ref: stop_op(ctx.store(), ref, timeout, signal=number))


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send (default KILL).")
@click.argument("containers", nargs=-1, required=True)
@pass_ctx
def kill(ctx: Context, sig: str, containers: tuple[str, ...]) -> None:
    """Send a signal to running containers."""
    from lamina.ops.container_exec import kill as kill_op
    from lamina.ops.container_exec import parse_signal

    signum = parse_signal(sig)
    _each(containers, lambda ref: kill_op(ctx.store(), ref, signum))


@click.command()
@click.argument("containers", nargs=-1, required=True)
@pass_ctx
def wait(ctx: Context, containers: tuple[str, ...]) -> None:
    """Block until containers stop; print their exit codes."""
    from lamina.ops.container_exec import wait as wait_op

    for ref in containers:
        click.echo(wait_op(ctx.store(), ref))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill and remove running containers.")
@click.option("-v", "--volumes", is_flag=True, help="Accepted for compatibility.")
@click.argument("containers", nargs=-1, required=True)
@pass_ctx
def rm(ctx: Context, force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove containers (and their layers)."""
    from lamina.ops.container import remove

    _each(containers, lambda ref: remove(ctx.store(), ref, force=force))


@click.command()
@click.argument("container")
@click.argument("new_name")
@pass_ctx
@docker_exit
def rename(ctx: Context, container: str, new_name: str) -> None:
    """Rename a container."""
    from lamina.ops.container_fs import rename as rename_op

    rename_op(ctx.store(), container, new_name)
