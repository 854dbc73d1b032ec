"""Parser edge cases beyond the BuildKit data: locations, CRLF/BOM, hostile sizes."""

from __future__ import annotations

import time

import pytest

from lamina.dockerfile import dump, parse
from lamina.dockerfile.dump import go_quote
from lamina.dockerfile.instructions import parse_stages
from lamina.errors import DockerfileError


def _dump(text: str | bytes) -> str:
    return dump(parse(text))


def test_crlf_and_bom() -> None:
    text = "\ufeffFROM a\r\nRUN echo \\\r\n  hi\r\n"
    assert _dump(text) == '(from "a")\n(run "echo   hi")\n'
    assert _dump(text.encode()) == _dump(text)


def test_node_spans_and_text() -> None:
    doc = parse("# c\nFROM a AS b\n\nRUN x \\\n  y\nCOPY <<EOF /f\nbody\nEOF\n", path="df")
    spans = [(n.start_line, n.end_line) for n in doc.children]
    assert spans == [(2, 2), (4, 5), (6, 8)]
    assert doc.text_of(doc.children[2]) == "COPY <<EOF /f\nbody\nEOF"
    assert doc.children[1].original == "RUN x   y"
    assert doc.children[0].comments == ("c",)


def test_onbuild_nesting_and_heredoc() -> None:
    doc = parse("FROM a\nONBUILD RUN --mount=type=cache,target=/c <<EOF\nls\nEOF\n")
    node = doc.children[1]
    assert node.sub is not None and node.sub.flags == ("--mount=type=cache,target=/c",)
    assert [h.name for h in node.heredocs] == ["EOF"]
    assert dump(doc).splitlines()[1] == '(onbuild (run ["--mount=type=cache,target=/c"] "<<EOF"))'


def test_unknown_instruction_dump_and_escape_backtick() -> None:
    assert _dump("foo bar\n") == '(foo "")\n'
    assert _dump("# escape=`\nFROM a\nRUN echo `\n  b\\\n") == '(from "a")\n(run "echo   b\\\\")\n'


def test_quote_matches_go() -> None:
    assert go_quote("a\x00\x7f\u00a0\u2028é☃\U0001f600") == '"a\\x00\\x7f\\u00a0\\u2028é☃😀"'
    assert go_quote(b"\xff".decode("utf-8", "surrogateescape")) == '"\\xff"'
    assert go_quote('"\\\a\b\f\n\r\t\v') == '"\\"\\\\\\a\\b\\f\\n\\r\\t\\v"'


def test_invalid_utf8_kept_as_bytes() -> None:
    assert _dump(b"FROM a\nRUN echo \xff\xfe\n") == '(from "a")\n(run "echo \\xff\\xfe")\n'


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "file with no instructions", 1),
        ("# escape=`\n# escape=`\nFROM a\n", "only one escape parser directive can be used", 2),
        ("FROM a\nRUN <<EOF\nx\n", "unterminated heredoc", 2),
        ('FROM a\nCMD ["a", 1]\n', "arrays must be comprised of strings only", 2),
        ("FROM a\nENV a=b c\n", 'Syntax error - can\'t find = in "c"', 2),
        ("FROM a\nLABEL x\n", "LABEL must have two arguments", 2),
    ],
)
def test_errors_are_located(text: str, message: str, line: int) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text, path="ctx/Dockerfile")
    assert message in info.value.message
    assert (info.value.path, info.value.line) == ("ctx/Dockerfile", line)
    assert info.value.column >= 1
    assert str(info.value).startswith(f"ctx/Dockerfile:{line}:")


def _timed(text: str) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        parse_stages(parse(text))
        result = "ok"
    except DockerfileError as exc:
        result = exc.message
    return time.perf_counter() - start, result


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        ("long-line", "FROM a\nRUN " + "x" * 100_000 + "\n", "max allowed size of 65535"),
        ("continuations", "FROM a\nRUN a \\\n" + "  b \\\n" * 50_000 + "c\n", "ok"),
        ("env-continuations", "FROM a\nENV " + "a=b \\\n" * 50_000 + "c=d\n", "ok"),
        ("heredoc-8mib", "FROM a\nRUN <<EOF\n" + ("y" * 1023 + "\n") * 8192 + "EOF\n", "ok"),
        ("unterminated", "FROM a\nRUN <<EOF\n" + "z\n" * 100_000, "unterminated heredoc"),
        ("nul", "FROM a\nRUN \x00 echo\nENV a=\x00\n", "ok"),
        ("opener-blanks", "FROM a\nRUN <<" + " " * 65_000 + "EOF\nEOF\n", "ok"),
        ("deep-json", "FROM a\nCMD " + "[" * 5_000 + "]" * 5_000 + "\n", "ok"),
    ],
)
def test_enormous_inputs_are_bounded(name: str, text: str, expect: str) -> None:
    elapsed, result = _timed(text)
    assert expect in result
    assert elapsed < 3.0, name


def test_nul_bytes_survive_dump() -> None:
    assert '"\\x00 echo"' in _dump("FROM a\nRUN \x00 echo\n")
