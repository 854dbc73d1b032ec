"""AST node -> typed instruction, with BuildKit's checks and wording (``instructions/parse.go``).

Invariants: every failure is a :class:`~lamina.errors.DockerfileError` located at the node's
first line; argument counts are checked before flags, as BuildKit does; error texts match
BuildKit's exactly (these are part of the conformance data). HEALTHCHECK's own arguments and
flags are :mod:`lamina.dockerfile.health`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from lamina._internal.regex import LazyPattern
from lamina.dockerfile.ast import Document, Node
from lamina.dockerfile.flags import FlagError, FlagKind, ParsedFlags, parse_flags, with_suggestion
from lamina.dockerfile.health import HealthError, parse_health
from lamina.dockerfile.heredoc import chomp_heredoc_content, maybe_heredoc
from lamina.dockerfile.instructions import (
    Add,
    Arg,
    ArgDef,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    InlineFile,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    SourceContent,
    Stage,
    Stages,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from lamina.dockerfile.mounts import MountError, parse_mount
from lamina.dockerfile.words import trim_space
from lamina.errors import DockerfileError

_STAGE_NAME_RE = LazyPattern(r"^[a-z][a-z0-9\-_.]*\Z")
_ONBUILD_PREFIX_RE = LazyPattern(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)
NETWORK_MODES = ("default", "none", "host")
SECURITY_MODES = ("sandbox", "insecure")
INSTRUCTIONS = (
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
    "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
)  # fmt: skip


class _Error(ValueError):
    """An instruction error; the caller adds the location."""


def _at_least_one(cmd: str) -> _Error:
    return _Error(f"{cmd} requires at least one argument")


def _exactly_one(cmd: str) -> _Error:
    return _Error(f"{cmd} requires exactly one argument")


def _flags(node: Node, spec: dict[str, FlagKind]) -> ParsedFlags:
    try:
        return parse_flags(node.flags, spec)
    except FlagError as exc:
        raise _Error(str(exc)) from exc


def _comment_for(comments: Sequence[str], name: str) -> str:
    if not name:
        return ""
    prefix = name + " "
    for line in comments:
        if line.startswith(prefix):
            return line[len(prefix) :]
    return ""


def _shell_args(node: Node) -> list[str]:
    """BuildKit ``handleJSONArgs``: JSON args as they are, shell form joined by spaces."""
    return list(node.args) if node.json else [" ".join(node.args)]


def _inline_files(node: Node) -> tuple[InlineFile, ...]:
    if node.json:
        return ()
    return tuple(InlineFile(name=h.name, data=h.content, chomp=h.chomp) for h in node.heredocs)


def _pairs(node: Node, cmd: str) -> tuple[KeyValue, ...]:
    args = node.args
    if not args:
        raise _at_least_one(cmd)
    if len(args) % 3:
        raise _Error(f"Bad input to {cmd}, too many arguments")
    out = []
    for i in range(0, len(args), 3):
        if not args[i]:
            raise _Error(f"{cmd} names can not be blank")
        out.append(KeyValue(key=args[i], value=args[i + 1], legacy=args[i + 2] == ""))
    return tuple(out)


def _from(node: Node) -> From:
    args = node.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME_RE.match(name):
            raise _Error(
                f"invalid name for build stage: {_q(args[2])}, name can't start with a number"
                " or contain symbols"
            )
    elif len(args) != 1:
        raise _Error("FROM requires either one or three arguments")
    flags = _flags(node, {"platform": "string"})
    return From(
        node=node,
        base_name=args[0],
        stage_name=name,
        platform=flags.string("platform"),
        doc=_comment_for(node.comments, name or ""),
    )


def _run(node: Node) -> Run:
    flags = _flags(
        node, {"mount": "strings", "network": "string", "security": "string", "device": "strings"}
    )
    network = flags.string("network")
    if network is not None and network not in NETWORK_MODES:
        raise _Error(
            with_suggestion(f"unsupported network mode {_q(network)}", network, NETWORK_MODES)
        )
    security = flags.string("security")
    if security is not None and security not in SECURITY_MODES:
        raise _Error(f"security mode {_q(security)} not supported")
    specs = flags.strings("mount")
    try:
        mounts = tuple(parse_mount(s) for s in specs)
    except MountError as exc:
        raise _Error(str(exc)) from exc
    return Run(
        node=node,
        cmdline=tuple(_shell_args(node)),
        prepend_shell=not node.json,
        files=_inline_files(node),
        mount_specs=specs,
        mounts=mounts,
        network=network,
        security=security,
        devices=flags.strings("device"),
        flags_used=flags.used,
    )


def _cmd(node: Node) -> Cmd:
    _flags(node, {})
    return Cmd(
        node=node,
        cmdline=tuple(_shell_args(node)),
        prepend_shell=not node.json,
        files=_inline_files(node),
    )


def _entrypoint(node: Node) -> Entrypoint:
    _flags(node, {})
    args = _shell_args(node)
    return Entrypoint(node=node, cmdline=tuple(args) if args else None, prepend_shell=not node.json)


def _shell(node: Node) -> Shell:
    _flags(node, {})
    args = _shell_args(node)
    if not args:
        raise _at_least_one("SHELL")
    if not node.json:
        raise _Error("SHELL requires the arguments to be in JSON form")
    return Shell(node=node, shell=tuple(args))


def _sources(node: Node, cmd: str) -> tuple[tuple[str, ...], str, tuple[SourceContent, ...]]:
    srcs, dest = node.args[:-1], node.args[-1]
    if maybe_heredoc(dest) is not None:
        raise _Error(f"{cmd} cannot accept a heredoc as a destination")
    if not node.heredocs:
        return tuple(srcs), dest, ()
    pending = list(node.heredocs)
    paths: list[str] = []
    contents: list[SourceContent] = []
    for src in srcs:
        doc = maybe_heredoc(src)
        if doc is not None and pending:
            heredoc = pending.pop(0)
            data = chomp_heredoc_content(heredoc.content) if heredoc.chomp else heredoc.content
            contents.append(SourceContent(path=doc.name, data=data, expand=doc.expand))
        else:
            paths.append(src)
    return tuple(paths), dest, tuple(contents)


def _copy(node: Node) -> Copy:
    if len(node.args) < 2:
        raise _Error(
            "COPY requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    flags = _flags(
        node,
        {"chown": "string", "from": "string", "chmod": "string", "link": "bool",
         "parents": "bool", "exclude": "strings"},
    )  # fmt: skip
    paths, dest, contents = _sources(node, "COPY")
    return Copy(
        node=node, sources=paths, dest=dest, contents=contents,
        chown=flags.string("chown") or "", chmod=flags.string("chmod") or "",
        link=bool(flags.boolean("link")), excludes=flags.strings("exclude"),
        from_=flags.string("from") or "", parents=bool(flags.boolean("parents")),
    )  # fmt: skip


def _add(node: Node) -> Add:
    if len(node.args) < 2:
        raise _Error(
            "ADD requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    flags = _flags(
        node,
        {"chown": "string", "chmod": "string", "link": "bool", "keep-git-dir": "bool",
         "checksum": "string", "exclude": "strings", "unpack": "bool"},
    )  # fmt: skip
    paths, dest, contents = _sources(node, "ADD")
    return Add(
        node=node, sources=paths, dest=dest, contents=contents,
        chown=flags.string("chown") or "", chmod=flags.string("chmod") or "",
        link=bool(flags.boolean("link")), excludes=flags.strings("exclude"),
        keep_git_dir=bool(flags.boolean("keep-git-dir")),
        checksum=flags.string("checksum") or "", unpack=flags.boolean("unpack"),
    )  # fmt: skip


def _arg(node: Node) -> Arg:
    if not node.args:
        raise _at_least_one("ARG")
    defs = []
    for word in node.args:
        key, eq, value = word.partition("=")
        if eq and not key:
            raise _Error("ARG names can not be blank")
        defs.append(
            ArgDef(key=key, value=value if eq else None, doc=_comment_for(node.comments, key))
        )
    _flags(node, {})
    return Arg(node=node, args=tuple(defs))


def _healthcheck(node: Node) -> Healthcheck:
    if not node.args:
        raise _at_least_one("HEALTHCHECK")
    try:
        return Healthcheck(node=node, health=parse_health(node.args, node.flags, json=node.json))
    except HealthError as exc:
        raise _Error(str(exc)) from exc


def _onbuild(node: Node) -> Onbuild:
    if node.sub is None:
        raise _at_least_one("ONBUILD")
    _flags(node, {})
    trigger = trim_space(node.sub.keyword).upper()
    if trigger == "ONBUILD":
        raise _Error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _Error(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX_RE.sub("", node.original, count=1)
    expression += "".join("\n" + h.content + h.name for h in node.heredocs)
    return Onbuild(node=node, expression=expression, trigger=trigger)


def _single(cmd: str, node: Node) -> str:
    if len(node.args) != 1:
        raise _exactly_one(cmd)
    _flags(node, {})
    return node.args[0]


def _volume(node: Node) -> Volume:
    if not node.args:
        raise _at_least_one("VOLUME")
    _flags(node, {})
    paths = tuple(trim_space(v) for v in node.args)
    if any(not p for p in paths):
        raise _Error("VOLUME specified can not be an empty string")
    return Volume(node=node, paths=paths)


def _expose(node: Node) -> Expose:
    if not node.args:
        raise _at_least_one("EXPOSE")
    _flags(node, {})
    return Expose(node=node, ports=node.args)


_CONVERTERS: dict[str, Callable[[Node], Instruction]] = {
    "from": _from,
    "run": _run,
    "cmd": _cmd,
    "entrypoint": _entrypoint,
    "shell": _shell,
    "copy": _copy,
    "add": _add,
    "arg": _arg,
    "env": lambda n: Env(node=n, pairs=(_flags(n, {}), _pairs(n, "ENV"))[1]),
    "label": lambda n: Label(node=n, pairs=(_pairs(n, "LABEL"), _flags(n, {}))[0]),
    "healthcheck": _healthcheck,
    "onbuild": _onbuild,
    "maintainer": lambda n: Maintainer(node=n, maintainer=_single("MAINTAINER", n)),
    "user": lambda n: User(node=n, user=_single("USER", n)),
    "workdir": lambda n: Workdir(node=n, path=_single("WORKDIR", n)),
    "stopsignal": lambda n: StopSignal(node=n, signal=_single("STOPSIGNAL", n)),
    "volume": _volume,
    "expose": _expose,
}


def convert_node(node: Node, *, path: str = "Dockerfile") -> Instruction:
    """Typed instruction for ``node``; raises DockerfileError at the node's line."""
    fn = _CONVERTERS.get(node.instruction)
    try:
        if fn is None:
            raise _Error(
                with_suggestion(f"unknown instruction: {node.keyword}", node.keyword, INSTRUCTIONS)
            )
        return fn(node)
    except _Error as exc:
        raise DockerfileError(str(exc), path=path, line=node.start_line, column=1) from exc


def convert_document(document: Document) -> Stages:
    """Global ARGs and stages of a document; raises DockerfileError."""
    meta: list[Arg] = []
    stages: list[Stage] = []
    current: From | None = None
    commands: list[Instruction] = []
    for node in document.children:
        instr = convert_node(node, path=document.path)
        if isinstance(instr, From):
            if current is not None:
                stages.append(_stage(len(stages), current, commands))
            current, commands = instr, []
        elif current is None:
            if not isinstance(instr, Arg):
                raise DockerfileError(
                    "no build stage in current context",
                    path=document.path,
                    line=node.start_line,
                    column=1,
                )
            meta.append(instr)
        else:
            commands.append(instr)
    if current is not None:
        stages.append(_stage(len(stages), current, commands))
    return Stages(meta_args=tuple(meta), stages=tuple(stages), document=document)


def _stage(index: int, from_: From, commands: list[Instruction]) -> Stage:
    return Stage(index=index, name=from_.stage_name, from_=from_, commands=tuple(commands))


def _q(s: str) -> str:
    from lamina.dockerfile.dump import go_quote

    return go_quote(s)
