"""ARG/ENV scoping and variable expansion with BuildKit's rules.

* Global ARGs (before the first FROM) are visible only to FROM lines (base name and
  ``--platform``), together with the predefined platform ARGs; a build-arg overrides a default.
* Inside a stage an ARG is visible from its declaration on; ``ARG NAME`` without a value takes
  the build-arg, else the global value, else stays unset (not exported). ENV always wins over
  an ARG of the same name. ENV is inherited from a parent stage, ARG is not.
* Each instruction is expanded with the state *before* it (``ENV a=1 b=$a`` sees the old
  ``$a``). Only the instructions BuildKit expands are expanded (which words of which
  instructions: :mod:`lamina.dockerfile.expansion`, whose :func:`expand_instruction` and
  :func:`make_lexer` are importable from here too).

Invariants: pure functions; DockerfileError (located at the instruction) is the only error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from types import MappingProxyType
from typing import TYPE_CHECKING

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.dockerfile.expansion import Expander, expand_instruction, expand_with, make_lexer
from lamina.dockerfile.instructions import Arg, ArgDef, Env, Instruction, Stage
from lamina.errors import DockerfileError

if TYPE_CHECKING:
    from lamina.dockerfile.shell import Lexer

__all__ = [
    "DEFAULT_PATH", "PLATFORM_ARGS", "PROXY_ARGS", "GlobalScope", "ResolvedStage", "Step",
    "add_env", "expand_instruction", "locate", "make_lexer", "parse_key_value", "platform_args",
    "proxy_env", "resolve_global", "resolve_stage", "to_env_map",
]  # fmt: skip

PLATFORM_ARGS = (
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
)  # fmt: skip
PROXY_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)  # fmt: skip
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def platform_args(target: str = "linux/amd64", build: str | None = None) -> dict[str, str]:
    """The eight predefined platform ARGs for ``os/arch[/variant]`` strings."""
    out: dict[str, str] = {}
    for prefix, spec in (("TARGET", target), ("BUILD", build or target)):
        os_, _, rest = spec.partition("/")
        arch, _, variant = rest.partition("/")
        out[prefix + "PLATFORM"] = spec
        out[prefix + "OS"] = os_
        out[prefix + "ARCH"] = arch
        out[prefix + "VARIANT"] = variant
    return out


def parse_key_value(entry: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (KEY, VALUE); ``KEY`` alone -> (KEY, "")."""
    key, _, value = entry.partition("=")
    return key, value


def add_env(env: Sequence[str], key: str, value: str) -> list[str]:
    """Set ``key`` in a ``KEY=VALUE`` list: replace the first entry with that key, else append."""
    out = list(env)
    for i, entry in enumerate(out):
        if parse_key_value(entry)[0] == key:
            out[i] = f"{key}={value}"
            return out
    out.append(f"{key}={value}")
    return out


def to_env_map(args: Sequence[tuple[str, str | None]], env: Sequence[str]) -> dict[str, str]:
    """The variables a RUN sees: ENV entries (later wins) plus ARGs with a value not set by ENV
    (the first ARG of a name wins)."""
    out = dict(parse_key_value(e) for e in env)
    for key, value in args:
        if value is not None and key not in out:
            out[key] = value
    return out


def proxy_env(build_args: Mapping[str, str]) -> dict[str, str] | None:
    """Proxy settings from build-args (lower-case names win), None when there are none."""
    out: dict[str, str] = {}
    for upper, field_name in (
        ("HTTP_PROXY", "HTTPProxy"), ("HTTPS_PROXY", "HTTPSProxy"), ("FTP_PROXY", "FTPProxy"),
        ("NO_PROXY", "NoProxy"), ("ALL_PROXY", "AllProxy"),
    ):  # fmt: skip
        for name in (upper.lower(), upper):
            if name in build_args:
                out[field_name] = build_args[name]
                break
    return out or None


@lazy_dataclass(frozen=True, kw_only=True)
class GlobalScope:
    """What FROM lines see. ``values``: platform ARGs + global ARGs with a value (build-args
    applied); ``defaults``: the same without build-args; ``declared``: every global ARG name."""

    values: Mapping[str, str]
    defaults: Mapping[str, str]
    declared: frozenset[str]
    used_build_args: frozenset[str]
    unmatched: tuple[tuple[str, int], ...] = ()


@lazy_dataclass(frozen=True, kw_only=True)
class Step:
    """One instruction of a stage after expansion, with the environment it was expanded in."""

    instruction: Instruction
    env: Mapping[str, str]
    unmatched: frozenset[str] = frozenset()


