"""Unit tests for reading .dockerignore files and the patternmatcher quirks lamina keeps."""

from __future__ import annotations

import pytest

from lamina.dockerfile.dockerignore import MAX_LINE_BYTES, PatternMatcher, read_dockerignore
from lamina.dockerfile.patternmatch import MatchInfo, go_clean, go_trim_space
from lamina.errors import DockerfileError


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        ("a//b/./c/", "a/b/c"),
        ("//a", "/a"),
        ("a/../../b", "../b"),
        ("/../a", "/a"),
        ("./", "."),
        ("**/", "**"),
        ("!./x", "!./x"),
    ],
)
def test_go_clean(path: str, cleaned: str) -> None:
    assert go_clean(path) == cleaned


def test_go_trim_space_is_unicode_aware() -> None:
    assert go_trim_space("\u3000\xa0 a b\t\x85") == "a b"
    assert go_trim_space("\x1ca") == "\x1ca"  # Python's str.strip() would remove \x1c


def test_read_dockerignore_rules() -> None:
    data = "\ufeff# comment\r\n #not-a-comment\r\n\r\n/abs//path/\n!  /again\n./x\n\n"
    assert read_dockerignore(data) == ["#not-a-comment", "abs/path", "!again", "x"]


def test_read_dockerignore_keeps_undecodable_bytes() -> None:
    assert read_dockerignore(b"caf\xe9\n") == ["caf\udce9"]
    assert PatternMatcher(read_dockerignore(b"caf\xe9")).matches("caf\udce9")


def test_read_dockerignore_rejects_overlong_lines() -> None:
    with pytest.raises(DockerfileError, match="line too long") as info:
        read_dockerignore("ok\n" + "a" * MAX_LINE_BYTES + "\n")
    assert info.value.line == 2
    assert read_dockerignore("a" * (MAX_LINE_BYTES - 1)) == ["a" * (MAX_LINE_BYTES - 1)]


def test_lone_exclamation_is_read_but_rejected_by_matcher() -> None:
    patterns = read_dockerignore("!\n")
    assert patterns == ["!"]
    with pytest.raises(DockerfileError, match="illegal exclusion pattern") as info:
        PatternMatcher(patterns)
    assert info.value.path == ".dockerignore"


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**file", "xfile", True),  # a leading ** without other wildcards is a plain suffix
        ("**/file", "xfile", False),
        ("**/a.b", "x/a.b", True),
        ("dir/**", "dir", False),
        ("dir/**", "dir/x/y", True),
        ("a**", "ab/c", True),
        ("^a", "^a", True),  # no wildcard: compared as a string
        ("^a*", "a1", True),  # with one, '^' is a regexp anchor, as upstream
        ("[*]", "*", True),  # inside a class '*' is literal (filepath.Match reading)
        ("a\\.b", "a.b", True),
        ("a\\.b", "axb", False),
        ("\u03b1?", "\u03b1\u03b2", True),
        ("a/*", "a/b/c", True),  # ancestors count
        ("*", "a\nb", True),
    ],
)
def test_single_pattern(pattern: str, path: str, expected: bool) -> None:
    assert PatternMatcher([pattern]).matches(path) is expected


def test_reversed_class_range_fails_only_when_evaluated() -> None:
    matcher = PatternMatcher(["**", "[z-a]"])
    assert matcher.matches("x")  # "[z-a]" is skipped: "**" already excluded x
    bad = PatternMatcher(["[z-a]"])
    for _ in range(2):
        with pytest.raises(DockerfileError, match="character class range"):
            bad.matches("x")


def test_parent_results_keep_upstream_quirk() -> None:
    matcher = PatternMatcher(["a", "!a/b", "a"])
    assert matcher.matches("a/b") is True
    _, parent = matcher.matches_using_parent("a")
    assert parent == MatchInfo((True, False, False))
    # fsutil's variant does not retry the third pattern against a/b's ancestors.
    assert matcher.matches_using_parent("a/b", parent)[0] is False
    with pytest.raises(DockerfileError, match="wrong number"):
        matcher.matches_using_parent("a/b", MatchInfo((True,)))


def test_dot_and_empty_patterns() -> None:
    assert not PatternMatcher(["**"]).matches(".")
    assert PatternMatcher(["", "  ", "\t"]).patterns == ()
    assert PatternMatcher([" docs/ "]).patterns[0].text == "docs"
    assert PatternMatcher(["!x"], source="f").exclusions
