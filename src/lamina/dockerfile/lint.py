"""BuildKit build checks (``docker build --check``) over a parsed Dockerfile.

Each finding is a :class:`LintWarning` with the rule name, BuildKit's message text and the
line. The ``# check=skip=<rules>|all;error=true`` directive is honoured: skipped rules are not
reported and ``error=true`` marks every finding as an error. Rules that need expansion
(UndefinedVar, UndefinedArgInFrom, InvalidDefaultArgInFrom, WorkdirRelativePath, EXPOSE rules)
run over the :mod:`~lamina.dockerfile.graph` plan; CopyIgnoredFile needs an ``is_ignored``
predicate (the ``.dockerignore`` matcher). Invariant: findings are sorted by line, then rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.regex import LazyPattern
from lamina.dockerfile.ast import Document, Node
from lamina.dockerfile.flags import suggest
from lamina.dockerfile.graph import BuildGraph, build_graph
from lamina.dockerfile.instructions import (
    Add,
    Arg,
    Copy,
    Env,
    Expose,
    From,
    Shell,
    Stage,
    Workdir,
)
from lamina.dockerfile.ports import split_proto_port
from lamina.dockerfile.scope import PLATFORM_ARGS, locate
from lamina.errors import DockerfileError

RULES = (
    "StageNameCasing", "FromAsCasing", "NoEmptyContinuation", "ConsistentInstructionCasing",
    "DuplicateStageName", "ReservedStageName", "JSONArgsRecommended", "MaintainerDeprecated",
    "UndefinedArgInFrom", "WorkdirRelativePath", "UndefinedVar", "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat", "InvalidDefaultArgInFrom", "SecretsUsedInArgOrEnv",
    "ExposeProtoCasing", "ExposeInvalidFormat", "CopyIgnoredFile",
)  # fmt: skip
RESERVED_STAGE_NAMES = ("context", "scratch")
_SECRET_RE = LazyPattern(
    r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)"
)
_PUBLIC_RE = LazyPattern(r"(?i)(?:_|^)(?:public)(?:_|$)")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REFERENCE_RE = LazyPattern(
    rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[a-z0-9]+:[0-9a-fA-F]{32,})?\Z"
)


@lazy_dataclass(frozen=True, kw_only=True)
class LintWarning:
    """One finding. ``error`` is True when the check directive says ``error=true``."""

    rule: str
    message: str
    line: int
    error: bool = False

    @property
    def url(self) -> str:
        """The rule's documentation page."""
        kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", self.rule).lower()
        return f"https://docs.docker.com/go/dockerfile/rule/{kebab}/"

    def format(self, path: str) -> str:
        """``FILE:LINE: RuleName - message``."""
        return f"{path}:{self.line}: {self.rule} - {self.message}"


@lazy_dataclass(frozen=True, kw_only=True)
class CheckConfig:
    """The parsed ``# check=`` directive."""

    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False


def parse_check_directive(value: str) -> CheckConfig:
    """Parse ``skip=A,B;error=true`` (keys case-insensitive, unknown keys ignored)."""
    skip: set[str] = set()
    skip_all = error = False
    for part in value.split(";"):
        key, _, val = part.strip().partition("=")
        key = key.strip().lower()
        if key == "skip":
            names = {v.strip() for v in val.split(",") if v.strip()}
            skip_all = skip_all or "all" in {n.lower() for n in names}
            skip |= names
        elif key == "error":
            error = val.strip().lower() == "true"
    return CheckConfig(skip=frozenset(skip), skip_all=skip_all, error=error)


_Found = tuple[str, str, int]


def _casing(document: Document) -> Iterator[_Found]:
    keywords = [n.keyword for n in document.children]
    lower = sum(1 for k in keywords if k == k.lower())
    upper = sum(1 for k in keywords if k == k.upper())
    majority = "lowercase" if lower > upper else "uppercase"
    for node in document.children:
        k = node.keyword
        if k not in (k.lower(), k.upper()):
            yield (
                "ConsistentInstructionCasing",
                f"Command '{k}' should be consistently cased",
                node.start_line,
            )
        elif (k == k.lower()) != (majority == "lowercase") and k.lower() != k.upper():
            msg = f"Command '{k}' should match the case of the command majority ({majority})"
            yield "ConsistentInstructionCasing", msg, node.start_line