@lazy_dataclass(frozen=True, kw_only=True)
class ResolvedStage:
    """A stage with FROM expanded and every step expanded in order.

    ``env`` is the final ENV list (``KEY=VALUE``, base env first), ``args`` the ARGs in scope
    at the end of the stage (None = declared without value).
    """

    stage: Stage
    base_name: str
    platform: str | None
    steps: tuple[Step, ...]
    env: tuple[str, ...]
    args: tuple[tuple[str, str | None], ...]
    used_build_args: frozenset[str]
    from_unmatched: frozenset[str] = frozenset()
    env_map: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def locate(exc: DockerfileError, instr: Instruction, path: str) -> DockerfileError:
    """Point ``exc`` (e.g. from the shell lexer) at ``instr`` in ``path``; return it."""
    exc.path, exc.line, exc.column = path, instr.line, exc.column or 1
    return exc


def resolve_global(
    meta_args: Sequence[Arg],
    *,
    build_args: Mapping[str, str] | None = None,
    platform: Mapping[str, str] | None = None,
    lexer: Lexer | None = None,
    path: str = "Dockerfile",
) -> GlobalScope:
    """Evaluate the global ARGs in order (each sees the ones before it)."""
    lexer = lexer or make_lexer()
    build_args = build_args or {}
    values: dict[str, str] = dict(platform if platform is not None else platform_args())
    defaults = dict(values)
    declared: set[str] = set()
    used: set[str] = set()
    unmatched: list[tuple[str, int]] = []
    for instr in meta_args:
        for arg in instr.args:
            declared.add(arg.key)
            if arg.value is not None:
                try:
                    res = lexer.process_word_with_matches(arg.value, defaults)
                    values[arg.key] = lexer.process_word(arg.value, values)
                except DockerfileError as exc:
                    raise locate(exc, instr, path) from None
                unmatched += [(n, instr.line) for n in sorted(res.unmatched)]
                defaults[arg.key] = res.result
            if arg.key in build_args:
                values[arg.key] = build_args[arg.key]
                used.add(arg.key)
    return GlobalScope(
        values=values,
        defaults=defaults,
        declared=frozenset(declared),
        used_build_args=frozenset(used),
        unmatched=tuple(unmatched),
    )


def resolve_stage(
    stage: Stage,
    scope: GlobalScope,
    *,
    build_args: Mapping[str, str] | None = None,
    base_env: Sequence[str] | Mapping[str, str] = (),
    lexer: Lexer | None = None,
    path: str = "Dockerfile",
) -> ResolvedStage:
    """Expand FROM with the global scope, then every instruction with the state before it."""
    lexer = lexer or make_lexer()
    build_args = build_args or {}
    try:
        base = lexer.process_word_with_matches(stage.from_.base_name, scope.values)
        platform = stage.from_.platform
        if platform is not None:
            platform = lexer.process_word(platform, scope.values)
    except DockerfileError as exc:
        raise locate(exc, stage.from_, path) from None
    env: dict[str, str] = (
        dict(base_env)
        if isinstance(base_env, Mapping)
        else dict(parse_key_value(e) for e in base_env)
    )
    args: dict[str, str | None] = {}
    used: set[str] = set()
    steps: list[Step] = []
    visible: Mapping[str, str] = MappingProxyType(_visible(args, env))
    ex = Expander(lexer, visible)
    for instr in stage.commands:
        try:
            expanded, unmatched = expand_with(ex, instr, visible)
        except DockerfileError as exc:
            raise locate(exc, instr, path) from None
        steps.append(Step(instruction=expanded, env=visible, unmatched=unmatched))
        if isinstance(expanded, Env):
            for pair in expanded.pairs:
                env[pair.key] = pair.value
        elif isinstance(expanded, Arg):
            for a in expanded.args:
                args.pop(a.key, None)
                args[a.key] = _arg_value(a, scope, build_args, used)
        else:
            continue
        visible = MappingProxyType(_visible(args, env))
    return ResolvedStage(
        stage=stage,
        base_name=base.result,
        platform=platform,
        steps=tuple(steps),
        env=tuple(f"{k}={v}" for k, v in env.items()),
        env_map=MappingProxyType(env),
        args=tuple(args.items()),
        used_build_args=frozenset(used),
        from_unmatched=base.unmatched,
    )


def _visible(args: Mapping[str, str | None], env: Mapping[str, str]) -> dict[str, str]:
    """What expansion sees: ARGs with a value, overridden by ENV (same as :func:`to_env_map`)."""
    out = {k: v for k, v in args.items() if v is not None}
    out.update(env)
    return out


def _arg_value(
    arg: ArgDef, scope: GlobalScope, build_args: Mapping[str, str], used: set[str]
) -> str | None:
    if arg.key in build_args:
        used.add(arg.key)
        return build_args[arg.key]
    if arg.value is not None:
        return arg.value
    if arg.key in scope.declared or arg.key in PLATFORM_ARGS:
        return scope.values.get(arg.key)
    return None
