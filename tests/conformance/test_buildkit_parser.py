"""BuildKit parser conformance: ../shared/conformance/buildkit-parser (read at run time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lamina.dockerfile import dump, parse
from lamina.dockerfile.directives import detect_check, detect_syntax, parse_directives
from lamina.dockerfile.heredoc import (
    HeredocError,
    chomp_heredoc_content,
    heredocs_from_line,
    parse_heredoc,
)
from lamina.dockerfile.parser import parse_line
from lamina.dockerfile.words import NotStringArray, parse_json_array, parse_words
from lamina.errors import DockerfileError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "buildkit-parser"
EXTRA = DATA / "extra"


def _dirs(sub: str) -> list[Path]:
    return sorted(p for p in (DATA / sub).iterdir() if p.is_dir())


def _load(name: str) -> Any:
    return json.loads((EXTRA / name).read_text(encoding="utf-8"))


POSITIVE = _dirs("testfiles")
NEGATIVE = _dirs("testfiles-negative")


def _check_positive(case: Path) -> bool:
    expected = (case / "result").read_bytes().decode("utf-8")
    return dump(parse((case / "Dockerfile").read_bytes())) == expected


def _check_negative(case: Path) -> bool:
    try:
        parse((case / "Dockerfile").read_bytes())
    except DockerfileError:
        return True
    return False


@pytest.mark.parametrize("case", POSITIVE, ids=[p.name for p in POSITIVE])
def test_dump_matches_result(case: Path) -> None:
    expected = (case / "result").read_bytes().decode("utf-8")
    assert dump(parse((case / "Dockerfile").read_bytes())) == expected


@pytest.mark.parametrize("case", NEGATIVE, ids=[p.name for p in NEGATIVE])
def test_negative_fails(case: Path) -> None:
    with pytest.raises(DockerfileError):
        parse((case / "Dockerfile").read_bytes())


def test_pass_counts(capsys: pytest.CaptureFixture[str]) -> None:
    pos = sum(_check_positive(c) for c in POSITIVE)
    neg = sum(_check_negative(c) for c in NEGATIVE)
    with capsys.disabled():
        print(f"\nbuildkit-parser: {pos}/{len(POSITIVE)} dumps, {neg}/{len(NEGATIVE)} negatives")
    assert (pos, neg) == (33, 4)


def test_line_numbers() -> None:
    facts = _load("line-numbers.json")
    doc = parse((DATA / "testfile-line" / "Dockerfile").read_bytes())
    assert [[c.start_line, c.end_line] for c in doc.children] == facts["children"]
    assert (doc.start_line, doc.end_line) == (
        facts["root"]["start_line"],
        facts["root"]["end_line"],
    )


def _heredoc_records(doc_path: Path) -> list[tuple[int, Any, Any]]:
    facts = json.loads(
        (doc_path / next(p.name for p in doc_path.iterdir() if p.suffix == ".json")).read_text()
    )
    doc = parse((doc_path / "Dockerfile").read_bytes())
    out = []
    for case in facts["cases"]:
        node = doc.children[case["instruction_index"]]
        got = [
            {
                "name": h.name,
                "content": h.content,
                "expand": h.expand,
                "chomp": h.chomp,
                "file_descriptor": h.file_descriptor,
            }
            for h in node.heredocs
        ] or None
        want = case["heredocs"]
        if want is not None:
            want = [
                {k: h[k] for k in ("name", "content", "expand", "chomp", "file_descriptor")}
                for h in want
            ]
        out.append((case["instruction_index"], got, want))
    return out


@pytest.mark.parametrize("sub", ["heredoc", "heredoc-json"])
def test_heredoc_extraction(sub: str) -> None:
    for index, got, want in _heredoc_records(EXTRA / sub):
        assert got == want, index


def test_empty_continuation_warning() -> None:
    facts = json.loads((EXTRA / "empty-continuation-warning" / "expected.json").read_text())
    doc = parse((EXTRA / "empty-continuation-warning" / "Dockerfile").read_bytes())
    assert len(doc.warnings) == facts["warning_count"]
    for warning, want in zip(doc.warnings, facts["warnings"], strict=True):
        for text in want["short_contains"]:
            assert text in warning.short
        if "detail0_contains" in want:
            assert want["detail0_contains"] in warning.detail[0]
        assert warning.url == "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"


HEREDOC_HELPERS = _load("heredoc-helpers.json")


@pytest.mark.parametrize("word", HEREDOC_HELPERS["parse_heredoc_word"]["valid_name_EOF"])
def test_heredoc_word_valid(word: str) -> None:
    doc = parse_heredoc(word)
    assert doc is not None and doc.name == "EOF"


@pytest.mark.parametrize("word", HEREDOC_HELPERS["parse_heredoc_word"]["error"])
def test_heredoc_word_error(word: str) -> None:
    with pytest.raises(HeredocError):
        parse_heredoc(word)


@pytest.mark.parametrize("word", HEREDOC_HELPERS["parse_heredoc_word"]["not_a_heredoc"])
def test_heredoc_word_not_heredoc(word: str) -> None:
    assert parse_heredoc(word) is None


@pytest.mark.parametrize("case", HEREDOC_HELPERS["heredocs_from_line"], ids=lambda c: c["line"])
def test_heredocs_from_line(case: dict[str, Any]) -> None:
    assert [h.name for h in heredocs_from_line(case["line"])] == case["names"]


def test_heredoc_chomp() -> None:
    chomp = HEREDOC_HELPERS["chomp"]
    assert chomp_heredoc_content(chomp["input"]) == chomp["expect"]


JSON_ARRAYS = _load("json-arrays.json")


@pytest.mark.parametrize("case", JSON_ARRAYS["valid"], ids=lambda c: c["input"])
def test_json_array_valid(case: dict[str, Any]) -> None:
    assert parse_json_array(case["input"]) == case["expect"]
    node = parse_line("CMD " + case["input"])
    assert node.json and list(node.args) == case["expect"]


@pytest.mark.parametrize("text", JSON_ARRAYS["invalid_not_string_array"])
def test_json_array_not_strings(text: str) -> None:
    with pytest.raises(NotStringArray):
        parse_json_array(text)
    with pytest.raises(DockerfileError, match="arrays must be comprised of strings only"):
        parse("CMD " + text + "\n")


PARSE_WORDS = _load("parse-words.json")


@pytest.mark.parametrize("case", PARSE_WORDS["cases"], ids=lambda c: c["input"])
def test_parse_words(case: dict[str, Any]) -> None:
    assert parse_words(case["input"]) == case["expect"]


NAME_VALUE = _load("name-value.json")


@pytest.mark.parametrize("case", NAME_VALUE["cases"], ids=lambda c: c["keyword"] + " " + c["args"])
def test_name_value(case: dict[str, Any]) -> None:
    text = f"{case['keyword']} {case['args']}\n"
    if "expect_error" in case:
        with pytest.raises(DockerfileError, match=case["expect_error"]):
            parse(text)
    else:
        assert list(parse(text).children[0].args) == case["expect_nodes"]


DIRECTIVES = _load("directives.json")


@pytest.mark.parametrize("case", DIRECTIVES["parse_all"], ids=lambda c: c["input"])
def test_directives_parse_all(case: dict[str, Any]) -> None:
    got = [{"name": d.name, "value": d.value} for d in parse_directives(case["input"])]
    assert got == case["expect"]


def _directive_input(case: dict[str, Any]) -> str:
    prefix = bytes.fromhex(case.get("input_bytes_hex_prefix", "")).decode("utf-8")
    return prefix + case["input"]


@pytest.mark.parametrize("case", DIRECTIVES["detect_syntax"], ids=lambda c: c["input"])
def test_detect_syntax(case: dict[str, Any]) -> None:
    found = detect_syntax(_directive_input(case))
    assert (found is not None) == case["found"]
    if found is not None:
        assert found.ref == case["ref"]
        if "cmdline" in case:
            assert found.cmdline == case["cmdline"]
        if "line" in case:
            assert found.line == case["line"]


@pytest.mark.parametrize("case", DIRECTIVES["parse_directive_check"], ids=lambda c: c["input"])
def test_detect_check(case: dict[str, Any]) -> None:
    found = detect_check(case["input"])
    assert (found is not None) == case["found"]
    if found is not None:
        assert found.ref == case["value"]
        if "cmdline" in case:
            assert found.cmdline == case["cmdline"]
        if "line" in case:
            assert found.line == case["line"]


def test_directive_errors() -> None:
    with pytest.raises(DockerfileError, match="only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM x\n")
    with pytest.raises(DockerfileError, match="invalid escape token"):
        parse("# escape=x\nFROM x\n")


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileError, match="unterminated heredoc"):
        parse("FROM x\nRUN <<EOF\necho\n")


def test_long_line_rejected() -> None:
    with pytest.raises(DockerfileError, match="max allowed size of 65535"):
        parse("FROM x\nRUN " + "a" * 70000 + "\n")
