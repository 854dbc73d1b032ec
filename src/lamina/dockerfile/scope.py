"""ARG/ENV scoping and variable expansion with BuildKit's rules.

* Global ARGs (before the first FROM) are visible only to FROM lines (base name and
  ``--platform``), together with the predefined platform ARGs; a build-arg overrides a default.
* Inside a stage an ARG is visible from its declaration on; ``ARG NAME`` without a value takes
  the build-arg, else the global value, else stays unset (not exported). ENV always wins over
  an ARG of the same name. ENV is inherited from a parent stage, ARG is not.
* Each instruction is expanded with the state *before* it (``ENV a=1 b=$a`` sees the old
  ``$a``). Only the instructions BuildKit expands are expanded: ENV, LABEL, ARG, COPY/ADD
  (sources, destination, ``--from --chown --chmod --checksum --exclude``), EXPOSE (split into
  words), USER, WORKDIR, VOLUME, STOPSIGNAL and RUN ``--mount`` values; never RUN/CMD/
  ENTRYPOINT command lines, SHELL, HEALTHCHECK or ONBUILD.

Invariants: pure functions; DockerfileError (located at the instruction) is the only error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from lamina.dockerfile.instructions import (
    Add,
    Arg,
    ArgDef,
    Copy,
    Env,
    Expose,
    Instruction,
    KeyValue,
    Label,
    Run,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from lamina.dockerfile.mounts import MountError, parse_mount
from lamina.errors import DockerfileError

_F = TypeVar("_F", Copy, Add)

if TYPE_CHECKING:
    from lamina.dockerfile.shell import Lexer

PLATFORM_ARGS = (
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
)  # fmt: skip
PROXY_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)  # fmt: skip
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def make_lexer(escape: str = "\\") -> Lexer:
    """BuildKit's shell lexer for ``escape`` (imported lazily from ``dockerfile.shell``)."""
    from lamina.dockerfile.shell import Lexer

    return Lexer(escape)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalScope:
    """What FROM lines see. ``values``: platform ARGs + global ARGs with a value (build-args
    applied); ``defaults``: the same without build-args; ``declared``: every global ARG name."""

    values: Mapping[str, str]
    defaults: Mapping[str, str]
    declared: frozenset[str]
    used_build_args: frozenset[str]
    unmatched: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One instruction of a stage after expansion, with the environment it was expanded in."""

    instruction: Instruction
    env: Mapping[str, str]
    unmatched: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
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


_BLANK_RE = re.compile(r"\s")
_SPECIAL: dict[tuple[str, bool], re.Pattern[str]] = {}
#: ``$NAME`` / ``${NAME}``: the only forms the lexer-free fast path expands (ASCII words
#: without quotes or escapes, where every ``$`` starts such a reference).
_SIMPLE_REF_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _special_re(escape: str, *, dollar: bool = True) -> re.Pattern[str]:
    """Characters that make the lexer do something: ``$`` (optionally), quotes, the escape."""
    pattern = _SPECIAL.get((escape, dollar))
    if pattern is None:
        chars = ("$" if dollar else "") + "'\"" + re.escape(escape)
        pattern = _SPECIAL[(escape, dollar)] = re.compile(f"[{chars}]")
    return pattern


class _Expander:
    """Expands the words of one instruction in one fixed environment, collecting misses."""

    def __init__(self, lexer: Lexer, env: Mapping[str, str]) -> None:
        self.lexer = lexer
        self.env = env
        self.unmatched: set[str] = set()
        self.special = _special_re(lexer.escape)
        self.quoting = _special_re(lexer.escape, dollar=False)

    def _lookup(self, m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
            return ""
        return value

    def word(self, word: str) -> str:
        if not self.special.search(word):
            return word
        if "$" in word and word.isascii() and not self.quoting.search(word):
            refs = _SIMPLE_REF_RE.findall(word)
            if len(refs) == word.count("$"):
                return _SIMPLE_REF_RE.sub(self._lookup, word)
        res = self.lexer.process_word_with_matches(word, self.env)
        self.unmatched |= res.unmatched
        return res.result

    def words(self, word: str) -> list[str]:
        if not self.special.search(word) and not _BLANK_RE.search(word):
            return [word] if word else []
        res = self.lexer.process_word_with_matches(word, self.env)
        self.unmatched |= res.unmatched
        return list(res.words)

    def each(self, items: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.word(w) for w in items)


def _pair(ex: _Expander, p: KeyValue) -> KeyValue:
    key, value = ex.word(p.key), ex.word(p.value)
    return p if (key, value) == (p.key, p.value) else replace(p, key=key, value=value)


def _pairs(ex: _Expander, pairs: Sequence[KeyValue]) -> tuple[KeyValue, ...]:
    return tuple(_pair(ex, p) for p in pairs)


def _files(ex: _Expander, instr: _F, **extra: str) -> Instruction:
    return _changed(
        instr,
        sources=ex.each(instr.sources),
        dest=ex.word(instr.dest),
        chown=ex.word(instr.chown),
        chmod=ex.word(instr.chmod),
        excludes=ex.each(instr.excludes),
        **extra,
    )


def _run(ex: _Expander, instr: Run) -> Run:
    if not any(ex.special.search(spec) for spec in instr.mount_specs):
        return instr
    try:
        mounts = tuple(parse_mount(spec, ex.word) for spec in instr.mount_specs)
    except MountError as exc:
        raise DockerfileError(str(exc)) from exc
    return replace(instr, mounts=mounts)


def _changed(instr: Instruction, **fields: object) -> Instruction:
    """``instr`` with ``fields`` replaced, or ``instr`` itself when nothing differs."""
    if all(getattr(instr, k) == v for k, v in fields.items()):
        return instr
    return replace(instr, **fields)  # type: ignore[arg-type]


def _expand(ex: _Expander, i: Instruction) -> Instruction:
    if isinstance(i, Env | Label):
        return _changed(i, pairs=_pairs(ex, i.pairs))
    if isinstance(i, Arg):
        args = tuple(
            replace(a, key=ex.word(a.key), value=None if a.value is None else ex.word(a.value))
            for a in i.args
        )
        return _changed(i, args=args)
    if isinstance(i, Copy):
        return _files(ex, i, from_=ex.word(i.from_))
    if isinstance(i, Add):
        return _files(ex, i, checksum=ex.word(i.checksum))
    if isinstance(i, Expose):
        return _changed(i, ports=tuple(w for p in i.ports for w in ex.words(p)))
    if isinstance(i, User):
        return _changed(i, user=ex.word(i.user))
    if isinstance(i, Workdir):
        return _changed(i, path=ex.word(i.path))
    if isinstance(i, Volume):
        return _changed(i, paths=ex.each(i.paths))
    if isinstance(i, StopSignal):
        return _changed(i, signal=ex.word(i.signal))
    if isinstance(i, Run):
        return _run(ex, i)
    return i


_EXPANDED = (Env, Label, Arg, Copy, Add, Expose, User, Workdir, Volume, StopSignal, Run)


def expand_instruction(
    instr: Instruction, env: Mapping[str, str], lexer: Lexer | None = None
) -> tuple[Instruction, frozenset[str]]:
    """``instr`` with its expandable words expanded in ``env``; plus the undefined names."""
    if not isinstance(instr, _EXPANDED):
        return instr, frozenset()
    return _expand_with(_Expander(lexer or make_lexer(), env), instr, env)


def _expand_with(
    ex: _Expander, instr: Instruction, env: Mapping[str, str]
) -> tuple[Instruction, frozenset[str]]:
    """Expand with a reused expander (reset to ``env``)."""
    if not isinstance(instr, _EXPANDED):
        return instr, frozenset()
    ex.env = env
    ex.unmatched = set()
    out = _expand(ex, instr)
    return out, frozenset(ex.unmatched) if ex.unmatched else frozenset()


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
    ex = _Expander(lexer, visible)
    for instr in stage.commands:
        try:
            expanded, unmatched = _expand_with(ex, instr, visible)
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
