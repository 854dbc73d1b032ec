"""``lamina executor``: Kaniko's executor options mapped onto one build, its exports and pushes.

A Kaniko job (GitLab CI, Jenkins, Tekton) switches by changing the binary. :func:`execute`
does what Kaniko's executor does, in its order:

1. check the flags as Kaniko does (``--destination`` unless ``--no-push``; the digest-name
   files and ``--tar-path`` need a destination; an unsupported context scheme is refused),
   and that every destination accepts a push (an upload session opened and cancelled);
2. build (:func:`lamina.ops.build.build`) the ``--context`` (a directory, ``dir://DIR``,
   ``tar://FILE.tar[.gz]``, ``tar://stdin`` or ``git://HOST/REPO[#REF[#COMMIT]]`` (see
   :mod:`lamina.ops.gitcontext`), with ``--context-sub-path``) and store the image
   under the destinations; base images are pulled with the executor's credentials;
3. push to the first destination (unless ``--no-push``; new layers are compressed while they
   upload), compute the image as a registry gets it (gzip layers, compressed once and cached
   in the store), and write ``--digest-file`` (its manifest digest, no newline),
   ``--image-name-with-digest-file`` (``REPO@DIGEST`` lines) and
   ``--image-name-tag-with-digest-file`` (``REPO:TAG@DIGEST`` lines), ``--oci-layout-path``
   (an OCI layout holding exactly that manifest) and ``--tar-path`` (a ``docker save`` tarball
   whose ``RepoTags`` are the destinations);
4. push to the other destinations (Kaniko writes the files before pushing; here a refused
   first push leaves none);
5. with ``--cleanup``, drop the image from the store (names, then unreferenced layers).

State: Kaniko runs in a throwaway container; lamina keeps the image, its layers and pulled base
images in the store (``--root``), so a persistent store makes the next job's pulls free.
Kaniko semantics kept: without ``--cache`` no step result is reused (every RUN runs); with
it, step results come from and go to the registry cache ``--cache-repo`` (default
``<first destination>/cache``, :mod:`lamina.build.regcache`; entries older than
``--cache-ttl`` are not used) and from the store's local build cache;
``--reproducible`` is lamina's epoch-0 build (or ``SOURCE_DATE_EPOCH``).

Invariants: nothing is printed; every output file is written atomically (parent directories
created); no credential is ever part of a message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from lamina import reference, transports
from lamina._internal.fileio import atomic_output, write_atomic
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.build.progress import ProgressFn
from lamina.errors import NotFound, UsageError
from lamina.image.model import Image
from lamina.oci.digest import Digest
from lamina.oci.platform import Platform
from lamina.ops.build import build
from lamina.ops.gitcontext import git_spec, open_git_context
from lamina.ops.registry import (
    compressed_for_push,
    open_registries,
    push,
    registry_name,
    with_registries,
)
from lamina.registry import TransportOptions
from lamina.store import Store
from lamina.transports.copy import ProgressFn as PushProgressFn
from lamina.transports.docker import DockerRef, Registries

#: Kaniko's default ``--cache-ttl`` (two weeks), in seconds
DEFAULT_CACHE_TTL = 14 * 24 * 3600.0
UNSUPPORTED_CONTEXTS = ("gs://", "s3://", "https://", "http://", "azblob://")


@lazy_dataclass(frozen=True, kw_only=True)
class KanikoOptions:
    """Kaniko's build options (its flag names, snake_case)."""

    context: str = "/workspace/"
    context_sub_path: str = ""
    dockerfile: str = "Dockerfile"
    destinations: tuple[str, ...] = ()
    no_push: bool = False
    tar_path: Path | None = None
    oci_layout_path: Path | None = None
    digest_file: Path | None = None
    image_name_with_digest_file: Path | None = None
    image_name_tag_with_digest_file: Path | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    cache: bool = False
    cache_repo: str | None = None
    cache_ttl: float = DEFAULT_CACHE_TTL
    #: ``--no-push-cache``: import the cache only
    no_push_cache: bool = False
    reproducible: bool = False
    single_snapshot: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    cleanup: bool = False
    #: ``SOURCE_DATE_EPOCH`` (the CLI reads it); ``reproducible`` without it means 0
    source_date_epoch: int | None = None
    #: ``git://`` contexts (:mod:`lamina.ops.gitcontext`): ``--git`` options,
    #: ``GIT_PULL_METHOD``, and (user, password) from ``GIT_USERNAME``/``GIT_PASSWORD``
    git_options: Mapping[str, str] = field(default_factory=dict)
    git_pull_method: str = "https"
    git_credentials: tuple[str, str] | None = None


@lazy_dataclass(frozen=True, kw_only=True)
class ExecutorResult:
    """The image built: manifest digest as pushed (gzip layers), image id, store digest, and
    the destinations pushed to (empty with ``--no-push``)."""

    digest: Digest
    image_id: Digest
    stored: Digest
    pushed: tuple[str, ...] = ()


