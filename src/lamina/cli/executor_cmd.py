"""``lamina executor``: Kaniko's executor command line, so a Kaniko CI job switches by binary.

Flags follow Kaniko's spelling and Go's flag syntax: booleans are ``--flag``, ``--flag=true``
or ``--flag=false``; repeatable flags repeat; short forms ``-c``, ``-f``, ``-d``, ``-v``;
deprecated spellings (``--tarPath``, ``--customPlatform``, ``--snapshotMode``) still work.
Flags that tune Kaniko internals lamina does not have are accepted and ignored (listed in
:data:`IGNORED`; ``--snapshot-mode`` and ``--use-new-run`` among them: lamina's snapshots are
always O(changes)). The environment is read here: ``DOCKER_CONFIG`` (Kaniko's images set
``/kaniko/.docker``), ``HOME``, ``SOURCE_DATE_EPOCH``, ``KANIKO_REGISTRY_MIRROR``, and for
``git://`` contexts ``GIT_PULL_METHOD``, ``GIT_USERNAME``, ``GIT_PASSWORD``/``GIT_TOKEN``.

Output: build progress and push lines on stderr (``--verbosity`` info and up; warn, error,
fatal and panic show only errors; debug and trace add lamina's debug log); stdout stays empty,
as with Kaniko. Errors are one line and a non-zero exit; credentials never appear.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lamina.cli.build_cmd import parse_pairs
from lamina.cli.main import Context
from lamina.errors import BuildError, UsageError

pass_ctx = click.make_pass_decorator(Context)
F = TypeVar("F", bound=Callable[..., Any])
VERBOSITY = ("panic", "fatal", "error", "warn", "info", "debug", "trace")
#: Kaniko flags accepted and ignored: (name, takes a value)
IGNORED = (
    ("snapshot-mode", True),
    ("snapshotMode", True),
    ("use-new-run", False),
    ("cache-dir", True),
    ("cache-copy-layers", False),
    ("cache-run-layers", False),
    ("compressed-caching", False),
    ("push-retry", True),
    ("image-fs-extract-retry", True),
    ("log-format", True),
    ("log-timestamp", False),
    ("skip-unused-stages", False),
    ("ignore-var-run", False),
    ("ignore-path", True),
    ("force", False),
    ("kaniko-dir", True),
)


def gobool(*names: str, help: str) -> Callable[[F], F]:
    """A Go-style boolean flag: ``--x``, ``--x=true``, ``--x=false``."""
    return click.option(
        *names,
        type=click.BOOL,
        default=False,
        is_flag=False,
        flag_value=True,
        metavar="[=true|false]",
        help=help,
    )


def ignored(f: F) -> F:
    """Every flag of :data:`IGNORED`, hidden from --help."""
    for name, takes_value in IGNORED:
        dest = "ignored_" + name.replace("-", "_").lower()
        if takes_value:
            f = click.option(f"--{name}", dest, multiple=True, hidden=True)(f)
        else:
            f = click.option(
                f"--{name}", dest, type=click.BOOL, is_flag=False, flag_value=True, hidden=True
            )(f)
    return f


def _ttl(text: str) -> float:
    from lamina.dockerfile.duration import DurationError, parse_duration

    try:
        return parse_duration(text) / 1e9
    except DurationError as exc:
        raise UsageError(f"invalid --cache-ttl {text!r}: {exc}", hint="e.g. 24h or 336h") from None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _setup_output(verbosity: str) -> bool:
    """Configure logging for ``verbosity``; True if progress should be shown."""
    from lamina._internal.log import ensure_setup

    ensure_setup()  # the level below must govern lamina's records from here on
    level = {"debug": logging.DEBUG, "trace": logging.DEBUG}.get(verbosity, logging.WARNING)
    if verbosity in ("error", "fatal", "panic"):
        level = logging.ERROR
    logging.getLogger("lamina").setLevel(level)
    return verbosity in ("info", "debug", "trace")


@click.command()
@click.option("-c", "--context", default="/workspace/", help="Build context: DIR, dir://DIR, "
              "tar://FILE[.gz] or tar://stdin (default /workspace/).")  # fmt: skip
@click.option("--context-sub-path", default="", help="Sub path within a directory context.")
@click.option("--git", "git_options", multiple=True,
              help="git:// context options: branch=NAME,recurse-submodules=false.")  # fmt: skip
@click.option("-f", "--dockerfile", default="Dockerfile", help="Dockerfile (default: Dockerfile "
              "in the context).")  # fmt: skip
@click.option("-d", "--destination", "destinations", multiple=True,
              help="Push the image here (repeatable).")  # fmt: skip
@gobool("--no-push", help="Build (and write the files asked for) but push nothing.")
@click.option("--tar-path", "--tarPath", "tar_path", help="Also save a docker-archive tarball.")
@click.option("--oci-layout-path", help="Also write an OCI layout of the image here.")
@click.option("--digest-file", help="Write the image's manifest digest to this file.")
@click.option("--image-name-with-digest-file", help="Write REPO@DIGEST lines here.")
@click.option("--image-name-tag-with-digest-file", help="Write REPO:TAG@DIGEST lines here.")
@click.option("--build-arg", "build_args", multiple=True, help="ARG value K=V (repeatable).")
@click.option("--target", help="Build this stage.")
@gobool("--cache", help="Use the registry layer cache (--cache-repo).")
@click.option("--cache-repo", help="Cache repository (default <destination>/cache).")
@click.option("--cache-ttl", default="336h", help="Cache entry lifetime (Go duration).")
@gobool("--no-push-cache", help="Use the cache repository but push nothing to it.")
@gobool("--reproducible", help="Strip times (epoch 0, or SOURCE_DATE_EPOCH).")
@gobool("--single-snapshot", help="One layer on top of the base image.")
@click.option("--label", "labels", multiple=True, help="Image label K=V (repeatable).")
@gobool("--insecure", help="Push over plain HTTP.")
@gobool("--skip-tls-verify", help="Push without verifying TLS certificates.")
@gobool("--insecure-pull", help="Pull over plain HTTP.")
@gobool("--skip-tls-verify-pull", help="Pull without verifying TLS certificates.")
@click.option("--insecure-registry", "insecure_registries", multiple=True,
              help="Plain HTTP for this registry (repeatable).")  # fmt: skip
@click.option("--skip-tls-verify-registry", "skip_tls_verify_registries", multiple=True,
              help="No TLS verification for this registry (repeatable).")  # fmt: skip
@click.option("--registry-mirror", "mirrors", multiple=True, help="Mirror for docker.io.")
@click.option("--custom-platform", "--customPlatform", "platform", help="Target platform.")
@gobool("--cleanup", help="Remove the built image from the store at the end.")
@click.option("-v", "--verbosity", type=click.Choice(VERBOSITY), default="info",
              help="Log level.")  # fmt: skip
@ignored
@pass_ctx
def executor(ctx: Context, /, **opts: Any) -> None:
    """Build and push an image with Kaniko's executor flags (see README: Migrating from
    Kaniko). State lives in the store (--root), not in a throwaway container."""
    from lamina.cli.build_cmd import PlainRenderer
    from lamina.cli.registry_cmd import environment, progress_printer
    from lamina.ops import executor as ex

    show = _setup_output(opts["verbosity"])
    kaniko = _options(opts)
    tls = ex.KanikoTLS(
        insecure=opts["insecure"],
        skip_tls_verify=opts["skip_tls_verify"],
        insecure_pull=opts["insecure_pull"],
        skip_tls_verify_pull=opts["skip_tls_verify_pull"],
        insecure_registries=opts["insecure_registries"],
        skip_tls_verify_registries=opts["skip_tls_verify_registries"],
    )
    ex.validate(kaniko)
    mirrors = list(opts["mirrors"])
    if os.environ.get("KANIKO_REGISTRY_MIRROR"):
        mirrors.append(os.environ["KANIKO_REGISTRY_MIRROR"])
    pushes = list(kaniko.destinations)
    if kaniko.cache:
        pushes.append(ex.cache_repo_for(kaniko))
    # SIGTERM (a cancelled CI job) stops like Ctrl-C: RUN containers killed, mounts undone.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with ex.open_kaniko_registries(environment(), tls, pushes, mirrors=mirrors) as registries:
            result = ex.execute(
                ctx.store(),
                kaniko,
                registries=registries,
                progress=PlainRenderer(sys.stderr) if show else None,
                push_progress=progress_printer(not show),
            )
    except BuildError as exc:
        if exc.line:  # as lamina build: "Dockerfile:LINE: message"
            exc.message = f"{Path(kaniko.dockerfile).name}:{exc.line}: {exc.message}"
            exc.args = (exc.message,)
        raise
    if show:
        for dest in result.pushed:
            click.echo(f"Pushed {dest}@{result.digest}", err=True)
        click.echo(f"Built image {result.image_id} (digest {result.digest})", err=True)


def _options(opts: dict[str, Any]) -> Any:
    from lamina.cli.epoch import source_date_epoch
    from lamina.oci.platform import Platform
    from lamina.ops.executor import KanikoOptions

    return KanikoOptions(
        context=opts["context"],
        context_sub_path=opts["context_sub_path"],
        dockerfile=opts["dockerfile"],
        destinations=tuple(opts["destinations"]),
        no_push=opts["no_push"],
        tar_path=_path(opts["tar_path"]),
        oci_layout_path=_path(opts["oci_layout_path"]),
        digest_file=_path(opts["digest_file"]),
        image_name_with_digest_file=_path(opts["image_name_with_digest_file"]),
        image_name_tag_with_digest_file=_path(opts["image_name_tag_with_digest_file"]),
        build_args=parse_pairs(opts["build_args"], "--build-arg", from_env=True, unset_empty=True),
        target=opts["target"] or None,
        cache=opts["cache"],
        cache_repo=opts["cache_repo"] or None,
        cache_ttl=_ttl(opts["cache_ttl"]),
        no_push_cache=opts["no_push_cache"],
        reproducible=opts["reproducible"],
        single_snapshot=opts["single_snapshot"],
        labels=parse_pairs(opts["labels"], "--label", from_env=False),
        platform=Platform.parse(opts["platform"]) if opts["platform"] else None,
        cleanup=opts["cleanup"],
        source_date_epoch=source_date_epoch(),
        git_options=_git_options(opts["git_options"]),
        git_pull_method=os.environ.get("GIT_PULL_METHOD", "https"),
        git_credentials=_git_credentials(),
    )


def _git_options(values: tuple[str, ...]) -> dict[str, str]:
    from lamina.ops.gitcontext import parse_git_options

    items = [item for value in values for item in value.split(",") if item]
    return parse_git_options(parse_pairs(tuple(items), "--git", from_env=False))


def _git_credentials() -> tuple[str, str] | None:
    """Kaniko's ``GIT_USERNAME`` with ``GIT_PASSWORD`` (or ``GIT_TOKEN``)."""
    secret = os.environ.get("GIT_PASSWORD") or os.environ.get("GIT_TOKEN")
    user = os.environ.get("GIT_USERNAME")
    if not secret:
        return None
    return (user or "git", secret)
