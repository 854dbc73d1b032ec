"""Unit tests for lamina.dockerfile.shell beyond the conformance data: options, quirks, bounds."""

from __future__ import annotations

import time

import pytest

from lamina.dockerfile.shell import ExpandResult, Lexer, go_quote
from lamina.errors import DockerfileError


def test_backtick_escape_token() -> None:
    lexer = Lexer("`")
    assert lexer.escape == "`"
    assert lexer.process_word(r"C:\path`$X", {"X": "no"}) == r"C:\path$X"
    assert lexer.process_word('"a`"b"', {}) == 'a"b'
    assert lexer.process_words("a` b c", {}) == ["a b", "c"]


def test_invalid_escape_token() -> None:
    with pytest.raises(DockerfileError, match="invalid escape token"):
        Lexer("x")


def test_result_carries_both_forms_and_lookups() -> None:
    res = Lexer().process_word_with_matches("a ${B:-$C} ${D}", {"D": "x y"})
    assert res == ExpandResult(
        result="a  x y",
        words=("a", "x", "y"),
        matched=frozenset({"D"}),
        unmatched=frozenset({"B", "C"}),
    )


def test_words_keep_text_before_nested_expansion() -> None:
    # BuildKit at some versions loses "hello" here (a shared buffer); lamina does not.
    assert Lexer().process_words("hello${x:-y}bye", {}) == ["helloybye"]


def test_heredoc_marker_keeps_blanks_in_its_word() -> None:
    assert Lexer().process_words("<<  EOF a < b", {}) == ["<<  EOF", "a", "<", "b"]
    assert Lexer().process_word("<<\tEOF", {}) == "<<\tEOF"


def test_heredoc_detection_mode() -> None:
    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    assert lexer.process_words("<<'EOF' $X ${Y:-z} \\$a", {}) == [
        "<<'EOF'",
        "$X",
        "${Y:-z}",
        "\\$a",
    ]


def test_skip_process_quotes() -> None:
    assert Lexer(skip_process_quotes=True).process_word("'$A' \"b\"", {"A": "1"}) == "'1' \"b\""


def test_case_insensitive_env() -> None:
    assert Lexer(case_insensitive_env=True).process_word("$path", {"Path": "p"}) == "p"
    assert Lexer().process_word("$path", {"Path": "p"}) == ""


def test_error_messages_follow_buildkit() -> None:
    with pytest.raises(DockerfileError) as info:
        Lexer().process_word("${x:?}", {})
    assert info.value.message == 'failed to process "${x:?}": x: is not allowed to be unset'
    with pytest.raises(DockerfileError, match="is not allowed to be empty"):
        Lexer().process_word("${x:?}", {"x": ""})
    with pytest.raises(DockerfileError, match=r"unsupported modifier \(:=\)"):
        Lexer().process_word("${x:=1}", {})
    with pytest.raises(DockerfileError, match="missing '/'"):
        Lexer().process_word("${x/a", {})


def test_go_quote() -> None:
    assert go_quote('a"b\\\n\x01é\u200b') == '"a\\"b\\\\\\n\\x01é\\u200b"'


@pytest.mark.parametrize(
    ("word", "value", "expected"),
    [
        ("${x#*/}", "a/b/c", "b/c"),
        ("${x##*/}", "a/b/c", "c"),
        ("${x%/*}", "a/b/c", "a/b"),
        ("${x%%/*}", "a/b/c", "a"),
        ("${x##*}", "ab\ncd", "\ncd"),  # like Go's '.', '*' stops at a newline
        ("${x%%?}", "ab\n", "ab\n"),  # '?' never matches a newline
        ("${x/b*/X}", "abcabc", "aX"),
        ("${x//b?/X}", "abcabc", "aXaX"),
        ("${x//*/-}", "ab", "-"),  # Go drops the empty match right after a match
        ("${x//\\*/.}", "a*b*", "a.b."),
    ],
)
def test_pattern_modifiers(word: str, value: str, expected: str) -> None:
    assert Lexer().process_word(word, {"x": value}) == expected


def test_replace_all_expands_go_templates_but_replace_first_does_not() -> None:
    env = {"x": "banana"}
    # The replacement keeps its raw escapes, so "\$0" is a backslash and then the match.
    assert Lexer().process_word("${x//a/<\\$0>}", env) == "b<\\a>n<\\a>n<\\a>"
    assert Lexer().process_word("${x//a/$R}", {**env, "R": "[$0|${0}|$$|$1|$x]"}) == (
        "b[a|a|$||]n[a|a|$||]n[a|a|$||]"
    )
    assert Lexer().process_word("${x/a/<\\$0>}", env) == "b<\\$0>nana"


def test_suffix_pattern_is_reversed_with_its_escapes() -> None:
    # BuildKit reverses the raw pattern keeping "\x" pairs: "*\" becomes "\*", a literal star.
    assert Lexer().process_word("${x%$P}", {"x": "ab*", "P": "*\\"}) == "ab"
    with pytest.raises(DockerfileError, match="invalid escape"):
        Lexer().process_word("${x#$P}", {"x": "ab*", "P": "*\\"})


def test_expanded_word_is_capped() -> None:
    big = {"x": "a" * 600_000}
    with pytest.raises(DockerfileError, match="exceeds 1048576 characters"):
        Lexer().process_word("$x$x", big)
    with pytest.raises(DockerfileError, match="exceeds 10 characters"):
        Lexer(max_length=10).process_word("${x:-01234567890}", {})
    with pytest.raises(DockerfileError, match="exceeds"):
        Lexer(max_length=100).process_word("${x//?/$x$x}", {"x": "abcdefghij"})
    with pytest.raises(DockerfileError, match="exceeds"):
        Lexer(max_length=10).process_word('"' + "a" * 11 + '"', {})
    assert Lexer(max_length=10).process_word("$x", {"x": "a" * 10}) == "a" * 10


def test_nesting_is_capped_not_a_recursion_error() -> None:
    deep = "${a:-" * 5000 + "x" + "}" * 5000
    with pytest.raises(DockerfileError, match="nested"):
        Lexer().process_word(deep, {})
    assert Lexer(max_depth=10).process_word("${a:-" * 10 + "x" + "}" * 10, {}) == "x"


def test_pathological_patterns_are_fast() -> None:
    value = "a" * 50_000
    star_pattern = "*a" * 12 + "*b"
    start = time.monotonic()
    lexer = Lexer()
    assert lexer.process_word("${x##" + star_pattern + "}", {"x": value}) == value
    assert lexer.process_word("${x%%" + star_pattern + "}", {"x": value}) == value
    assert lexer.process_word("${x//" + star_pattern + "/z}", {"x": value}) == value
    assert lexer.process_word("${x//" + "?" * 30 + "b/z}", {"x": value}) == value
    assert lexer.process_word("${x#" + "*a" * 12 + "}", {"x": value}) == value[12:]
    assert time.monotonic() - start < 5.0


def test_pattern_work_is_bounded() -> None:
    env = {"x": "a" * 1_000_000, "p": "a" * 5000}
    with pytest.raises(DockerfileError, match="too large"):
        Lexer().process_word("${x#$p}", env)