@lazy_dataclass(frozen=True, kw_only=True)
class KanikoTLS:
    """Kaniko's registry connection flags. ``insecure``/``skip_tls_verify`` apply to the
    destinations (and the cache repository), the ``_pull`` ones to every other registry, the
    ``_registries`` lists to the hosts named."""

    insecure: bool = False
    skip_tls_verify: bool = False
    insecure_pull: bool = False
    skip_tls_verify_pull: bool = False
    insecure_registries: tuple[str, ...] = ()
    skip_tls_verify_registries: tuple[str, ...] = ()


class KanikoRegistries(Registries):
    """Registries whose TLS options differ per host (Kaniko's per-registry flags)."""

    def __init__(self, base: Registries, per_host: Mapping[str, TransportOptions]) -> None:
        super().__init__(credentials=base.credentials, options=base.options, mirrors=base.mirrors)
        self.per_host = dict(per_host)

    def options_for(self, host: str) -> TransportOptions:
        """The options of ``host``: its own, else the default (pull) ones."""
        return self.per_host.get(host, self.options)


def _options(base: TransportOptions, insecure: bool, skip_verify: bool) -> TransportOptions:
    """``base`` (CA directories, retries, timeouts) with Kaniko's two TLS switches."""
    return replace(base, insecure=insecure, tls_verify=not skip_verify)


def open_kaniko_registries(
    env: Mapping[str, str],
    tls: KanikoTLS,
    push_refs: Sequence[str],
    *,
    mirrors: Sequence[str] = (),
) -> KanikoRegistries:
    """The executor's registries: credentials as Kaniko reads them (``$DOCKER_CONFIG/
    config.json``, credential helpers; podman's files too), TLS per host (see KanikoTLS).
    ``push_refs`` are the destinations and the cache repository. The caller closes it."""
    base = open_registries(env, mirrors=mirrors)
    pull = _options(base.options, tls.insecure_pull, tls.skip_tls_verify_pull)
    per_host: dict[str, TransportOptions] = {}
    for text in push_refs:
        host = reference.parse(text).domain
        per_host[host] = _options(base.options, tls.insecure, tls.skip_tls_verify)
    named = {reference.parse(f"{h}/x").domain for h in tls.insecure_registries}
    verify_off = {reference.parse(f"{h}/x").domain for h in tls.skip_tls_verify_registries}
    for host in named | verify_off:
        old = per_host.get(host, pull)
        per_host[host] = replace(
            old,
            insecure=True if host in named else old.insecure,
            tls_verify=False if host in verify_off else old.tls_verify,
        )
    base.options = pull
    return KanikoRegistries(base, per_host)


def validate(opts: KanikoOptions) -> None:
    """Kaniko's flag checks, as one-line UsageErrors."""
    if not opts.no_push and not opts.destinations:
        raise UsageError("you must provide --destination, or use --no-push")
    needs = (
        ("--image-name-with-digest-file", opts.image_name_with_digest_file),
        ("--image-name-tag-with-digest-file", opts.image_name_tag_with_digest_file),
        ("--tar-path", opts.tar_path),
    )
    for flag, value in needs:
        if value is not None and not opts.destinations:
            raise UsageError(f"you must provide --destination if setting {flag}")
    for dest in opts.destinations:
        ref = reference.parse(dest)
        if ref.digest is not None and ref.tag is None:
            raise UsageError(f"--destination {dest}: a destination needs a tag, not a digest")
    if opts.cache_ttl <= 0:
        raise UsageError("--cache-ttl must be positive")
    if opts.cache and cache_repo_for(opts) is None:
        raise UsageError("--cache=true needs --cache-repo (or a --destination to derive it)")


def cache_repo_for(opts: KanikoOptions) -> str | None:
    """``--cache-repo``, else Kaniko's default ``<first destination's repository>/cache``."""
    if opts.cache_repo:
        return opts.cache_repo
    if not opts.destinations:
        return None
    ref = reference.parse(opts.destinations[0])
    return f"{ref.domain}/{ref.path}/cache"


def resolve_context(context: str, sub_path: str = "") -> str:
    """What :func:`lamina.ops.build.build` takes for Kaniko's ``--context``: a directory,
    a tar file, or ``-`` (``tar://stdin``). UsageError for remote schemes."""
    for prefix in UNSUPPORTED_CONTEXTS:
        if context.startswith(prefix):
            raise UsageError(
                f"--context {prefix}...: remote build contexts are not supported",
                hint="fetch the context first and pass --context DIR or tar://FILE",
            )
    if context.startswith("tar://"):
        path = context.removeprefix("tar://")
        if sub_path:
            raise UsageError("--context-sub-path works with directory contexts only")
        return "-" if path == "stdin" else path
    path = context.removeprefix("dir://")
    if sub_path:
        path = os.path.join(path, sub_path)
    if not os.path.isdir(path):
        raise UsageError(f"--context {context}: {path} is not a directory")
    return path


