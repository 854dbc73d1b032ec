"""Shell-word expansion with BuildKit's semantics (``frontend/dockerfile/shell``).

``Lexer`` replaces ``$name`` and ``${name...}`` in Dockerfile instruction arguments, removes quotes
and escapes, and can split the result into words. The behaviour, including its quirks, follows
BuildKit's lexer as pinned by ``shared/conformance/buildkit-shell``:

* names are letters, digits and ``_`` (Unicode counts); a leading digit makes a positional name
  (``$1``, ``$001``); ``@ * # ? - $ ! 0`` are one-character special names; none of these is ever
  set by a Dockerfile. ``$`` before anything else is a literal ``$``.
* modifiers ``:-  -  :+  +  :?  ?  #  ##  %  %%  /  //``; the word after a modifier is itself
  expanded, and its variables are looked up even when the branch is not taken.
* single quotes keep everything; in double quotes the escape token escapes only ``"``, ``$`` and
  itself; elsewhere it escapes any character and a trailing one is dropped.
* an unquoted ``<<`` keeps the blanks after it in the same word (heredoc detection).

Invariants: expansion is pure (no I/O, no global state) and the only exception it raises is
``DockerfileError``, with BuildKit's message prefixed by ``failed to process "<word>"``. Every
expanded word is capped at ``max_length`` characters and ``${`` nesting at ``max_depth``, so a
hostile environment cannot make it build gigabytes or overflow the stack. Pattern modifiers run
in O(len(value) * len(pattern)) time (see ``shellpattern``) and are refused past 2**28 steps.

Deviation: BuildKit (at some versions) shares one word buffer between nested expansions, which
can drop text before a ``${x:-y}`` in ``process_words``; this lexer keeps each level separate.
"""

from __future__ import annotations

from collections.abc import Mapping

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.dockerfile.shellexpand import Expansion, LexOptions
from lamina.errors import DockerfileError

__all__ = ["DEFAULT_MAX_LENGTH", "ExpandResult", "Lexer", "env_from_list", "go_quote"]

DEFAULT_MAX_LENGTH = 1 << 20
"""Default cap, in characters, on one expanded word (and on every value built inside it)."""


@lazy_dataclass(frozen=True, kw_only=True)
class ExpandResult:
    """The outcome of one expansion.

    ``result`` is the single-string form, ``words`` the split form. ``matched`` holds every name
    that was looked up and found, ``unmatched`` every name looked up and not found (including
    lookups in branches whose value was not used); BuildKit's UndefinedVar lint reads these.
    """

    result: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


def env_from_list(entries: list[str]) -> dict[str, str]:
    """Build an environment from ``KEY=VALUE`` strings; ``KEY`` alone is set-but-empty.

    Later duplicates win, as in BuildKit's ``EnvsFromSlice``.
    """
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


_GO_NAMED_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}


def go_quote(text: str) -> str:
    """Quote ``text`` as Go's ``%q`` does (used in error messages)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_NAMED_ESCAPES:
            out.append("\\" + _GO_NAMED_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


class Lexer:
    """BuildKit's shell-word lexer. Stateless between calls, so safe to share across threads.

    ``escape`` is the Dockerfile escape token (``\\`` or a backtick). Keyword options mirror
    BuildKit's: ``raw_quotes`` keeps quote characters, ``raw_escapes`` keeps escape tokens,
    ``skip_unset_env`` leaves references to unset names as written, ``skip_process_quotes``
    treats quotes as ordinary characters; ``case_insensitive_env`` upper-cases names before
    lookup (BuildKit on Windows). ``max_length`` caps each expanded word (characters) and
    ``max_depth`` the ``${`` nesting; exceeding either raises DockerfileError.
    """

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset_env: bool = False,
        skip_process_quotes: bool = False,
        case_insensitive_env: bool = False,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_depth: int = 100,
    ) -> None:
        if escape not in ("\\", "`"):
            raise DockerfileError(f"invalid escape token {escape!r}: must be ` or \\")
        self.options = LexOptions(
            escape=escape,
            raw_quotes=raw_quotes,
            raw_escapes=raw_escapes,
            skip_unset_env=skip_unset_env,
            skip_process_quotes=skip_process_quotes,
            case_insensitive_env=case_insensitive_env,
            max_length=max_length,
            max_depth=max_depth,
        )

    @property
    def escape(self) -> str:
        """The escape token this lexer was built with."""
        return self.options.escape

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> ExpandResult:
        """Expand ``word`` once, returning both forms and the names looked up."""
        if self.options.case_insensitive_env:
            env = {key.upper(): value for key, value in env.items()}
        run = Expansion(self.options, word, env)
        try:
            result, words = run.until("", run.raw_escapes)
        except DockerfileError as exc:
            raise exc.with_context(f"failed to process {go_quote(word)}") from None
        except RecursionError:
            raise DockerfileError(
                f"failed to process {go_quote(word)}: substitutions nested too deeply"
            ) from None
        return ExpandResult(
            result=result,
            words=tuple(words),
            matched=frozenset(run.matched),
            unmatched=frozenset(run.unmatched),
        )

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` to one string (BuildKit ``ProcessWord``); spaces are kept."""
        return self.process_word_with_matches(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it into words (BuildKit ``ProcessWords``).

        Unquoted text from ``$`` expansions splits on whitespace; quoted text never does; an
        empty quoted string alone yields no word.
        """
        return list(self.process_word_with_matches(word, env).words)