def _node_rules(node: Node) -> Iterator[_Found]:
    line = node.start_line
    instr = node.instruction
    if instr == "maintainer":
        yield (
            "MaintainerDeprecated",
            "Maintainer instruction is deprecated in favor of using label",
            line,
        )
    if instr in ("env", "label") and any(
        node.args[i + 2] == "" for i in range(0, len(node.args) - 2, 3)
    ):
        kw = node.keyword.upper()
        msg = f'"{kw} key=value" should be used instead of legacy "{kw} key value" format'
        yield "LegacyKeyValueFormat", msg, line
    if instr == "from" and len(node.args) == 3:
        as_kw, from_kw = node.args[1], node.keyword
        if (from_kw.isupper() and not as_kw.isupper()) or (
            from_kw.islower() and not as_kw.islower()
        ):
            yield "FromAsCasing", f"'{as_kw}' and '{from_kw}' keywords' casing do not match", line
        if node.args[2] != node.args[2].lower():
            yield "StageNameCasing", f"Stage name '{node.args[2]}' should be lowercase", line


def _secret_keys(keys: list[str], kind: str, line: int) -> Iterator[_Found]:
    for key in keys:
        if _SECRET_RE.search(key) and not _PUBLIC_RE.search(key):
            msg = f'Do not use ARG or ENV instructions for sensitive data ({kind} "{key}")'
            yield "SecretsUsedInArgOrEnv", msg, line


def _stage_rules(stage: Stage, seen_names: dict[str, int]) -> Iterator[_Found]:
    name = stage.name
    if name is not None:
        if name in seen_names:
            msg = f'Duplicate stage name "{name}", stage names should be unique'
            yield "DuplicateStageName", msg, stage.from_.line
        seen_names.setdefault(name, stage.from_.line)
        if name in RESERVED_STAGE_NAMES:
            msg = f'Stage name should not use the same name as reserved stage "{name}"'
            yield "ReservedStageName", msg, stage.from_.line
    custom_shell = False
    last: dict[str, list[int]] = {}
    for cmd in stage.commands:
        kw = cmd.node.instruction
        if isinstance(cmd, Shell):
            custom_shell = True
        if kw in ("cmd", "entrypoint", "healthcheck"):
            last.setdefault(kw, []).append(cmd.line)
        if kw in ("cmd", "entrypoint") and not cmd.node.json and not custom_shell:
            msg = (
                f"JSON arguments recommended for {kw.upper()} to prevent unintended behavior"
                " related to OS signals"
            )
            yield "JSONArgsRecommended", msg, cmd.line
        if isinstance(cmd, Arg):
            yield from _secret_keys([a.key for a in cmd.args], "ARG", cmd.line)
        elif isinstance(cmd, Env):
            yield from _secret_keys([p.key for p in cmd.pairs], "ENV", cmd.line)
    for kw, lines in last.items():
        for line in lines[:-1]:
            msg = (
                f"Multiple {kw.upper()} instructions should not be used in the same stage"
                " because only the last one will be used"
            )
            yield "MultipleInstructionsDisallowed", msg, line


def _undefined(name: str, known: Mapping[str, str] | frozenset[str]) -> str:
    match = suggest(name, list(known), case_sensitive=True)
    hint = f" (did you mean ${match}?)" if match else ""
    return f"Usage of undefined variable '${name}'{hint}"


