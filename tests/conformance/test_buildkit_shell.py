"""BuildKit shell-word expansion conformance: ../shared/conformance/buildkit-shell (run time).

One test id per data row. ``envVarTest`` ``A``/``U`` rows run as on Linux; the two ``W`` rows run
with ``case_insensitive_env`` (BuildKit's Windows lookup), so every row runs and none is skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lamina.dockerfile.shell import Lexer, env_from_list
from lamina.errors import DockerfileError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "buildkit-shell"
ENV_VAR_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


@dataclass(frozen=True)
class EnvVarRow:
    line: int
    platform: str
    source: str
    expected: str


@dataclass(frozen=True)
class WordsRow:
    line: int
    source: str
    env: dict[str, str]
    expected: list[str]


def _env_var_rows() -> list[EnvVarRow]:
    rows = []
    text = (DATA / "envVarTest").read_text(encoding="utf-8")
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw.startswith("#") or not raw.strip():
            continue
        platform, source, expected = (field.strip() for field in raw.strip().split("|"))
        rows.append(EnvVarRow(number, platform, source, expected))
    return rows


def _words_rows() -> list[WordsRow]:
    rows = []
    env: dict[str, str] = {}
    text = (DATA / "wordsTest").read_text(encoding="utf-8")
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw.startswith("#") or raw == "":
            continue
        if raw.startswith("ENV "):
            key, _, value = raw[4:].lstrip(" ").partition("=")
            env[key] = value
            continue
        source, expected = raw.split("|")
        rows.append(WordsRow(number, source.strip(), dict(env), expected.lstrip(" ").split(",")))
    return rows


def _json() -> Any:
    return json.loads((DATA / "process-with-matches.json").read_text(encoding="utf-8"))


ENV_VAR_ROWS = _env_var_rows()
WORDS_ROWS = _words_rows()
MATCH_CASES: list[dict[str, Any]] = _json()["cases"]
EXTRA: dict[str, Any] = _json()["extra_cases"]
EXTRA_CASES: list[dict[str, Any]] = [
    case
    for key, cases in EXTRA.items()
    if key.startswith(("mandatory_env_vars", "platform_filename"))
    for case in cases
]
ENV_LIST_CASES: list[dict[str, Any]] = next(v for k, v in EXTRA.items() if k.startswith("env_list"))
PATTERN_FACTS: dict[str, Any] = next(v for k, v in EXTRA.items() if k.startswith("shell_pattern"))


def _env_var_ok(row: EnvVarRow) -> bool:
    lexer = Lexer(case_insensitive_env=row.platform == "W")
    try:
        got = lexer.process_word(row.source, ENV_VAR_ENV)
    except DockerfileError:
        got = "error"
    return got == row.expected


def _words_ok(row: WordsRow) -> bool:
    try:
        got = Lexer().process_words(row.source, row.env)
    except DockerfileError:
        got = ["error"]
    return got == row.expected


def _match_ok(case: dict[str, Any]) -> bool:
    try:
        res = Lexer().process_word_with_matches(case["input"], case["envs"])
    except DockerfileError:
        return bool(case.get("expected_error"))
    return (
        not case.get("expected_error")
        and res.result == case["expected"]
        and res.matched == frozenset(case["matches"])
        and res.unmatched == frozenset(case["unmatched"])
    )


def _extra_ok(case: dict[str, Any]) -> bool:
    try:
        got = Lexer().process_word(case["input"], case["envs"])
    except DockerfileError as exc:
        return "expected_error_contains" in case and case["expected_error_contains"] in str(exc)
    return "expected" in case and got == case["expected"]


@pytest.mark.parametrize(
    "row", ENV_VAR_ROWS, ids=[f"L{r.line}-{r.platform}-{r.source}" for r in ENV_VAR_ROWS]
)
def test_env_var_row(row: EnvVarRow) -> None:
    assert _env_var_ok(row), row


@pytest.mark.parametrize("row", WORDS_ROWS, ids=[f"L{r.line}-{r.source}" for r in WORDS_ROWS])
def test_words_row(row: WordsRow) -> None:
    assert _words_ok(row), row


@pytest.mark.parametrize(
    "case", MATCH_CASES, ids=[f"{i}-{c['input']}" for i, c in enumerate(MATCH_CASES)]
)
def test_process_with_matches(case: dict[str, Any]) -> None:
    assert _match_ok(case), case


@pytest.mark.parametrize(
    "case", EXTRA_CASES, ids=[f"{i}-{c['input']}" for i, c in enumerate(EXTRA_CASES)]
)
def test_extra_case(case: dict[str, Any]) -> None:
    assert _extra_ok(case), case


@pytest.mark.parametrize("case", ENV_LIST_CASES, ids=[str(c["env_list"]) for c in ENV_LIST_CASES])
def test_env_from_list(case: dict[str, Any]) -> None:
    env = env_from_list(case["env_list"])
    assert Lexer().process_word("$" + case["lookup"], env) == case["expected"]


@pytest.mark.parametrize("pattern", sorted(PATTERN_FACTS["cases"]))
def test_shell_pattern_matches_like_its_regex(pattern: str) -> None:
    # Upstream's facts are the (greedy, anchored) regexes of these patterns: ``${V##p}`` must
    # strip exactly what that regex matches, on a value spelled by the pattern's literals.
    regex = re.compile(PATTERN_FACTS["cases"][pattern])
    sample = re.sub(r"\\(.)", r"\1", pattern) + "tail"
    match = regex.match(sample)
    assert match is not None
    got = Lexer().process_word("${V##" + pattern + "}", {"V": sample})
    assert got == sample[match.end() :]


@pytest.mark.parametrize("pattern", PATTERN_FACTS["invalid"])
def test_shell_pattern_invalid(pattern: str) -> None:
    with pytest.raises(DockerfileError, match="invalid pattern"):
        Lexer().process_word("${V##$P}", {"V": "value", "P": pattern})


def test_pass_counts(capsys: pytest.CaptureFixture[str]) -> None:
    counts = {
        "envVarTest": (sum(map(_env_var_ok, ENV_VAR_ROWS)), len(ENV_VAR_ROWS)),
        "wordsTest": (sum(map(_words_ok, WORDS_ROWS)), len(WORDS_ROWS)),
        "process-with-matches": (
            sum(map(_match_ok, MATCH_CASES)) + sum(map(_extra_ok, EXTRA_CASES)),
            len(MATCH_CASES) + len(EXTRA_CASES),
        ),
    }
    with capsys.disabled():
        for name, (passed, total) in counts.items():
            print(f"\nbuildkit-shell {name}: {passed}/{total}", end="")
        print()
    assert counts == {
        "envVarTest": (230, 230),
        "wordsTest": (24, 24),
        "process-with-matches": (56, 56),
    }
