"""Build steps: one function per instruction kind, all working on a :class:`StageState`.

:func:`execute_step` dispatches one expanded instruction: RUN (:mod:`.run`), COPY/ADD and
WORKDIR (:mod:`.files`) become progress vertices and may produce layers; every other
instruction is metadata (:mod:`.meta`). Any BuildError or DockerfileError leaving a step is
located at the instruction's line (``Dockerfile:LINE``) and its stage, and the vertex is
reported as failed, so callers see one error naming where the build broke.
"""

from __future__ import annotations

from collections.abc import Mapping

from lamina.build.progress import Vertex
from lamina.build.steps.base import BuildEnv, StageState
from lamina.build.steps.meta import apply_meta
from lamina.dockerfile import instructions as ins
from lamina.errors import BuildError, DockerfileError, LaminaError, StorageError, UnionFSError

LAYER_STEPS = (ins.Run, ins.Copy, ins.Add, ins.Workdir)


def has_vertex(instr: ins.Instruction) -> bool:
    """Whether the instruction is shown as a progress vertex (it may make a layer)."""
    return isinstance(instr, LAYER_STEPS)


def execute_step(
    env: BuildEnv,
    state: StageState,
    instr: ins.Instruction,
    visible: Mapping[str, str],
    global_args: Mapping[str, str],
    *,
    vertex: Vertex | None,
    stage: str,
) -> None:
    """Run one instruction against ``state`` (see the module docstring)."""
    try:
        env.check_cancelled()
        if isinstance(instr, ins.Run):
            assert vertex is not None
            # imported here: a build without RUN never loads the runtime (runc wrapper, spec)
            from lamina.build.steps.run import run_step

            run_step(env, state, instr, visible, vertex)
        elif isinstance(instr, ins.Copy | ins.Add):
            assert vertex is not None
            # imported here: a RUN-only build never loads the copier, source keys, stat cache
            from lamina.build.steps.files import copy_step

            copy_step(env, state, instr, visible, vertex)
        elif isinstance(instr, ins.Workdir):
            from lamina.build.steps.files import workdir_step

            workdir_step(env, state, instr, vertex)
        else:
            apply_meta(env, state, instr, global_args)
    except BuildError as exc:
        if vertex is not None:
            vertex.error(exc.message)
        if exc.line is None:
            exc.line = instr.line
        if exc.stage is None:
            exc.stage = stage
        raise
    except (DockerfileError, StorageError, UnionFSError) as exc:
        if vertex is not None:
            vertex.error(exc.message)
        raise located(exc, instr, stage) from exc
    except LaminaError as exc:
        if vertex is not None:
            vertex.error(exc.message)
        raise located(exc, instr, stage) from exc


def located(exc: LaminaError, instr: ins.Instruction, stage: str) -> BuildError:
    """A BuildError carrying ``exc``'s message, located at ``instr``."""
    return BuildError(exc.message, stage=stage, line=instr.line, hint=exc.hint)


__all__ = ["BuildEnv", "StageState", "execute_step", "has_vertex", "located"]