def _graph_rules(graph: BuildGraph, is_ignored: Callable[[str], bool] | None) -> Iterator[_Found]:
    scope = graph.global_scope
    for name, line in scope.unmatched:
        yield "UndefinedVar", _undefined(name, scope.defaults), line
    workdir_set: dict[int, bool] = {}
    for node in graph.stages:
        resolved, from_ = node.resolved, node.stage.from_
        yield from _from_rules(from_, resolved.from_unmatched, graph)
        has_workdir = (
            workdir_set.get(node.base_stage, False) if node.base_stage is not None else False
        )
        for step in resolved.steps:
            instr = step.instruction
            for name in sorted(step.unmatched):
                yield "UndefinedVar", _undefined(name, step.env), instr.line
            if isinstance(instr, Workdir):
                if not instr.path.startswith("/") and not has_workdir:
                    msg = (
                        f'Relative workdir "{instr.path}" can have unexpected results'
                        " if the base image changes"
                    )
                    yield "WorkdirRelativePath", msg, instr.line
                has_workdir = True
            elif isinstance(instr, Expose):
                yield from _expose_rules(instr)
            elif isinstance(instr, Copy | Add) and is_ignored is not None:
                if isinstance(instr, Copy) and instr.from_:
                    continue
                for src in instr.sources:
                    if is_ignored(src):
                        verb = instr.keyword.capitalize()
                        msg = f'Attempting to {verb} file "{src}" that is excluded by .dockerignore'
                        yield "CopyIgnoredFile", msg, instr.line
        workdir_set[node.index] = has_workdir


def _from_rules(from_: From, unmatched: frozenset[str], graph: BuildGraph) -> Iterator[_Found]:
    scope = graph.global_scope
    for name in sorted(unmatched):
        if name in scope.declared or name in PLATFORM_ARGS:
            continue
        match = suggest(name, sorted(scope.declared), case_sensitive=True)
        hint = f" (did you mean {match}?)" if match else ""
        yield "UndefinedArgInFrom", f"FROM argument '{name}' is not declared{hint}", from_.line
    if "$" in from_.base_name:
        from lamina.dockerfile.scope import make_lexer

        lexer = make_lexer(graph.parsed.document.escape)
        try:
            value = lexer.process_word(from_.base_name, scope.defaults)
        except DockerfileError as exc:
            raise locate(exc, from_, graph.parsed.document.path) from None
        if not value or not _REFERENCE_RE.match(value):
            msg = (
                f"Default value for ARG {from_.base_name} results in empty or invalid"
                " base image name"
            )
            yield "InvalidDefaultArgInFrom", msg, from_.line


def _expose_rules(instr: Expose) -> Iterator[_Found]:
    for port in instr.ports:
        if ":" in port:
            msg = (
                "EXPOSE instruction should not define an IP address or host-port mapping,"
                f" found '{port}'"
            )
            yield "ExposeInvalidFormat", msg, instr.line
        proto, _ = split_proto_port(port.rsplit(":", 1)[-1])
        if "/" in port and proto != proto.lower():
            msg = f"Defined protocol '{port}' in EXPOSE instruction should be lowercase"
            yield "ExposeProtoCasing", msg, instr.line


def lint(
    document: Document,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    is_ignored: Callable[[str], bool] | None = None,
) -> list[LintWarning]:
    """All findings for ``document``, sorted by line. Raises DockerfileError if it is invalid."""
    directive = document.directive("check")
    config = parse_check_directive(directive.value) if directive else CheckConfig()
    found: list[_Found] = [
        ("NoEmptyContinuation", "Empty continuation line", w.start_line) for w in document.warnings
    ]
    found += _casing(document)
    for node in document.children:
        found += _node_rules(node)
    graph = build_graph(document, build_args=build_args, target=target)
    seen: dict[str, int] = {}
    for stage in graph.parsed.stages:
        found += _stage_rules(stage, seen)
    for arg in graph.parsed.meta_args:
        found += _secret_keys([a.key for a in arg.args], "ARG", arg.line)
    found += _graph_rules(graph, is_ignored)
    if config.skip_all:
        return []
    out = {
        LintWarning(rule=rule, message=msg, line=line, error=config.error)
        for rule, msg, line in found
        if rule not in config.skip
    }
    return sorted(out, key=lambda w: (w.line, w.rule, w.message))
