"""Build checks: each rule fires with BuildKit's wording; the check directive is honoured."""

from __future__ import annotations

import pytest

from lamina.dockerfile import parse
from lamina.dockerfile.lint import RULES, lint, parse_check_directive

CASES = {
    "StageNameCasing": ("FROM a AS Build\n", "Stage name 'Build' should be lowercase"),
    "FromAsCasing": ("FROM a as b\n", "'as' and 'FROM' keywords' casing do not match"),
    "NoEmptyContinuation": ("FROM a\nRUN a \\\n\n b\n", "Empty continuation line"),
    "ConsistentInstructionCasing": (
        "FROM a\nRUN a\nrun b\n",
        "Command 'run' should match the case of the command majority (uppercase)",
    ),
    "DuplicateStageName": ("FROM a AS x\nFROM b AS x\n", 'Duplicate stage name "x"'),
    "ReservedStageName": ("FROM a AS scratch\n", 'reserved stage "scratch"'),
    "JSONArgsRecommended": ("FROM a\nCMD run me\n", "JSON arguments recommended for CMD"),
    "MaintainerDeprecated": ("FROM a\nMAINTAINER me\n", "Maintainer instruction is deprecated"),
    "UndefinedArgInFrom": ("FROM a:$TAG\n", "FROM argument 'TAG' is not declared"),
    "WorkdirRelativePath": ("FROM a\nWORKDIR app\n", 'Relative workdir "app"'),
    "UndefinedVar": ("FROM a\nENV PATH=$PAHT:/x\n", "'$PAHT' (did you mean $PATH?)"),
    "MultipleInstructionsDisallowed": ('FROM a\nCMD ["a"]\nCMD ["b"]\n', "Multiple CMD"),
    "LegacyKeyValueFormat": ("FROM a\nENV k v\n", '"ENV key=value" should be used'),
    "InvalidDefaultArgInFrom": ("ARG T\nFROM a:${T}\n", "Default value for ARG a:${T}"),
    "SecretsUsedInArgOrEnv": ("FROM a\nARG DB_PASSWORD\n", '(ARG "DB_PASSWORD")'),
    "ExposeProtoCasing": ("FROM a\nEXPOSE 80/TCP\n", "Defined protocol '80/TCP'"),
    "ExposeInvalidFormat": ("FROM a\nEXPOSE 1.2.3.4:80:80\n", "found '1.2.3.4:80:80'"),
    "CopyIgnoredFile": ("FROM a\nCOPY secret.txt /\n", 'Copy file "secret.txt" that is excluded'),
}


@pytest.mark.parametrize("rule", RULES)
def test_rule_fires(rule: str) -> None:
    text, message = CASES[rule]
    found = lint(parse(text), is_ignored=lambda p: p == "secret.txt")
    assert any(w.rule == rule and message in w.message for w in found), found


def test_clean_file_has_no_findings() -> None:
    text = 'FROM alpine:3 AS build\nWORKDIR /src\nCOPY . .\nRUN make\nCMD ["./app"]\n'
    assert lint(parse(text)) == []


def test_check_directive_skip_and_error() -> None:
    text = "# check=skip=JSONArgsRecommended;error=true\nFROM a\nCMD x\nMAINTAINER m\n"
    found = lint(parse(text))
    assert [w.rule for w in found] == ["MaintainerDeprecated"]
    assert found[0].error and found[0].format("Dockerfile") == (
        "Dockerfile:4: MaintainerDeprecated - "
        "Maintainer instruction is deprecated in favor of using label"
    )
    assert lint(parse("# check=skip=all\nFROM a\nCMD x\n")) == []
    assert parse_check_directive("skip=A, B ;error=TRUE").skip == {"A", "B"}
