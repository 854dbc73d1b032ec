"""The build graph: stages, their dependencies, target pruning and parallel levels.

A stage depends on the earlier stage its FROM names (after global-ARG expansion), and on every
stage named (or indexed) by ``COPY --from`` or ``RUN --mount=from=`` (these may name later
stages; any other value is an image). Invariants of :class:`BuildGraph`: there are no cycles
(a cycle is the error "circular dependency detected on stage: X"); ``needed`` lists exactly the
stages the target reaches, each after its dependencies; ``levels`` partitions ``needed`` into
sets whose members depend only on earlier levels, so each level can run in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.dockerfile.ast import Document
from lamina.dockerfile.instructions import Copy, Run, Stage, Stages, parse_stages
from lamina.dockerfile.scope import (
    DEFAULT_PATH,
    PLATFORM_ARGS,
    PROXY_ARGS,
    GlobalScope,
    ResolvedStage,
    locate,
    make_lexer,
    platform_args,
    resolve_global,
    resolve_stage,
)
from lamina.errors import DockerfileError

if TYPE_CHECKING:
    from lamina.dockerfile.shell import Lexer

ImageEnv = Callable[[str], Sequence[str]]


def default_image_env(ref: str) -> Sequence[str]:
    """Env assumed for an external base image before its config is known: a default PATH."""
    return () if ref == "scratch" else (f"PATH={DEFAULT_PATH}",)


@lazy_dataclass(frozen=True, kw_only=True)
class StageNode:
    """One stage in the graph. ``base_stage`` is set when FROM names an earlier stage,
    otherwise ``base_image`` holds the expanded image reference (``scratch`` included).
    ``deps`` are stage indexes (sorted, unique); ``images`` external ``--from`` images."""

    index: int
    name: str | None
    stage: Stage
    resolved: ResolvedStage
    base_stage: int | None
    base_image: str | None
    deps: tuple[int, ...]
    images: tuple[str, ...]


@lazy_dataclass(frozen=True, kw_only=True)
class BuildGraph:
    """Every stage, the target, the stages it needs in dependency order, parallel levels."""

    stages: tuple[StageNode, ...]
    global_scope: GlobalScope
    target: int
    needed: tuple[int, ...]
    levels: tuple[tuple[int, ...], ...]
    unused_build_args: tuple[str, ...]
    parsed: Stages

    def find(self, ref: str) -> StageNode | None:
        """The stage called ``ref`` (case-insensitive) or with index ``ref``; else None."""
        index = _lookup(ref, self.stages, len(self.stages))
        return None if index is None else self.stages[index]

    @property
    def unused_build_args_warning(self) -> str | None:
        """BuildKit's warning text for unconsumed build-args, None when all were used."""
        if not self.unused_build_args:
            return None
        return f"One or more build-args [{' '.join(self.unused_build_args)}] were not consumed"


def _lookup(ref: str, stages: Sequence[StageNode | Stage], limit: int) -> int | None:
    lowered = ref.lower()
    for node in stages[:limit]:
        if node.name is not None and node.name == lowered:
            return node.index
    if ref.isdigit() and ref.isascii():
        index = int(ref)
        if index < len(stages):
            return index
    return None


def _from_refs(resolved: ResolvedStage) -> list[str]:
    refs: list[str] = []
    for step in resolved.steps:
        instr = step.instruction
        if isinstance(instr, Copy) and instr.from_:
            refs.append(instr.from_)
        elif isinstance(instr, Run):
            refs += [m.from_ for m in instr.mounts if m.from_]
    return refs


def build_graph(
    source: Document | Stages,
    *,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    platform: Mapping[str, str] | None = None,
    image_env: ImageEnv = default_image_env,
    lexer: Lexer | None = None,
) -> BuildGraph:
    """Plan a build: expand FROM/--from references, link stages, prune to ``target``.

    ``platform`` defaults to :func:`platform_args` for linux/amd64. ``image_env`` gives the
    env of an external base image (used for expansion inside stages built on it).
    Raises DockerfileError (no stages, unknown target, circular dependency, bad expansion).
    """
    parsed = source if isinstance(source, Stages) else parse_stages(source)
    path = parsed.document.path
    if not parsed.stages:
        raise DockerfileError("dockerfile contains no stages to build", path=path, line=1, column=1)
    lexer = lexer or make_lexer(parsed.document.escape)
    build_args = dict(build_args or {})
    scope = resolve_global(
        parsed.meta_args,
        build_args=build_args,
        platform=platform if platform is not None else platform_args(),
        lexer=lexer,
        path=path,
    )
    nodes: list[StageNode] = []
    for stage in parsed.stages:
        nodes.append(_plan_stage(stage, nodes, scope, build_args, image_env, lexer, path))
    nodes = _link_from_refs(nodes, path)
    _check_cycles(nodes, path)
    target_index = _target_index(nodes, target, path)
    needed = _reachable(nodes, target_index)
    levels = _levels(nodes, needed)
    used = set(scope.used_build_args)
    for i in needed:
        used |= nodes[i].resolved.used_build_args
    ignored = set(PROXY_ARGS) | set(PLATFORM_ARGS)
    unused = sorted(
        k
        for k in build_args
        if k not in used and k not in ignored and not k.startswith("BUILDKIT_")
    )
    return BuildGraph(
        stages=tuple(nodes),
        global_scope=scope,
        target=target_index,
        needed=tuple(i for level in levels for i in level),
        levels=levels,
        unused_build_args=tuple(unused),
        parsed=parsed,
    )


