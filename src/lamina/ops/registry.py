"""Registry verbs: push, pull from a registry, copy through registries, login, logout.

Pulls go through ``Store.put_image`` (one streaming pass per layer, all-or-nothing); pushes go
through the generic copy loop into a :class:`~lamina.transports.docker.DockerDestination`.

Pushing from the local store compresses layers the store keeps only as plain tar (as Docker
does), once, keeping the gzip blob in the store (:mod:`lamina.ops.pushgzip`); the pushed
manifest then names the gzip blobs (its digest differs from the stored one; the image id is
unchanged). When the destination is a registry, a layer compressed now is uploaded *while* it
is compressed, so the copy loop then finds the blob present; its progress still says "Pushed".

Invariants: credentials come from the :class:`~lamina.transports.docker.Registries` the caller
builds (:func:`open_registries` takes the environment as an argument; nothing here reads
``os.environ``); no secret is ever part of a message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from lamina import reference, transports
from lamina.errors import AuthError, InvalidReference, RegistryError, UsageError
from lamina.image.model import Image, ImageIndex
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.platform import Platform
from lamina.ops.pushgzip import PushImage, compressed_for_push, gzip_blob
from lamina.registry import (
    ChainProvider,
    Credential,
    StaticCredentials,
    TransportOptions,
    default_auth_files,
    default_provider,
)
from lamina.registry import login as registry_login
from lamina.registry import logout as registry_logout
from lamina.registry.tls import DEFAULT_CERTS_DIRS, certs_dirs_for
from lamina.store import Store
from lamina.store.image import StoreImage
from lamina.transports.copy import Progress, ProgressFn
from lamina.transports.docker import DockerRef, Registries


def transport_options(
    *, tls_verify: bool = True, certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS
) -> TransportOptions:
    """Options for ``--tls-verify``: false allows unverified HTTPS and plain HTTP anywhere
    (true keeps Docker's rule: plain HTTP only for loopback registries). ``certs_dirs``: where
    per-registry CAs are looked up (:func:`lamina.registry.tls.certs_dirs_for`)."""
    if tls_verify:
        return TransportOptions(certs_dirs=certs_dirs)
    return TransportOptions(tls_verify=False, insecure=True, certs_dirs=certs_dirs)


def open_registries(
    env: Mapping[str, str],
    *,
    auth_file: Path | None = None,
    tls_verify: bool = True,
    creds: str | None = None,
    creds_hosts: Sequence[str] = (),
    mirrors: Sequence[str] = (),
) -> Registries:
    """The registries of one command: credentials from ``creds`` (``USER[:PASSWORD]``, for
    ``creds_hosts`` only), then ``auth_file`` or the default credential files of ``env``.

    ``env`` is the environment the CLI passes (HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE, ...);
    registry CAs come from ``$HOME/.config/containers/certs.d`` and the system certs.d
    directories. The caller closes the result.
    """
    home = Path(env.get("HOME") or "/")
    provider = default_provider(env, home, auth_file=auth_file)
    if creds is not None:
        user, _, password = creds.partition(":")
        if not user:
            raise UsageError("--creds needs USER[:PASSWORD]")
        static = StaticCredentials({h: Credential(user, password) for h in creds_hosts})
        provider = ChainProvider([static, provider])
    options = transport_options(tls_verify=tls_verify, certs_dirs=certs_dirs_for(home))
    return Registries(credentials=provider, options=options, mirrors=mirrors)


def auth_file_for(env: Mapping[str, str], auth_file: Path | None = None) -> Path:
    """Where ``login`` writes: ``--authfile``, else ``REGISTRY_AUTH_FILE``, else
    ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``)."""
    if auth_file is not None:
        return auth_file
    return default_auth_files(env, Path(env.get("HOME") or "/"))[0]


def login(
    host: str,
    username: str,
    password: str,
    *,
    env: Mapping[str, str],
    auth_file: Path | None = None,
    tls_verify: bool = True,
) -> Path:
    """Verify the credentials with ``host`` and store them; returns the file written.

    Nothing is written if the registry refuses them (AuthError naming the registry).
    """
    if not username or not password:
        raise UsageError("login needs a username and a password")
    path = auth_file_for(env, auth_file)
    try:
        registry_login(
            host,
            username,
            password,
            auth_file=path,
            options=transport_options(
                tls_verify=tls_verify, certs_dirs=certs_dirs_for(Path(env.get("HOME") or "/"))
            ),
            helper_path=env.get("PATH"),
        )
    except AuthError as exc:
        if exc.status == 401:
            exc.hint = "check the username and password"
        raise
    return path


def logout(host: str, *, env: Mapping[str, str], auth_file: Path | None = None) -> bool:
    """Forget the credentials for ``host``; True if there were any. Idempotent."""
    return registry_logout(
        host, auth_file=auth_file_for(env, auth_file), helper_path=env.get("PATH")
    )


def with_registries(ref: transports.ImageRef, registries: Registries | None) -> transports.ImageRef:
    """``ref`` talking through ``registries`` when it is a registry reference."""
    if isinstance(ref, DockerRef) and registries is not None:
        return ref.with_registries(registries, ref.mount_from)
    return ref


def registry_name(text: str) -> transports.ImageRef:
    """``text`` as a reference where a bare name means a registry (``docker pull``/``push``
    semantics): ``busybox`` is ``docker://docker.io/library/busybox:latest``; anything with a
    transport prefix keeps it."""
    ref = transports.parse(text)
    if ref.transport == "local" and not text.startswith("local:"):
        return transports.parse("docker://" + text)
    return ref


def pull(
    store: Store,
    ref: DockerRef,
    *,
    name: str | None = None,
    platform: Platform | None = None,
) -> tuple[str, Descriptor]:
    """Store the image ``ref`` names (one platform of an index), named ``name`` or the
    reference itself. Returns (name, descriptor of the stored manifest). All-or-nothing."""
    image = ref.open_image(platform)
    stored_as = name or str(ref.reference)
    digest = store.put_image(image, [str(reference.parse(stored_as))])
    return stored_as, Descriptor(
        media_type=image.media_type(), digest=digest, size=len(image.raw_manifest())
    )


def push(
    store: Store,
    image: str,
    dest: str | None = None,
    *,
    registries: Registries | None = None,
    progress: ProgressFn | None = None,
) -> tuple[transports.ImageRef, Descriptor]:
    """Push the stored ``image`` to ``dest`` (default: its own name, in its registry).

    A ``dest`` without a transport prefix is a registry name, as for ``docker push``; any
    other transport works too. Returns the destination and the pushed manifest's descriptor.
    """
    stored = store.get_image(image)
    if dest is None:
        dest = _own_name(image, stored.names())
    item, dst = for_registry(store, stored, with_registries(registry_name(dest), registries))
    return dst, transports.copy(item, dst, progress=_relabel(item, progress))


def _relabel(item: object, progress: ProgressFn | None) -> ProgressFn | None:
    """``progress`` where layers uploaded while compressing say "done", not "skipped"."""
    streamed: frozenset[Digest] = getattr(item, "streamed", frozenset())
    if progress is None or not streamed:
        return progress
    callback = progress

    def show(p: Progress) -> None:
        if p.kind == "layer" and p.state == "skipped" and p.descriptor.digest in streamed:
            p = replace(p, state="done")
        callback(p)

    return show


def _own_name(image: str, names: Sequence[str]) -> str:
    """The name ``image`` was given by (normalised), else the image's first tag."""
    with contextlib.suppress(InvalidReference):
        wanted = str(reference.parse(image))
        if wanted in names:
            return wanted
    tagged = [n for n in names if "@" not in n]
    if not tagged:
        raise UsageError(f"{image} has no name to push to", hint="give a destination")
    return tagged[0]


