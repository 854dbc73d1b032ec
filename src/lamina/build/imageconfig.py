"""Metadata instructions applied to an image's container config, as Docker does.

Shared by ``import --change``, ``commit --change`` and the builder. The config is Docker's
container config object (``Env``, ``Cmd``, ``Entrypoint``, ``WorkingDir``, ...). Functions
return a new dict; the input is never mutated.

Rules kept from Docker/BuildKit:
- shell-form CMD/ENTRYPOINT/HEALTHCHECK run through the current ``Shell`` (default
  ``["/bin/sh", "-c"]``);
- setting ENTRYPOINT clears a CMD inherited from the base image (unless this stage sets CMD
  again afterwards — the caller passes ``cmd_set_in_stage``);
- ENV replaces an existing key in place and appends new keys;
- WORKDIR is resolved against the previous working directory.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from lamina.dockerfile import instructions as ins
from lamina.dockerfile import parse, parse_instruction
from lamina.errors import DockerfileError, UsageError

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: instructions ``--change`` accepts (docker import/commit)
CHANGE_INSTRUCTIONS = frozenset(
    {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL",
     "USER", "VOLUME", "WORKDIR", "SHELL"}
)  # fmt: skip


def env_list_set(env: Sequence[str], key: str, value: str) -> list[str]:
    """``env`` with ``key=value`` replacing an existing entry in place or appended."""
    out = list(env)
    for i, entry in enumerate(out):
        if entry.partition("=")[0] == key:
            out[i] = f"{key}={value}"
            return out
    out.append(f"{key}={value}")
    return out


def env_map(env: Sequence[str]) -> dict[str, str]:
    """``K=V`` list to a dict (last wins)."""
    return dict(e.partition("=")[::2] for e in env)


def shell_command(instr: ins.ShellDependent, config: Mapping[str, Any]) -> list[str] | None:
    """The argv an exec- or shell-form CMD/ENTRYPOINT/RUN means (None for an empty form)."""
    if instr.cmdline is None:
        return None
    if instr.prepend_shell:
        shell = list(config.get("Shell") or DEFAULT_SHELL)
        return [*shell, " ".join(instr.cmdline)]
    return list(instr.cmdline)


def apply(
    config: Mapping[str, Any], instr: ins.Instruction, *, cmd_set_in_stage: bool = False
) -> dict[str, Any]:
    """A copy of ``config`` with the metadata instruction ``instr`` applied."""
    cfg = copy.deepcopy(dict(config))
    if isinstance(instr, ins.Cmd):
        cfg["Cmd"] = shell_command(instr, cfg)
    elif isinstance(instr, ins.Entrypoint):
        cfg["Entrypoint"] = shell_command(instr, cfg)
        if not cmd_set_in_stage:
            cfg["Cmd"] = None
    elif isinstance(instr, ins.Env):
        env = list(cfg.get("Env") or [])
        for kv in instr.pairs:
            env = env_list_set(env, kv.key, kv.value)
        cfg["Env"] = env
    elif isinstance(instr, ins.Label):
        labels = dict(cfg.get("Labels") or {})
        labels.update({kv.key: kv.value for kv in instr.pairs})
        cfg["Labels"] = labels
    elif isinstance(instr, ins.Expose):
        ports = dict(cfg.get("ExposedPorts") or {})
        for port in instr.ports:
            ports[port if "/" in port else f"{port}/tcp"] = {}
        cfg["ExposedPorts"] = ports
    elif isinstance(instr, ins.User):
        cfg["User"] = instr.user
    elif isinstance(instr, ins.Workdir):
        cfg["WorkingDir"] = posixpath.normpath(
            posixpath.join(cfg.get("WorkingDir") or "/", instr.path)
        )
    elif isinstance(instr, ins.Volume):
        vols = dict(cfg.get("Volumes") or {})
        vols.update({p: {} for p in instr.paths})
        cfg["Volumes"] = vols
    elif isinstance(instr, ins.StopSignal):
        cfg["StopSignal"] = instr.signal
    elif isinstance(instr, ins.Shell):
        cfg["Shell"] = list(instr.shell)
    elif isinstance(instr, ins.Onbuild):
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), instr.expression]
    elif isinstance(instr, ins.Healthcheck):
        cfg["Healthcheck"] = _health(instr.health)
    else:
        raise UsageError(f"{type(instr).__name__.upper()} does not change the image config")
    return cfg


def _health(h: ins.HealthConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"Test": list(h.test)}
    for key, value in (("Interval", h.interval), ("Timeout", h.timeout),
                       ("StartPeriod", h.start_period), ("StartInterval", h.start_interval),
                       ("Retries", h.retries)):  # fmt: skip
        if value:
            out[key] = value
    return out


def apply_changes(config: Mapping[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Apply ``--change`` strings (Dockerfile metadata instructions) in order."""
    cfg = dict(config)
    cmd_set = False
    for text in changes:
        try:
            doc = parse(text.strip() + "\n", path="--change")
        except DockerfileError as exc:
            raise UsageError(f"invalid --change {text!r}: {exc.message}") from None
        for node in doc.children:
            keyword = node.keyword.upper()
            if keyword not in CHANGE_INSTRUCTIONS:
                raise UsageError(
                    f"invalid --change {text!r}: {keyword} is not allowed",
                    hint="allowed: " + ", ".join(sorted(CHANGE_INSTRUCTIONS)),
                )
            try:
                instr = parse_instruction(node, path="--change")
            except DockerfileError as exc:
                raise UsageError(f"invalid --change {text!r}: {exc.message}") from None
            cfg = apply(cfg, instr, cmd_set_in_stage=cmd_set)
            cmd_set = cmd_set or keyword == "CMD"
    return cfg
