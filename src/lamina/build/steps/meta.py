"""Metadata-only instructions: config changes and ``empty_layer`` history entries, no vertex.

The config change itself is :func:`lamina.build.imageconfig.apply` (shared with ``import
--change``); this module adds BuildKit's history text for each instruction
(``dockerfile2llb``'s ``commitToHistory`` calls: ``ENV a=1``, ``CMD ["a" "b"]`` in Go ``%q``
form, ``VOLUME [/a /b]`` in ``%v`` form, ...). ONBUILD records its trigger without history, as
BuildKit does; MAINTAINER sets the image author; ARG only records the name (for RUN's
history) and its resolved value in the entry.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Mapping

from lamina.build import imageconfig
from lamina.build.steps.base import BuildEnv, StageState
from lamina.dockerfile import instructions as ins
from lamina.dockerfile.dump import go_quote
from lamina.dockerfile.ports import PortError, parse_ports
from lamina.errors import BuildError


def _go_list(items: list[str] | tuple[str, ...] | None) -> str:
    return "[" + " ".join(go_quote(i) for i in items or []) + "]"


def _plain_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + " ".join(items) + "]"


def arg_history(instr: ins.Arg, env: BuildEnv, global_args: Mapping[str, str]) -> str:
    """``ARG a=1 b``: each name with the value it resolved to (build-arg, default, global)."""
    parts = []
    for a in instr.args:
        value: str | None
        if a.key in env.build_args:
            value = env.build_args[a.key]
        elif a.value is not None:
            value = a.value
        else:
            value = global_args.get(a.key)
        parts.append(a.key if value is None else f"{a.key}={value}")
    return "ARG " + " ".join(parts)


def _check_signal(text: str) -> None:
    name = text.upper()
    if name.isdigit() and int(name) > 0:
        return
    name = name if name.startswith("SIG") else "SIG" + name
    if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX") or hasattr(signal, name):
        return
    raise BuildError(f"Invalid signal: {text}")


def apply_meta(
    env: BuildEnv, state: StageState, instr: ins.Instruction, global_args: Mapping[str, str]
) -> None:
    """Apply one metadata instruction to ``state`` (config, author, history)."""
    text: str | None
    if isinstance(instr, ins.Arg):
        for a in instr.args:
            if a.key not in state.arg_names:
                state.arg_names.append(a.key)
        state.add_history(arg_history(instr, env, global_args), env.created, empty=True)
        return
    if isinstance(instr, ins.Maintainer):
        state.author = instr.maintainer
        state.add_history(f"MAINTAINER {instr.maintainer}", env.created, empty=True)
        return
    if isinstance(instr, ins.StopSignal):
        _check_signal(instr.signal)
    applied = instr
    if isinstance(instr, ins.Expose):  # ranges and protocols as Docker's nat.ParsePortSpecs
        try:
            applied = dataclasses.replace(instr, ports=tuple(parse_ports(instr.ports)))
        except PortError as exc:
            raise BuildError(str(exc)) from exc
    state.config = imageconfig.apply(state.config, applied, cmd_set_in_stage=state.cmd_set)
    if isinstance(instr, ins.Cmd):
        state.cmd_set = True
        text = f"CMD {_go_list(state.config.get('Cmd'))}"
    elif isinstance(instr, ins.Entrypoint):
        text = f"ENTRYPOINT {_go_list(state.config.get('Entrypoint'))}"
    elif isinstance(instr, ins.Env):
        text = "ENV " + " ".join(f"{p.key}={p.value}" for p in instr.pairs)
    elif isinstance(instr, ins.Label):
        text = "LABEL " + " ".join(f"{p.key}={p.value}" for p in instr.pairs)
    elif isinstance(instr, ins.Expose):
        text = "EXPOSE " + " ".join(instr.ports)
    elif isinstance(instr, ins.User):
        text = f"USER {instr.user}"
    elif isinstance(instr, ins.Volume):
        text = f"VOLUME {_plain_list(instr.paths)}"
    elif isinstance(instr, ins.StopSignal):
        text = f"STOPSIGNAL {instr.signal}"
    elif isinstance(instr, ins.Shell):
        text = f"SHELL {_plain_list(instr.shell)}"
    elif isinstance(instr, ins.Healthcheck):
        text = instr.health.history_text()
    else:  # ONBUILD: recorded in the config only
        text = None
    if text is not None:
        state.add_history(text, env.created, empty=True)
