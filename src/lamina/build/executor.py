"""The build executor: plan the graph, resolve base images, run stages level by level.

:func:`execute` is the whole build of one Dockerfile up to its target stage:

1. plan the graph once to learn the base images and ``--from`` images of the needed stages;
   resolve each (the local store, or any transport reference, imported into the store once);
2. plan again with the real env of each base image (ARG/ENV expansion inside stages sees it);
3. run the graph's ``levels`` in order; the stages of one level run in parallel threads
   (each depends only on earlier levels), every step through :mod:`lamina.build.steps`.

The store's ``gc.lock`` is held shared for the whole build, so ``gc``/``prune`` never collect
a layer the build has made but no image references yet. A failing stage cancels nothing
already running but the first error (by stage order) is raised once all threads of its level
have stopped; nothing is left mounted (every mount lives in a ``with``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeAlias

from lamina import transports
from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.lock import flocked
from lamina.build.stage import build_stage, image_state, scratch_state
from lamina.build.steps.base import BuildEnv, Source, StageState
from lamina.dockerfile import BuildGraph, Document, build_graph
from lamina.dockerfile.graph import StageNode
from lamina.dockerfile.instructions import Copy, Run
from lamina.dockerfile.scope import platform_args
from lamina.errors import BuildError, InvalidReference, LaminaError, NotFound
from lamina.oci.platform import Platform
from lamina.store import Store, StoreImage
from lamina.transports.base import ImageRef

if TYPE_CHECKING:  # the registry client (httpx, ssl) is imported only by builds that pull
    from concurrent.futures import ThreadPoolExecutor

    from lamina.transports.docker import Registries

#: the registries of a build, or a function that makes them when first needed (a build that
#: pulls, pushes and caches nothing then never loads the registry client)
RegistriesArg: TypeAlias = "Registries | Callable[[], Registries] | None"


def registries_of(value: RegistriesArg) -> Registries | None:
    """``value``, or what the factory ``value`` returns (call this only when about to use it)."""
    return value() if callable(value) else value


@lazy_dataclass(frozen=True, kw_only=True)
class Plan:
    """What to build: the parsed Dockerfile, target, build-args, the target platform, and
    whether to pull base images from their registries first (``--pull``); ``registries``
    (credentials, TLS options; or their factory) for those pulls, else anonymous defaults."""

    document: Document
    target: str | None
    build_args: Mapping[str, str]
    platform: Platform
    pull: bool = False
    max_parallel: int = 4
    registries: RegistriesArg = None


def _explicit_registry(name: str) -> bool:
    """True when ``name`` names its registry (``host.tld/x``, ``host:5000/x``, ``localhost/x``)."""
    first, sep, _rest = name.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def _with_registries(ref: ImageRef, registries: RegistriesArg) -> ImageRef:
    """``ref`` with the caller's registry options when it is a ``docker://`` reference."""
    if registries is None or ref.transport != "docker":
        return ref
    from lamina.transports.docker import DockerRef  # the registry client: only when used

    made = registries_of(registries)
    if made is None or not isinstance(ref, DockerRef):
        return ref
    return ref.with_registries(made)


def _pull(
    store: Store, name: str, platform: Platform, registries: RegistriesArg = None
) -> StoreImage:
    """``docker pull``: fetch ``name`` from its registry into the store under that name."""
    ref = _with_registries(transports.parse(f"docker://{name}", store=store), registries)
    digest = store.put_image(ref.open_image(platform), [name])
    return store.get_image(str(digest))


def resolve_image(
    store: Store,
    name: str,
    platform: Platform,
    *,
    pull: bool = False,
    registries: RegistriesArg = None,
) -> StoreImage:
    """The image ``name`` means: a local-store image, or a transport reference imported once.

    A plain name is looked up in the store; it is pulled from its registry (and kept under
    that name) when ``pull`` is set, or when it is missing locally and names its registry
    explicitly (``localhost:5000/app``) — never from Docker Hub implicitly. Raises BuildError
    naming the image when it cannot be found or read.
    """
    try:
        ref = transports.parse(name, store=store)
        if ref.transport != "local":
            ref = _with_registries(ref, registries)
            digest = store.put_image(ref.open_image(platform), [])
            return store.get_image(str(digest))
        if pull and "docker" in transports.TRANSPORTS:
            return _pull(store, name, platform, registries)
        try:
            return store.get_image(name)
        except NotFound:
            if "docker" not in transports.TRANSPORTS or not _explicit_registry(name):
                raise
            return _pull(store, name, platform, registries)
    except NotFound as exc:
        raise BuildError(
            f"image {name}: not found in the local store",
            hint=f"load it first (lamina load / lamina pull TRANSPORT:REF --name {name})",
        ) from exc
    except InvalidReference as exc:
        raise BuildError(f"image {name}: {exc.message}", hint=exc.hint) from exc
    except LaminaError as exc:
        raise BuildError(f"loading image {name}: {exc.message}", hint=exc.hint) from exc


