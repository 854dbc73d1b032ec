"""What every step works on: the image state of a stage, and the build-wide environment.

:class:`StageState` is the image being built by one stage: the container config (Docker's
``Config`` object: Env, Cmd, User, WorkingDir, Shell, ...), the layers (base first, with their
store blobs), the history, and the top chain id. Steps replace it through :meth:`add_layer`
and :meth:`add_history`; ``config`` is replaced, never mutated in place, so a finished stage's
state can be shared with the stages that read it (``COPY --from``, ``FROM stage``).

:class:`BuildEnv` holds what the steps of every stage share: the store, the build cache, the
progress reporter, the build context, the epoch, RUN settings and how to find other stages
and images. It is created once per build by the executor.

:func:`lookup` and :func:`record` are the cache protocol of steps that may make a layer (RUN,
COPY, ADD, WORKDIR). A record of an empty step adds nothing; a record with a layer is usable
when the store still has that layer on the stage's current chain and its blob, or at least
the blob (then the layer is re-created from it — cheap, and exactly how ``COPY --link``
results are rebased onto a new parent). Anything else is a miss. The caller adds the step's
history entry after either, so ``history`` and ``layers`` stay aligned.
"""

from __future__ import annotations

import copy
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.build.cache import BuildCache, CacheRecord, step_key
from lamina.build.context import BuildContext
from lamina.build.progress import Reporter, Vertex
from lamina.build.secrets import SecretStore
from lamina.build.ssh import SshAgents
from lamina.build.workspace import Committed, register_blob
from lamina.errors import BuildError, NotFound
from lamina.oci import mediatype
from lamina.oci.config import History
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.store import Store, chain_id

if TYPE_CHECKING:  # the registry client (httpx, ssl) is imported only by builds that use it
    from lamina.build.regcache import RegistryCache
    from lamina.build.statcache import StatCache

HISTORY_COMMENT = "buildkit.dockerfile.v0"


def timestamp(epoch: int | None, now: datetime | None = None) -> str:
    """RFC 3339 UTC: the epoch (whole seconds) when given, else ``now`` with microseconds."""
    if epoch is not None:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    when = now or datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond:06d}Z"


@lazy_dataclass(frozen=True, kw_only=True)
class LayerRef:
    """One layer of a stage's image: the manifest descriptor of its blob and its diff_id."""

    descriptor: Descriptor
    diff_id: Digest

    @classmethod
    def uncompressed(cls, diff_id: Digest, size: int) -> LayerRef:
        """A layer built here: its blob is the plain tar (digest == diff_id)."""
        desc = Descriptor(media_type=mediatype.OCI_LAYER, digest=diff_id, size=size)
        return cls(descriptor=desc, diff_id=diff_id)


@lazy_dataclass(kw_only=True)
class StageState:
    """The image a stage is building (see the module docstring)."""

    config: dict[str, Any]
    architecture: str
    os: str
    variant: str | None = None
    author: str | None = None
    layers: list[LayerRef] = field(default_factory=list)
    history: list[History] = field(default_factory=list)
    chain: Digest | None = None
    #: ARG names declared so far (this stage and the stages it is based on), in order
    arg_names: list[str] = field(default_factory=list)
    cmd_set: bool = False

    def fork(self) -> StageState:
        """An independent copy (for a stage based on this one)."""
        return StageState(
            config=copy.deepcopy(self.config),
            architecture=self.architecture,
            os=self.os,
            variant=self.variant,
            author=self.author,
            layers=list(self.layers),
            history=list(self.history),
            chain=self.chain,
            arg_names=list(self.arg_names),
        )

    def add_history(self, created_by: str, created: str, *, empty: bool) -> None:
        """Append a BuildKit-style history entry."""
        self.history.append(
            History(
                created=created, created_by=created_by, comment=HISTORY_COMMENT, empty_layer=empty
            )
        )

    def add_layer(self, diff_id: Digest, size: int, chain: Digest) -> None:
        """Append a layer built here (uncompressed blob) and move the top to ``chain``."""
        self.layers.append(LayerRef.uncompressed(diff_id, size))
        self.chain = chain


@lazy_dataclass(frozen=True, kw_only=True)
class Source:
    """A finished stage or an imported image, for ``COPY --from`` / ``--mount=from``."""

    chain: Digest | None
    name: str


