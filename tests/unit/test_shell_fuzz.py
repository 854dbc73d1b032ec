"""Fuzzing the expander and the pattern matchers (hypothesis, bounded to a few seconds).

Properties: the shell lexer raises nothing but DockerfileError on any input; the linear-time
wildcard matcher agrees with a backtracking regex (Go's leftmost-first ``.*``/``.*?``) on small
inputs; the ``.dockerignore`` matcher raises nothing but DockerfileError on any pattern.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.dockerfile.patternmatch import PatternMatcher
from lamina.dockerfile.shell import Lexer
from lamina.dockerfile.shellpattern import ShellPattern
from lamina.errors import DockerfileError

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

SHELL_ALPHABET = st.sampled_from(
    [*"${}:-+?#%/\\'\"<`*ab1@ \t\n_", "${", "${a", "$a", "\\$", "<<", "ü", "\x00"]
)
WORDS = st.lists(SHELL_ALPHABET, max_size=40).map("".join)
NAMES = st.sampled_from(["a", "b", "A", "_", "1", "ab"])
ENVS = st.dictionaries(NAMES, st.text(alphabet="ab*?\\ $\n}/", max_size=8), max_size=4)


@FUZZ
@given(
    word=WORDS,
    env=ENVS,
    escape=st.sampled_from(["\\", "`"]),
    flags=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_lexer_raises_only_dockerfile_error(
    word: str, env: dict[str, str], escape: str, flags: list[bool]
) -> None:
    lexer = Lexer(
        escape,
        raw_quotes=flags[0],
        raw_escapes=flags[1],
        skip_unset_env=flags[2],
        case_insensitive_env=flags[3],
        max_length=200,
    )
    try:
        res = lexer.process_word_with_matches(word, env)
    except DockerfileError:
        return
    assert isinstance(res.result, str)
    assert len(res.result) <= 200
    assert all(w for w in res.words)
    assert not res.matched & res.unmatched


# (source text, reference regex fragment) for one pattern item.
PATTERN_ITEMS = st.sampled_from(
    [
        ("*", "[^\n]*"),
        ("?", "[^\n]"),
        ("a", "a"),
        ("b", "b"),
        ("\n", "\n"),
        ("\\*", re.escape("*")),
        ("\\?", re.escape("?")),
        ("\\\\", re.escape("\\")),
    ]
)
TEXTS = st.text(alphabet="ab\n*?\\", max_size=9)


def _reference(items: list[tuple[str, str]]) -> tuple[str, re.Pattern[str], re.Pattern[str]]:
    source = "".join(src for src, _ in items)
    greedy = "".join(rx for _, rx in items)
    lazy = greedy.replace("[^\n]*", "[^\n]*?")
    return source, re.compile(greedy), re.compile(lazy)


@FUZZ
@given(items=st.lists(PATTERN_ITEMS, max_size=6), text=TEXTS, pos=st.integers(0, 9))
def test_shell_pattern_agrees_with_backtracking_regex(
    items: list[tuple[str, str]], text: str, pos: int
) -> None:
    source, greedy, lazy = _reference(items)
    pattern = ShellPattern(source)
    longest = greedy.match(text)
    shortest = lazy.match(text)
    assert pattern.match_prefix(text, longest=True) == (longest.end() if longest else None)
    assert pattern.match_prefix(text, longest=False) == (shortest.end() if shortest else None)
    pos = min(pos, len(text))
    found = greedy.search(text, pos)
    assert pattern.search(text, pos) == (found.span() if found else None)


@FUZZ
@given(
    patterns=st.lists(st.text(alphabet="ab/*?[]^!-\\. \u03b1", max_size=8), max_size=4),
    paths=st.lists(st.text(alphabet="ab/.\u03b1-]", max_size=8), max_size=4),
)
def test_pattern_matcher_raises_only_dockerfile_error(
    patterns: list[str], paths: list[str]
) -> None:
    try:
        matcher = PatternMatcher(patterns)
    except DockerfileError:
        return
    for path in paths:
        try:
            result = matcher.matches(path)
        except DockerfileError:
            continue
        assert isinstance(result, bool)
        if path != ".":
            assert matcher.matches_using_parent(path)[0] == result