def copy_to(
    store: Store,
    src: Image | ImageIndex | transports.ImageRef,
    dst: transports.ImageRef,
    *,
    platform: Platform | None = None,
    progress: ProgressFn | None = None,
) -> Descriptor:
    """Copy ``src`` to ``dst`` with the registry conversions of :func:`for_registry`."""
    item, dst = for_registry(store, src, dst)
    return transports.copy(item, dst, platform=platform, progress=_relabel(item, progress))


def for_registry(
    store: Store, src: Image | ImageIndex | transports.ImageRef, dst: transports.ImageRef
) -> tuple[Image | ImageIndex | transports.ImageRef, transports.ImageRef]:
    """What to copy where when ``dst`` is a registry: a stored image gets gzip layers
    (:func:`compressed_for_push`), and ``dst`` may mount blobs from other repositories of the
    same registry (a registry source's, or those of the stored image's other names)."""
    if not isinstance(dst, DockerRef):
        return src, dst
    item: Image | ImageIndex | transports.ImageRef = src
    if isinstance(src, DockerRef) and src.host == dst.host:
        dst = dst.with_registries(dst.registries or Registries(), [src.repository])
    if isinstance(src, transports.ImageRef) and src.transport == "local":
        item = src.open()
    if isinstance(item, StoreImage):
        dst = dst.with_registries(dst.registries or Registries(), _same_host(item, dst))
        target = dst
        try:
            item = compressed_for_push(
                store, item, upload=lambda: target.client().open_upload(target.repository)
            )
        except RegistryError as exc:
            raise exc.with_context(f"pushing to {dst}") from None
    return item, dst


def _same_host(image: StoreImage, dst: DockerRef) -> list[str]:
    out: list[str] = []
    for name in image.names():
        with contextlib.suppress(Exception):
            ref = reference.parse(name)
            if ref.domain == dst.host and ref.path != dst.repository:
                out.append(ref.path)
    return out


__all__ = [
    "PushImage",
    "compressed_for_push",
    "copy_to",
    "for_registry",
    "gzip_blob",
    "login",
    "logout",
    "open_registries",
    "pull",
    "push",
    "registry_name",
    "transport_options",
    "with_registries",
]