@lazy_dataclass(kw_only=True)
class BuildEnv:
    """Shared by every step of a build (see the module docstring)."""

    store: Store
    cache: BuildCache
    reporter: Reporter
    context: BuildContext | None
    dockerfile: str
    created: str
    epoch: int | None
    no_cache: bool
    network: str
    isolation: str
    runtime_name: str | None
    secrets: SecretStore
    build_args: Mapping[str, str]
    platform: str
    find_source: Callable[[str], Source]
    #: the registry caches (``--cache-from``/``--cache-to``), if any
    remote: RegistryCache | None = None
    #: the ``--ssh`` agents (RUN --mount=type=ssh, ADD git@…), if any
    ssh: SshAgents | None = None
    _local: threading.local = field(default_factory=threading.local)
    cancelled: threading.Event = field(default_factory=threading.Event)
    _running: dict[str, Any] = field(default_factory=dict)
    _running_lock: threading.Lock = field(default_factory=threading.Lock)

    def check_cancelled(self) -> None:
        """Raise BuildError when the build was cancelled (checked before every step)."""
        if self.cancelled.is_set():
            raise BuildError("build cancelled")

    def track(self, container_id: str, runtime: Any | None) -> None:
        """Remember (runtime given) or forget (None) a running RUN container."""
        with self._running_lock:
            if runtime is None:
                self._running.pop(container_id, None)
            else:
                self._running[container_id] = runtime

    def cancel(self) -> None:
        """Stop the build: later steps refuse to start, running RUN containers are killed."""
        self.cancelled.set()
        with self._running_lock:
            running = list(self._running.items())
        for container_id, runtime in running:
            try:
                runtime.kill(container_id, signal.SIGKILL)
            except Exception:  # it may have exited meanwhile
                continue

    def cache_key(self, *parts: object) -> str:
        """A step's cache key from ``parts`` (digests as text), scoped to the platform."""
        return step_key([self.platform, *[str(p) if isinstance(p, Digest) else p for p in parts]])

    def ensure_layer(self, chain: Digest | None) -> None:
        """Make sure the store holds the layer ``chain`` before its files are used: a registry
        cache hit is downloaded here, on first need (no-op otherwise)."""
        if chain is not None and self.remote is not None:
            self.remote.materialize(self.store, chain)

    def stat_cache(self) -> StatCache:
        """This thread's stat cache (sqlite objects belong to one thread); the thread closes
        it with :meth:`close_thread` when it is done."""
        cache: StatCache | None = getattr(self._local, "stat_cache", None)
        if cache is None:
            from lamina.build.statcache import StatCache  # COPY/ADD and bind mounts only

            self.cache.directory.mkdir(parents=True, exist_ok=True)
            cache = StatCache(self.cache.directory / "statcache.db")
            self._local.stat_cache = cache
        return cache

    def close_thread(self) -> None:
        """Flush and close the calling thread's stat cache, if it opened one (idempotent)."""
        cache: StatCache | None = getattr(self._local, "stat_cache", None)
        if cache is not None:
            self._local.stat_cache = None
            cache.close()

    def require_context(self, what: str) -> BuildContext:
        """The build context, or BuildError when the build has none."""
        if self.context is None:
            raise BuildError(f"{what}: this build has no context")
        return self.context


def lookup(env: BuildEnv, state: StageState, key: str, vertex: Vertex) -> bool | None:
    """Apply a cached result for ``key``: True (a layer added), False (an empty step), or
    None on a miss (also with ``--no-cache``). The local cache is asked first, then the
    registry caches (their layers are downloaded only when needed: :meth:`BuildEnv.ensure_layer`).
    A hit is reported on ``vertex`` (``cached``, text ``registry`` for a registry hit)."""
    if env.no_cache:
        return None
    hit = _local_hit(env, state, key)
    source = ""
    if hit is None and env.remote is not None:
        found = env.remote.take(key, state.chain)
        if found is not None:
            # valid locally once the layer is fetched (a local hit needs the blob)
            env.cache.put(
                key, CacheRecord(diff_id=found.diff_id, blob=found.diff_id, size=found.size)
            )
            if found.diff_id is not None:
                state.add_layer(found.diff_id, found.size, chain_id(state.chain, found.diff_id))
            hit, source = found.diff_id is not None, "registry"
    if hit is not None:
        vertex.cached(source)
    return hit


def _local_hit(env: BuildEnv, state: StageState, key: str) -> bool | None:
    rec = env.cache.get(key)
    if rec is None:
        return None
    parent = state.chain
    if rec.diff_id is None:
        _note(env, key, None, 0, None, parent)
        return False
    if rec.blob is None or not env.store.blobs.has(rec.blob):
        return None  # the image would need the blob: run the step again
    chain = chain_id(parent, rec.diff_id)
    try:
        env.store.layers.get(chain)
    except NotFound:
        env.ensure_layer(parent)
        register_blob(env.store, parent, rec.blob, rec.size)
    state.add_layer(rec.diff_id, rec.size, chain)
    _note(env, key, rec.diff_id, rec.size, chain, chain)
    return True


def _note(
    env: BuildEnv, key: str, diff_id: Digest | None, size: int, chain: Digest | None,
    result: Digest | None,
) -> None:  # fmt: skip
    """Tell the registry caches (if any) what ``key`` gave, for ``--cache-to``."""
    if env.remote is not None:
        from lamina.build.regcache import Produced

        env.remote.note(
            key, Produced(diff_id=diff_id, size=size, chain=chain, result=result, remote=None)
        )


def record(env: BuildEnv, state: StageState, key: str, committed: Committed | None) -> bool:
    """Remember what a step produced under ``key`` and apply it; True if it added a layer."""
    if committed is None:
        env.cache.put(key, CacheRecord(diff_id=None))
        _note(env, key, None, 0, None, state.chain)
        return False
    env.cache.put(
        key,
        CacheRecord(diff_id=committed.diff_id, blob=committed.diff_id, size=committed.size),
    )
    state.add_layer(committed.diff_id, committed.size, committed.chain)
    _note(env, key, committed.diff_id, committed.size, committed.chain, committed.chain)
    return True
