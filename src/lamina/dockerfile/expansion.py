"""Expansion of one instruction's words in a fixed environment, with BuildKit's rules.

Only the instructions BuildKit expands are expanded (:data:`EXPANDED`): ENV, LABEL, ARG,
COPY/ADD (sources, destination, ``--from --chown --chmod --checksum --exclude``), EXPOSE (split
into words), USER, WORKDIR, VOLUME, STOPSIGNAL and RUN ``--mount`` values; never RUN/CMD/
ENTRYPOINT command lines, SHELL, HEALTHCHECK or ONBUILD. :mod:`lamina.dockerfile.scope` decides
*which* environment each instruction sees; this module only expands.

Invariants: pure; an instruction with nothing to expand is returned as the same object (callers
may compare by identity); a word without ``$``, quotes or the escape character never reaches the
shell lexer, and plain ``$NAME``/``${NAME}`` words take a lexer-free path with the same result.
Errors are :class:`~lamina.errors.DockerfileError` without a location (the caller adds it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from lamina._internal.regex import LazyPattern
from lamina.dockerfile.instructions import (
    Add,
    Arg,
    Copy,
    Env,
    Expose,
    Instruction,
    KeyValue,
    Label,
    Run,
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


def make_lexer(escape: str = "\\") -> Lexer:
    """BuildKit's shell lexer for ``escape`` (imported lazily from ``dockerfile.shell``)."""
    from lamina.dockerfile.shell import Lexer

    return Lexer(escape)


_BLANK_RE = LazyPattern(r"\s")
_SPECIAL: dict[tuple[str, bool], re.Pattern[str]] = {}
#: ``$NAME`` / ``${NAME}``: the only forms the lexer-free fast path expands (ASCII words
#: without quotes or escapes, where every ``$`` starts such a reference).
_SIMPLE_REF_RE = LazyPattern(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _special_re(escape: str, *, dollar: bool = True) -> re.Pattern[str]:
    """Characters that make the lexer do something: ``$`` (optionally), quotes, the escape."""
    pattern = _SPECIAL.get((escape, dollar))
    if pattern is None:
        chars = ("$" if dollar else "") + "'\"" + re.escape(escape)
        pattern = _SPECIAL[(escape, dollar)] = re.compile(f"[{chars}]")
    return pattern


class Expander:
    """Expands the words of one instruction in one fixed environment (``env``), collecting the
    names it found undefined in ``unmatched``; :func:`expand_with` reuses one for many."""

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
        """``word`` expanded as one word (no splitting)."""
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
        """``word`` expanded and split into words (EXPOSE); an empty word gives none."""
        if not self.special.search(word) and not _BLANK_RE.search(word):
            return [word] if word else []
        res = self.lexer.process_word_with_matches(word, self.env)
        self.unmatched |= res.unmatched
        return list(res.words)

    def each(self, items: Sequence[str]) -> tuple[str, ...]:
        """Every item expanded as one word, in order."""
        return tuple(self.word(w) for w in items)


def _pair(ex: Expander, p: KeyValue) -> KeyValue:
    key, value = ex.word(p.key), ex.word(p.value)
    return p if (key, value) == (p.key, p.value) else replace(p, key=key, value=value)


def _pairs(ex: Expander, pairs: Sequence[KeyValue]) -> tuple[KeyValue, ...]:
    return tuple(_pair(ex, p) for p in pairs)


def _files(ex: Expander, instr: _F, **extra: str) -> Instruction:
    return _changed(
        instr,
        sources=ex.each(instr.sources),
        dest=ex.word(instr.dest),
        chown=ex.word(instr.chown),
        chmod=ex.word(instr.chmod),
        excludes=ex.each(instr.excludes),
        **extra,
    )


def _run(ex: Expander, instr: Run) -> Run:
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


def _expand(ex: Expander, i: Instruction) -> Instruction:
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


#: the instruction types whose words BuildKit expands
EXPANDED = (Env, Label, Arg, Copy, Add, Expose, User, Workdir, Volume, StopSignal, Run)


def expand_instruction(
    instr: Instruction, env: Mapping[str, str], lexer: Lexer | None = None
) -> tuple[Instruction, frozenset[str]]:
    """``instr`` with its expandable words expanded in ``env``; plus the undefined names."""
    if not isinstance(instr, EXPANDED):
        return instr, frozenset()
    return expand_with(Expander(lexer or make_lexer(), env), instr, env)


def expand_with(
    ex: Expander, instr: Instruction, env: Mapping[str, str]
) -> tuple[Instruction, frozenset[str]]:
    """As :func:`expand_instruction`, with a reused expander (reset to ``env`` first)."""
    if not isinstance(instr, EXPANDED):
        return instr, frozenset()
    ex.env = env
    ex.unmatched = set()
    out = _expand(ex, instr)
    return out, frozenset(ex.unmatched) if ex.unmatched else frozenset()
