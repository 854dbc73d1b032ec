"""``lamina dockerfile dump|check`` through click's runner."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from lamina.cli.dockerfile_cmd import group

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "buildkit-parser"


def test_dump_matches_result() -> None:
    case = DATA / "testfiles" / "health"
    out = CliRunner().invoke(group, ["dump", str(case / "Dockerfile")])
    assert out.exit_code == 0
    assert out.output == (case / "result").read_text(encoding="utf-8")


def test_check_output_and_exit(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text("FROM a\nCMD x\n")
    out = CliRunner().invoke(group, ["check", str(df)])
    assert out.exit_code == 0
    assert out.output == f"{df}:2: JSONArgsRecommended - JSON arguments recommended for CMD" \
        " to prevent unintended behavior related to OS signals\n"  # fmt: skip
    df.write_text("# check=error=true\nFROM a\nCMD x\n")
    assert CliRunner().invoke(group, ["check", str(df)]).exit_code == 1
