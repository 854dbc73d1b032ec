"""Typed Dockerfile instructions: what the builder consumes.

Each instruction is a frozen, slotted, keyword-only dataclass that keeps its source
:class:`~lamina.dockerfile.ast.Node` (line span, original text). Values are as written
(unexpanded); :mod:`lamina.dockerfile.scope` expands the instructions BuildKit expands.
Build them with :func:`parse_instruction` (one node) or :func:`parse_stages` (a document);
both raise only :class:`~lamina.errors.DockerfileError`, with BuildKit's wording.
"""

from __future__ import annotations

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.dockerfile.ast import Document, Node
from lamina.dockerfile.duration import format_duration
from lamina.dockerfile.mounts import Mount


@lazy_dataclass(frozen=True, kw_only=True)
class KeyValue:
    """One ENV/LABEL pair; ``legacy`` is True for the ``KEY value`` form (no ``=``)."""

    key: str
    value: str
    legacy: bool = False


@lazy_dataclass(frozen=True, kw_only=True)
class ArgDef:
    """One ARG name; ``value`` is None when no default is given. ``doc`` from a comment."""

    key: str
    value: str | None = None
    doc: str = ""


@lazy_dataclass(frozen=True, kw_only=True)
class SourceContent:
    """A COPY/ADD heredoc source: file ``path`` (the delimiter) with ``data``."""

    path: str
    data: str
    expand: bool = True


@lazy_dataclass(frozen=True, kw_only=True)
class InlineFile:
    """A RUN/CMD heredoc: raw ``data`` (tabs kept even when ``chomp``)."""

    name: str
    data: str
    chomp: bool = False


@lazy_dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """Docker's HealthConfig. Durations are nanoseconds; 0 means "use the default"."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def history_text(self) -> str:
        """The image-history ``created_by`` text, Go ``%+v`` style."""
        return (
            f"HEALTHCHECK {{Test:[{' '.join(self.test)}] Interval:{format_duration(self.interval)}"
            f" Timeout:{format_duration(self.timeout)}"
            f" StartPeriod:{format_duration(self.start_period)}"
            f" StartInterval:{format_duration(self.start_interval)} Retries:{self.retries}}}"
        )


@lazy_dataclass(frozen=True, kw_only=True)
class Instruction:
    """Base of every instruction: the AST node it came from."""

    node: Node

    @property
    def line(self) -> int:
        """1-based first line of the instruction."""
        return self.node.start_line

    @property
    def keyword(self) -> str:
        """Upper-case instruction name (``RUN``)."""
        return self.node.keyword.upper()


@lazy_dataclass(frozen=True, kw_only=True)
class From(Instruction):
    """``FROM [--platform=p] image [AS name]``; ``stage_name`` is lower-cased."""

    base_name: str
    stage_name: str | None = None
    platform: str | None = None
    doc: str = ""


@lazy_dataclass(frozen=True, kw_only=True)
class ShellDependent(Instruction):
    """RUN/CMD/ENTRYPOINT: ``prepend_shell`` is True for shell form (one-string cmdline)."""

    cmdline: tuple[str, ...] | None = ()
    prepend_shell: bool = False
    files: tuple[InlineFile, ...] = ()


@lazy_dataclass(frozen=True, kw_only=True)
class Run(ShellDependent):
    """RUN with ``--mount`` (raw and parsed), ``--network``, ``--security``, ``--device``."""

    mount_specs: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: str | None = None
    security: str | None = None
    devices: tuple[str, ...] = ()
    flags_used: tuple[str, ...] = ()


@lazy_dataclass(frozen=True, kw_only=True)
class Cmd(ShellDependent):
    """CMD (exec or shell form)."""


@lazy_dataclass(frozen=True, kw_only=True)
class Entrypoint(ShellDependent):
    """ENTRYPOINT; ``cmdline`` is None for ``ENTRYPOINT []`` (reset)."""


@lazy_dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    """SHELL (JSON form only)."""

    shell: tuple[str, ...]


@lazy_dataclass(frozen=True, kw_only=True)
class FileCopy(Instruction):
    """Shared COPY/ADD fields; the last argument is ``dest``."""

    sources: tuple[str, ...]
    dest: str
    contents: tuple[SourceContent, ...] = ()
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: tuple[str, ...] = ()


@lazy_dataclass(frozen=True, kw_only=True)
class Copy(FileCopy):
    """COPY; ``from_`` names a stage, a stage index or an image."""

    from_: str = ""
    parents: bool = False


@lazy_dataclass(frozen=True, kw_only=True)
class Add(FileCopy):
    """ADD; ``unpack`` is None when not given (archive auto-detection)."""

    keep_git_dir: bool = False
    checksum: str = ""
    unpack: bool | None = None


@lazy_dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    """ENV pairs, in order."""

    pairs: tuple[KeyValue, ...]


@lazy_dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    """LABEL pairs, in order."""

    pairs: tuple[KeyValue, ...]


@lazy_dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    """ARG definitions, in order."""

    args: tuple[ArgDef, ...]


@lazy_dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    """EXPOSE specs as written (see :mod:`lamina.dockerfile.ports`)."""

    ports: tuple[str, ...]


@lazy_dataclass(frozen=True, kw_only=True)
class User(Instruction):
    """USER ``user[:group]``."""

    user: str


@lazy_dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    """WORKDIR path."""

    path: str


@lazy_dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    """VOLUME paths (never empty strings)."""

    paths: tuple[str, ...]


@lazy_dataclass(frozen=True, kw_only=True)
class StopSignal(Instruction):
    """STOPSIGNAL as written (validated after expansion, at build time)."""

    signal: str


@lazy_dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    """MAINTAINER (deprecated)."""

    maintainer: str


@lazy_dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """HEALTHCHECK; ``health.test`` is ``("NONE",)``, ``("CMD", ...)`` or ``("CMD-SHELL", s)``."""

    health: HealthConfig


@lazy_dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    """ONBUILD: the trigger ``expression`` text (heredocs appended), stored in the image."""

    expression: str
    trigger: str


@lazy_dataclass(frozen=True, kw_only=True)
class Stage:
    """One build stage: its FROM and the commands after it, in order.

    ``name`` is the lower-cased ``AS`` name or None; ``index`` is 0-based.
    """

    index: int
    name: str | None
    from_: From
    commands: tuple[Instruction, ...]

    @property
    def base_name(self) -> str:
        """The unexpanded base image or stage reference."""
        return self.from_.base_name


@lazy_dataclass(frozen=True, kw_only=True)
class Stages:
    """A parsed Dockerfile: global ARGs (before the first FROM) and the stages."""

    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    document: Document


def parse_instruction(node: Node, *, path: str = "Dockerfile") -> Instruction:
    """Convert one AST node to a typed instruction; raises DockerfileError."""
    from lamina.dockerfile.convert import convert_node

    return convert_node(node, path=path)


def parse_stages(document: Document) -> Stages:
    """Convert a document into global ARGs and stages; raises DockerfileError.

    Instructions other than ARG before the first FROM are an error
    ("no build stage in current context").
    """
    from lamina.dockerfile.convert import convert_document

    return convert_document(document)