def _plan_stage(
    stage: Stage,
    earlier: list[StageNode],
    scope: GlobalScope,
    build_args: Mapping[str, str],
    image_env: ImageEnv,
    lexer: Lexer,
    path: str,
) -> StageNode:
    try:
        base_name = lexer.process_word(stage.base_name, scope.values)
    except DockerfileError as exc:
        raise locate(exc, stage.from_, path) from None
    if not base_name:
        raise DockerfileError(
            f"base name ({stage.base_name}) should not be blank",
            path=path,
            line=stage.from_.line,
            column=1,
        )
    parent = _lookup(base_name, earlier, len(earlier)) if not base_name.isdigit() else None
    base_env = earlier[parent].resolved.env_map if parent is not None else image_env(base_name)
    resolved = resolve_stage(
        stage, scope, build_args=build_args, base_env=base_env, lexer=lexer, path=path
    )
    return StageNode(
        index=stage.index,
        name=stage.name,
        stage=stage,
        resolved=resolved,
        base_stage=parent,
        base_image=None if parent is not None else base_name,
        deps=() if parent is None else (parent,),
        images=(),
    )


def _link_from_refs(nodes: list[StageNode], path: str) -> list[StageNode]:
    out = []
    for node in nodes:
        deps = set(node.deps)
        images: list[str] = []
        for ref in _from_refs(node.resolved):
            index = _lookup(ref, nodes, len(nodes))
            if index is None:
                images.append(ref)
            else:
                deps.add(index)
        out.append(
            StageNode(
                index=node.index,
                name=node.name,
                stage=node.stage,
                resolved=node.resolved,
                base_stage=node.base_stage,
                base_image=node.base_image,
                deps=tuple(sorted(deps)),
                images=tuple(dict.fromkeys(images)),
            )
        )
    return out


def _label(node: StageNode) -> str:
    return node.name if node.name is not None else str(node.index)


def _check_cycles(nodes: Sequence[StageNode], path: str) -> None:
    state = [0] * len(nodes)  # 0 new, 1 on stack, 2 done
    for root in range(len(nodes)):
        if state[root]:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            i, k = stack[-1]
            deps = nodes[i].deps
            if k == len(deps):
                state[i] = 2
                stack.pop()
                continue
            stack[-1] = (i, k + 1)
            j = deps[k]
            if state[j] == 1:
                raise DockerfileError(
                    f"circular dependency detected on stage: {_label(nodes[j])}",
                    path=path,
                    line=nodes[j].stage.from_.line,
                    column=1,
                )
            if state[j] == 0:
                state[j] = 1
                stack.append((j, 0))


def _target_index(nodes: Sequence[StageNode], target: str | None, path: str) -> int:
    if not target:
        return len(nodes) - 1
    for node in nodes:
        if node.name is not None and node.name == target.lower():
            return node.index
    raise DockerfileError(f'target stage "{target}" could not be found', path=path)


def _reachable(nodes: Sequence[StageNode], target: int) -> set[int]:
    seen = {target}
    todo = [target]
    while todo:
        for dep in nodes[todo.pop()].deps:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _levels(nodes: Sequence[StageNode], needed: set[int]) -> tuple[tuple[int, ...], ...]:
    level: dict[int, int] = {}

    def depth(i: int) -> int:
        todo = [i]
        while todo:
            j = todo[-1]
            pending = [d for d in nodes[j].deps if d not in level]
            if pending:
                todo += pending
                continue
            level[j] = 1 + max((level[d] for d in nodes[j].deps), default=-1)
            todo.pop()
        return level[i]

    buckets: dict[int, list[int]] = {}
    for i in sorted(needed):
        buckets.setdefault(depth(i), []).append(i)
    return tuple(tuple(buckets[k]) for k in sorted(buckets))
