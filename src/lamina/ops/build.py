"""``lamina build``: a Dockerfile and a context in, an image (and optional exports) out.

:func:`build` is the verb the CLI (and later the Engine API) calls. It opens the context
(directory, tar file, ``-``, or a git URL as the docker CLI takes it), reads the Dockerfile
(``-f``: a path, ``-`` for stdin; by default ``Dockerfile`` in the context), lints it (warnings
go to the progress callback; with ``check=True`` only the lint runs), runs
:class:`lamina.build.executor.Executor`, and then stores the target image under ``tags`` and
writes each ``--output``. Then it pushes: every ``tags`` name with ``push=True``, and the names
of ``type=registry`` outputs (through :func:`lamina.ops.registry.push`, with the caller's
``registries``); the names are checked before anything is built. ``single_snapshot`` squashes
the layers added on the base into one (Kaniko's ``--single-snapshot``,
:mod:`lamina.build.squash`).

Reproducibility: ``epoch`` (``SOURCE_DATE_EPOCH``, or 0 for ``--reproducible``) fixes every
``created`` time and clamps every file time in new layers, so the same context built in two
stores on two days gives the same image digest. Without it, times are the build's start.

Invariants: nothing is printed; all errors are LaminaError subclasses (BuildError carries the
Dockerfile line); a failed build leaves no image record and no mount; the context's temp
extraction is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.lock import flocked
from lamina.build.cache import BuildCache
from lamina.build.cachespec import CacheSpec
from lamina.build.context import BuildContext
from lamina.build.executor import Executor, Plan, RegistriesArg, registries_of
from lamina.build.outputs import OutputSpec, export, final_image, push_names, store_image
from lamina.build.progress import ProgressFn, Reporter
from lamina.build.secrets import SecretSource, SecretStore
from lamina.build.ssh import SshAgents, SshSource
from lamina.build.steps.base import BuildEnv, timestamp
from lamina.dockerfile import Document, LintWarning, lint, parse
from lamina.dockerfile.parser import MAX_DOCKERFILE
from lamina.errors import BuildError, DockerfileError, UsageError
from lamina.oci.digest import Digest
from lamina.oci.platform import Platform
from lamina.store import Store, chain_ids

if TYPE_CHECKING:  # the registry client (httpx, ssl) is imported only when a build uses it
    from lamina.build.regcache import RegistryCache
    from lamina.transports.copy import ProgressFn as PushProgressFn
    from lamina.transports.docker import Registries


@lazy_dataclass(frozen=True, kw_only=True)
class BuildResult:
    """What a build produced: the image id (config digest) and manifest digest; lint findings.

    Both digests are None for ``check`` runs. ``pushed`` lists (reference, pushed manifest
    digest) per push, in order.
    """

    image_id: Digest | None
    digest: Digest | None
    warnings: tuple[LintWarning, ...] = ()
    pushed: tuple[tuple[str, Digest], ...] = ()


@contextlib.contextmanager
def _open_context(
    store: Store, context: str | Path, df_name: str, stdin: BinaryIO | None, tmp: Path
) -> Iterator[BuildContext]:
    """The build context: a local directory or tar file, ``-``, or (as the docker CLI, when
    no local directory has that name) a git URL, checked out for the build."""
    spec = str(context)
    if spec != "-" and not Path(spec).exists():
        from lamina.ops.gitcontext import git_url_context, is_git_url

        if is_git_url(spec):
            with (
                git_url_context(store, spec) as root,
                BuildContext.open(root, dockerfile=df_name, tmp_dir=tmp) as ctx,
            ):
                yield ctx
            return
        if spec.startswith(("http://", "https://")):
            raise BuildError(
                f"unable to prepare context: {spec}: only git repositories are fetched",
                hint="give a git URL (…/repo.git#ref:dir), or download the tarball and pass it",
            )
    with BuildContext.open(context, dockerfile=df_name, stdin=stdin, tmp_dir=tmp) as ctx:
        yield ctx


def _read_dockerfile(
    context: BuildContext, dockerfile: str | None, stdin: BinaryIO | None
) -> tuple[str, bytes]:
    if dockerfile == "-":
        data = (stdin or cast(BinaryIO, sys.stdin.buffer)).read(MAX_DOCKERFILE + 1)
        return "Dockerfile", data
    path = Path(dockerfile) if dockerfile else context.root / "Dockerfile"
    if dockerfile and not path.is_absolute() and not path.exists():
        path = context.root / dockerfile
    try:
        with path.open("rb") as f:
            data = f.read(MAX_DOCKERFILE + 1)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise BuildError(
            f"failed to read dockerfile: open {path.name}: {reason}",
            hint="pass -f PATH, or put a Dockerfile in the context",
        ) from exc
    if len(data) > MAX_DOCKERFILE:
        raise BuildError(f"dockerfile {path} is larger than {MAX_DOCKERFILE} bytes")
    return path.name, data


def build(
    store: Store,
    context: str | Path,
    *,
    dockerfile: str | None = None,
    tags: Sequence[str] = (),
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    no_cache: bool = False,
    pull: bool = False,
    platform: Platform | None = None,
    labels: Mapping[str, str] | None = None,
    secrets: Sequence[SecretSource] = (),
    ssh: Sequence[SshSource] = (),
    network: str = "host",
    isolation: str = "auto",
    runtime: str | None = None,
    outputs: Sequence[OutputSpec] = (),
    epoch: int | None = None,
    progress: ProgressFn | None = None,
    check: bool = False,
    stdin: BinaryIO | None = None,
    push: bool = False,
    registries: RegistriesArg = None,
    push_progress: PushProgressFn | None = None,
    single_snapshot: bool = False,
    cache_from: Sequence[CacheSpec] = (),
    cache_to: Sequence[CacheSpec] = (),
    cache_repo: str | None = None,
    cache_ttl: timedelta | None = None,
) -> BuildResult:
    """Build ``context`` (see the module docstring); returns ids and lint warnings.

    ``pull`` fetches base images from their registries first (else only a missing image
    whose name has an explicit registry is pulled). ``network`` is ``host`` or ``none``;
    ``isolation`` is ``auto``, ``oci`` (runc/crun) or ``chroot`` (the native runtime).
    ``cache_from``/``cache_to``/``cache_repo``/``cache_ttl``: registry build caches
    (:mod:`lamina.build.regcache`), reached through ``registries``' credentials and TLS.
    ``registries`` may be a function that makes them: it is called only when the build pulls,
    pushes or uses a registry cache.
    ``ssh``: agents for ``RUN --mount=type=ssh`` and ``ADD git@…`` (:mod:`lamina.build.ssh`);
    agents started for key files are stopped when the build ends.
    """
    if network not in ("host", "none", "default"):
        raise UsageError(f"unknown network mode {network!r}", hint="use host or none")
    if isolation not in ("auto", "oci", "chroot"):
        raise UsageError(f"unknown isolation {isolation!r}", hint="use auto, oci or chroot")
    if dockerfile == "-" and str(context) == "-":
        raise UsageError("the Dockerfile and the context cannot both come from stdin")
    targets = [] if check else push_names(outputs, tags, push)
    reporter = Reporter(progress)
    tmp = store.root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    df_name = Path(dockerfile).name if dockerfile and dockerfile != "-" else "Dockerfile"
    with _open_context(store, context, df_name, stdin, tmp) as ctx:
        name, data = _read_dockerfile(ctx, dockerfile, stdin)
        document = _parse(data, name)
        warnings = tuple(lint(document, build_args=build_args, target=target))
        for w in warnings:
            reporter.warning(w.format(name))
        if check:
            return BuildResult(image_id=None, digest=None, warnings=warnings)
        errors = [w for w in warnings if w.error]
        if errors:  # ``# check=error=true``: findings fail the build, as in BuildKit
            first = errors[0]
            raise BuildError(
                f"lint violation: {first.rule} - {first.message}",
                line=first.line,
                hint=f"{len(errors)} check(s) failed; see {first.url}",
            )
        plat = platform or Platform.host()
        remote, remote_clients = _open_registry_cache(
            cache_from=cache_from, cache_to=cache_to, cache_repo=cache_repo, ttl=cache_ttl,
            registries=registries, reporter=reporter,
        )  # fmt: skip
        env = BuildEnv(
            store=store,
            cache=BuildCache(store.root / "buildcache"),
            reporter=reporter,
            context=ctx,
            dockerfile=name,
            created=timestamp(epoch),
            epoch=epoch,
            no_cache=no_cache,
            network="host" if network == "default" else network,
            isolation=isolation,
            runtime_name=runtime,
            secrets=SecretStore(secrets),
            build_args=dict(build_args or {}),
            platform=str(plat),
            find_source=lambda ref: executor.find_source(ref),
            remote=remote,
            ssh=SshAgents(ssh, tmp_dir=tmp) if ssh else None,
        )
        plan = Plan(
            document=document,
            target=target,
            build_args=dict(build_args or {}),
            platform=plat,
            pull=pull,
            registries=registries,
        )
        executor = Executor(env, plan)
        try:
            # gc.lock shared: gc never collects a layer made here before the image holds it
            with flocked(store.layout.gc_lock, shared=True):
                if remote is not None:
                    remote.load()
                state = executor.run()
                env.ensure_layer(state.chain)  # registry cache hits: fetch the image's layers
                if single_snapshot:
                    from lamina.build.squash import base_size, squash

                    layers, history = base_size(executor)
                    state = squash(store, state, layers=layers, history=history, epoch=epoch)
                image = final_image(store, state, created=env.created, labels=labels or {})
                digest = store_image(store, image, tags)
                if remote is not None:
                    from lamina.build.cacheexport import export_cache

                    export_cache(remote, store, chain_ids([x.diff_id for x in state.layers]))
            for spec in outputs:
                export(store, image, state, spec, tags=tags, epoch=epoch)
        finally:
            env.close_thread()
            if env.ssh is not None:
                env.ssh.close()
            if remote_clients is not None:
                remote_clients.close()
    pushed = _push(store, digest, targets, registries, push_progress)
    return BuildResult(
        image_id=image.manifest().config.digest, digest=digest, warnings=warnings, pushed=pushed
    )


def _open_registry_cache(
    *,
    cache_from: Sequence[CacheSpec],
    cache_to: Sequence[CacheSpec],
    cache_repo: str | None,
    ttl: timedelta | None,
    registries: RegistriesArg,
    reporter: Reporter,
) -> tuple[RegistryCache | None, Registries | None]:
    """:func:`lamina.build.regcache.open_registry_cache`, imported only when asked for."""
    if not cache_from and not cache_to and not cache_repo:
        return None, None
    from lamina.build.regcache import open_registry_cache

    return open_registry_cache(
        cache_from=cache_from, cache_to=cache_to, cache_repo=cache_repo, ttl=ttl,
        registries=registries_of(registries), reporter=reporter,
    )  # fmt: skip


def _push(
    store: Store,
    digest: Digest,
    names: Sequence[str],
    registries: RegistriesArg,
    progress: PushProgressFn | None,
) -> tuple[tuple[str, Digest], ...]:
    if not names:
        return ()
    from lamina.ops.registry import push as push_one

    made = registries_of(registries)
    out = []
    for name in names:
        _dst, desc = push_one(store, str(digest), name, registries=made, progress=progress)
        out.append((name, desc.digest))
    return tuple(out)


def _parse(data: bytes, name: str) -> Document:
    try:
        return parse(data.decode("utf-8", "surrogateescape"), path=name)
    except DockerfileError:
        raise
    except ValueError as exc:
        raise BuildError(f"reading {name}: {exc}") from exc


__all__ = ["BuildResult", "OutputSpec", "build"]
