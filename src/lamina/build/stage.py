"""One build stage: its base (an image, an earlier stage, or scratch), ONBUILD triggers, steps.

:func:`image_state` turns a stored base image into the initial :class:`StageState` (its config,
history and layers; Docker media types named as their OCI equivalents, since built images use
OCI manifests). :func:`scratch_state` is BuildKit's empty image (Env = the default PATH).
:func:`build_stage` runs the stage's expanded steps in order; ONBUILD triggers of an *image*
base run first, as if written right after FROM, and are then dropped from the config (stage
bases never pass their triggers on, as in BuildKit).

Progress vertices are numbered like BuildKit's: ``[stage i/N]`` where N counts FROM and the
instructions that may make a layer (RUN, COPY, ADD, WORKDIR).
"""

from __future__ import annotations

from collections.abc import Mapping

from lamina.build.progress import step_label
from lamina.build.steps import execute_step, has_vertex, located
from lamina.build.steps.base import BuildEnv, LayerRef, StageState
from lamina.dockerfile import parse, parse_instruction
from lamina.dockerfile.graph import StageNode
from lamina.dockerfile.instructions import Instruction, Run
from lamina.dockerfile.scope import expand_instruction
from lamina.errors import BuildError, DockerfileError
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.platform import Platform
from lamina.store import StoreImage

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _oci_descriptor(desc: Descriptor) -> Descriptor:
    if desc.media_type == mediatype.DOCKER_LAYER_GZIP:
        return Descriptor(media_type=mediatype.OCI_LAYER_GZIP, digest=desc.digest, size=desc.size)
    return Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)


def image_state(image: StoreImage) -> StageState:
    """The initial state of a stage built on the stored ``image``."""
    config = image.config()
    manifest = image.manifest()
    layers = [
        LayerRef(descriptor=_oci_descriptor(desc), diff_id=diff)
        for desc, diff in zip(manifest.layers, config.diff_ids, strict=True)
    ]
    return StageState(
        config=dict(config.config or {}),
        architecture=config.architecture,
        os=config.os,
        variant=config.variant,
        author=config.author,
        layers=layers,
        history=list(config.history),
        chain=image.record.top_layer if layers else None,
    )


def scratch_state(platform: Platform) -> StageState:
    """BuildKit's empty image for ``FROM scratch``."""
    return StageState(
        config={"Env": [f"PATH={DEFAULT_PATH}"]},
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
    )


def _display(instr: Instruction) -> str:
    """The vertex text: the instruction as written, keyword upper-cased; a RUN with one
    heredoc gets BuildKit's summary of it: ``RUN <<EOT (first line...)``."""
    text = (instr.node.original or instr.keyword).split("\n", 1)[0]
    word, _, rest = text.partition(" ")
    shown = f"{word.upper()} {rest}".strip()
    if isinstance(instr, Run) and instr.files and len(instr.cmdline or ()) == 1:
        lines = instr.files[0].data.strip().replace("\r\n", "\n").split("\n")
        shown += f" ({lines[0]}{'...' if len(lines) > 1 else ''})"
    return shown


def _triggers(state: StageState, env: BuildEnv, visible: Mapping[str, str]) -> list[Instruction]:
    triggers = list(state.config.get("OnBuild") or [])
    state.config = {k: v for k, v in state.config.items() if k != "OnBuild"}
    out: list[Instruction] = []
    for text in triggers:
        try:
            doc = parse(str(text) + "\n", path=env.dockerfile)
            if len(doc.children) != 1:
                raise DockerfileError("onbuild trigger should be a single expression")
            instr = parse_instruction(doc.children[0], path=env.dockerfile)
            out.append(expand_instruction(instr, visible)[0])
        except DockerfileError as exc:
            raise BuildError(f"ONBUILD trigger {text!r}: {exc.message}") from exc
    return out


def build_stage(
    env: BuildEnv,
    node: StageNode,
    base: StageState,
    *,
    from_image: bool,
    global_args: Mapping[str, str],
    from_label: str | None,
) -> StageState:
    """Run every step of ``node`` on a fork of ``base``; returns the stage's final state.

    ``from_label`` is the FROM vertex text (None: no FROM vertex, e.g. a stage base).
    """
    state = base.fork()
    stage_name = node.name or str(node.index)
    steps = node.resolved.steps
    first_env = steps[0].env if steps else {}
    triggers = _triggers(state, env, first_env) if from_image else []
    if not from_image:
        state.config = {k: v for k, v in state.config.items() if k != "OnBuild"}
    work = [(t, first_env, True) for t in triggers] + [(s.instruction, s.env, False) for s in steps]
    total = 1 + sum(1 for instr, _e, _t in work if has_vertex(instr))
    if from_label is not None:
        env.reporter.start(step_label(node.name, 1, total, from_label)).done()
    index = 1
    for instr, visible, is_trigger in work:
        vertex = None
        if has_vertex(instr):
            index += 1
            text = ("ONBUILD " if is_trigger else "") + _display(instr)
            vertex = env.reporter.start(step_label(node.name, index, total, text))
        try:
            execute_step(env, state, instr, visible, global_args, vertex=vertex, stage=stage_name)
        except DockerfileError as exc:
            raise located(exc, instr, stage_name) from exc
    return state