def execute(
    store: Store,
    opts: KanikoOptions,
    *,
    registries: Registries,
    progress: ProgressFn | None = None,
    push_progress: PushProgressFn | None = None,
    stdin: BinaryIO | None = None,
) -> ExecutorResult:
    """Run Kaniko's executor steps (see the module docstring); returns what was built."""
    validate(opts)
    checkout = _open_context(store, opts)  # local contexts are checked here, before pushing
    if not opts.no_push:  # as Kaniko: refuse before building when a push would be refused
        for dest in opts.destinations:
            ref = with_registries(registry_name(dest), registries)
            if isinstance(ref, DockerRef):
                ref.client().check_push(ref.repository)
    epoch = opts.source_date_epoch
    if epoch is None and opts.reproducible:
        epoch = 0
    with checkout as context:
        result = build(
            store,
            str(context),
            dockerfile=opts.dockerfile,
            tags=opts.destinations,
            build_args=opts.build_args,
            target=opts.target,
            no_cache=not opts.cache,
            platform=opts.platform,
            labels=opts.labels,
            epoch=epoch,
            progress=progress,
            stdin=stdin,
            registries=registries,
            single_snapshot=opts.single_snapshot,
            **_cache_args(opts),
        )
    assert result.digest is not None and result.image_id is not None
    pushed: list[str] = []

    def push_to(dest: str) -> None:
        push(store, str(result.digest), dest, registries=registries, progress=push_progress)
        pushed.append(dest)

    if not opts.no_push:  # the first push compresses new layers while uploading them
        push_to(opts.destinations[0])
    image = compressed_for_push(store, store.get_image(str(result.digest)))
    digest = image.digest()
    _write_outputs(opts, image, digest)
    if not opts.no_push:
        for dest in opts.destinations[1:]:
            push_to(dest)
    if opts.cleanup:
        clean_up(store, result.digest, opts.destinations)
    return ExecutorResult(
        digest=digest, image_id=result.image_id, stored=result.digest, pushed=tuple(pushed)
    )


def _open_context(
    store: Store, opts: KanikoOptions
) -> contextlib.AbstractContextManager[str | Path]:
    """The build context to enter: a git checkout made on entry, or a local path/``-``."""
    if not opts.context.startswith("git://"):
        return contextlib.nullcontext(resolve_context(opts.context, opts.context_sub_path))
    spec = git_spec(
        opts.context,
        options=opts.git_options,
        pull_method=opts.git_pull_method,
        credentials=opts.git_credentials,
    )
    return open_git_context(store, spec, opts.context_sub_path)


def _cache_args(opts: KanikoOptions) -> dict[str, Any]:
    """ops.build's registry-cache arguments for ``--cache``/``--cache-repo``/``--cache-ttl``:
    the repository both imported and exported (``--no-push-cache``: imported only)."""
    repo = cache_repo_for(opts) if opts.cache else None
    if repo is None:
        return {}
    ttl = timedelta(seconds=opts.cache_ttl)
    if opts.no_push_cache:
        from lamina.build.cachespec import parse_cache_spec

        return {"cache_from": [parse_cache_spec(repo, flag="--cache-repo")], "cache_ttl": ttl}
    return {"cache_repo": repo, "cache_ttl": ttl}


def _write_outputs(opts: KanikoOptions, image: Image, digest: Digest) -> None:
    refs = [reference.parse(d) for d in opts.destinations]
    if opts.digest_file is not None:
        _write(opts.digest_file, str(digest))
    if opts.image_name_with_digest_file is not None:
        lines = "".join(f"{r.domain}/{r.path}@{digest}\n" for r in refs)
        _write(opts.image_name_with_digest_file, lines)
    if opts.image_name_tag_with_digest_file is not None:
        lines = "".join(f"{r.domain}/{r.path}:{r.tag or 'latest'}@{digest}\n" for r in refs)
        _write(opts.image_name_tag_with_digest_file, lines)
    if opts.oci_layout_path is not None:
        tag = refs[0].tag if refs and refs[0].tag else "latest"
        layout = opts.oci_layout_path
        if layout.exists() and not layout.is_dir():
            raise UsageError(f"--oci-layout-path {layout}: exists and is not a directory")
        transports.copy(image, transports.parse(f"oci:{layout.absolute()}:{tag}"))
    if opts.tar_path is not None:
        names = [str(r) for r in refs]
        with atomic_output(opts.tar_path) as tmp:
            transports.copy(image, transports.parse(f"docker-archive:{tmp}"), names=names)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():  # /dev/termination-log and the like
        path.write_text(text)
        return
    write_atomic(path, text.encode())


def clean_up(store: Store, digest: Digest, names: Sequence[str]) -> None:
    """``--cleanup``: remove the built image's names (the image itself once it has none; its
    layers when no other image uses them). Base images stay. Idempotent."""
    for name in names:
        with contextlib.suppress(NotFound):
            store.remove_image(name)
    with contextlib.suppress(NotFound):
        if not store.get_image(str(digest)).names():
            store.remove_image(str(digest), force=True)


__all__ = [
    "DEFAULT_CACHE_TTL",
    "ExecutorResult",
    "KanikoOptions",
    "KanikoRegistries",
    "KanikoTLS",
    "cache_repo_for",
    "clean_up",
    "execute",
    "open_kaniko_registries",
    "resolve_context",
    "validate",
]