class Executor:
    """One build's stage runner (see the module docstring). Not reusable."""

    def __init__(self, env: BuildEnv, plan: Plan) -> None:
        self.env = env
        self.plan = plan
        self.images: dict[str, StoreImage] = {}
        self.results: dict[int, StageState] = {}
        self.graph: BuildGraph | None = None

    def _graph(self) -> BuildGraph:
        plat = str(self.plan.platform)
        args = platform_args(plat, str(Platform.host()))

        def image_env(ref: str) -> list[str]:
            image = self.images.get(ref)
            if image is None:
                return [] if ref == "scratch" else [f"PATH={_DEFAULT_PATH}"]
            env = image.config().config.get("Env") or []
            return [str(e) for e in env]

        return build_graph(
            self.plan.document,
            target=self.plan.target,
            build_args=self.plan.build_args,
            platform=args,
            image_env=image_env,
        )

    def _resolve_images(self, graph: BuildGraph) -> None:
        for i in graph.needed:
            node = graph.stages[i]
            names = [(name, _from_line(node, name)) for name in node.images]
            if node.base_image is not None and node.base_image != "scratch":
                names.insert(0, (node.base_image, node.stage.from_.line))
            for name, line in names:
                if name not in self.images:
                    platform = self._stage_platform(node)
                    try:
                        self.images[name] = resolve_image(
                            self.env.store,
                            name,
                            platform,
                            pull=self.plan.pull,
                            registries=self.plan.registries,
                        )
                    except BuildError as exc:
                        exc.line = exc.line or line
                        exc.stage = exc.stage or (node.name or str(node.index))
                        raise

    def _stage_platform(self, node: StageNode) -> Platform:
        text = node.resolved.platform
        return Platform.parse(text) if text else self.plan.platform

    def find_source(self, ref: str) -> Source:
        """``COPY --from``/``--mount=from`` target: a finished stage or a resolved image."""
        assert self.graph is not None
        node = self.graph.find(ref)
        if node is not None:
            state = self.results.get(node.index)
            if state is None:
                raise BuildError(f"stage {ref} has not been built (internal ordering error)")
            return Source(chain=state.chain, name=ref)
        image = self.images.get(ref)
        if image is None:
            raise BuildError(f"{ref}: unknown stage or image")
        return Source(chain=image.record.top_layer if image.record.layers else None, name=ref)

    def _run_stage(self, index: int) -> StageState:
        try:
            return self._build_stage(index)
        finally:
            self.env.close_thread()

    def _build_stage(self, index: int) -> StageState:
        assert self.graph is not None
        node = self.graph.stages[index]
        if node.base_stage is not None:
            base = self.results[node.base_stage]
            from_image, label = False, None
        elif node.base_image == "scratch":
            base = scratch_state(self._stage_platform(node))
            from_image, label = False, None
        else:
            assert node.base_image is not None
            image = self.images[node.base_image]
            base = image_state(image)
            from_image, label = True, f"FROM {node.base_image}"
        return build_stage(
            self.env,
            node,
            base,
            from_image=from_image,
            global_args=self.graph.global_scope.values,
            from_label=label,
        )

    def run(self) -> StageState:
        """Build the target stage and return its final state.

        Holds the store's gc lock shared while it runs; callers that store the result take
        it again around that (flock is re-entrant for shared holders in one process).
        """
        with flocked(self.env.store.layout.gc_lock, shared=True):
            self._resolve_images(self._graph())
            self.graph = graph = self._graph()
            if graph.unused_build_args_warning:
                self.env.reporter.warning(graph.unused_build_args_warning)
            if all(len(level) == 1 for level in graph.levels):
                # one stage at a time (every level runs in this thread anyway): no pool, nor
                # concurrent.futures, whose import loads logging, traceback and queue
                self._run_levels(None, graph)
            else:
                from concurrent.futures import ThreadPoolExecutor

                workers = max(1, self.plan.max_parallel)
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
                    self._run_levels(pool, graph)
            return self.results[graph.target]

    def _run_levels(self, pool: ThreadPoolExecutor | None, graph: BuildGraph) -> None:
        try:
            for level in graph.levels:
                self._run_level(pool, level)
        except BaseException:
            # Ctrl-C / SIGTERM (or a failed stage): stop the others quickly; the pool's exit
            # then waits for them, and their ``with`` blocks unmount.
            self.env.cancel()
            raise

    def _run_level(self, pool: ThreadPoolExecutor | None, level: tuple[int, ...]) -> None:
        if len(level) == 1:  # nothing to overlap with: run it here
            self.results[level[0]] = self._build_stage(level[0])
            return
        assert pool is not None  # a level of several stages has a pool (see run)
        futures = [(i, pool.submit(self._run_stage, i)) for i in level]
        errors: list[BaseException] = []
        for i, future in futures:
            try:
                self.results[i] = future.result()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                errors.append(exc)
                self.env.cancel()  # the first failure stops the rest of the level
        if errors:
            real = [e for e in errors if not _is_cancel(e)]
            raise (real or errors)[0]


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, BuildError) and exc.message == "build cancelled"


def _from_line(node: StageNode, name: str) -> int:
    """The line of the first ``COPY --from``/``--mount=from`` in ``node`` naming ``name``."""
    for step in node.resolved.steps:
        instr = step.instruction
        if isinstance(instr, Copy) and instr.from_ == name:
            return instr.line
        if isinstance(instr, Run) and any(m.from_ == name for m in instr.mounts):
            return instr.line
    return node.stage.from_.line


_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
