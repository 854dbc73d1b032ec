"""``lamina build`` as a subprocess: the README's main job, progress formats, errors, flags."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing.capabilities import mount_points_under
from lamina.testing.cli import Result

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

Cli = Callable[..., Result]
SEED = 'FROM busybox\nCOPY a.txt /a.txt\nCMD ["cat", "/a.txt"]\n'


@pytest.fixture
def seeded(cli: Cli, busybox_tar: Path, tmp_path: Path) -> Path:
    """A store holding busybox; returns the seed example's context directory."""
    cli("import", str(busybox_tar), "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("This is a simple file.")
    (ctx / "Dockerfile").write_text(SEED)
    return ctx


def test_main_job_builds_and_runs(cli: Cli, seeded: Path, tmp_path: Path) -> None:
    res = cli("build", "-t", "seed", "--progress", "plain", str(seeded))
    assert "#2 [2/2] COPY a.txt /a.txt" in res.err and "#2 DONE" in res.err
    again = cli("build", "-t", "seed", "--progress", "plain", str(seeded))
    assert "#2 CACHED" in again.err
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    cli("export", "-o", str(tmp_path / "fs.tar"), "seed")
    subprocess.run(["tar", "-xf", str(tmp_path / "fs.tar"), "-C", str(rootfs)], check=True)
    cmd = json.loads(cli("inspect", "--format", "{{json .Config.Cmd}}", "seed").out)
    out = subprocess.run(["chroot", str(rootfs), *cmd], capture_output=True, check=True)
    assert out.stdout == b"This is a simple file."
    assert mount_points_under(tmp_path) == []


def test_quiet_iidfile_and_json_progress(cli: Cli, seeded: Path, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    res = cli("build", "-q", "--iidfile", str(iid), str(seeded))
    assert res.out.strip() == iid.read_text() and iid.read_text().startswith("sha256:")
    missing = tmp_path / "no-such-dir" / "iid"
    res = cli("build", "-q", "--iidfile", str(missing), str(seeded), check=False)
    assert res.code == 2 and "directory" in res.err and "does not exist" in res.err
    (seeded / "Dockerfile.bad").write_text("FROM busybox\nRUN exit 3\n")
    res = cli("build", "-q", "-f", str(seeded / "Dockerfile.bad"), "--iidfile", str(iid),
              str(seeded), check=False)  # fmt: skip
    assert res.code == 1 and not iid.exists()  # a failed build leaves no stale id (buildx)
    # buildx's flags CI scripts pass: --load is the default, attestations only when off
    res = cli("build", "-q", "--load", "--provenance=false", "--sbom=false", str(seeded))
    assert res.out.startswith("sha256:")
    res = cli("build", "-q", "--provenance=mode=max", str(seeded), check=False)
    assert res.code == 2 and "does not make attestation manifests" in res.err
    res = cli("build", "--no-cache", "--progress", "json", str(seeded))
    events = [json.loads(line) for line in res.err.splitlines() if line.startswith("{")]
    kinds = [(e["kind"], e["name"]) for e in events]
    assert ("start", "[2/2] COPY a.txt /a.txt") in kinds
    assert ("done", "[2/2] COPY a.txt /a.txt") in kinds


def test_failing_run_prints_dockerfile_line(cli: Cli, seeded: Path) -> None:
    (seeded / "Dockerfile").write_text("FROM busybox\nRUN echo last words; exit 4\n")
    res = cli("build", "--progress", "plain", str(seeded), check=False)
    assert res.code == 1
    assert "lamina: error: Dockerfile:2: process" in res.err
    assert "exit code: 4" in res.err and "last words" in res.err


def test_missing_copy_source_and_custom_dockerfile_name(cli: Cli, seeded: Path) -> None:
    (seeded / "build.df").write_text("FROM busybox\n\nCOPY nope /\n")
    res = cli("build", "-f", str(seeded / "build.df"), str(seeded), check=False)
    assert res.code == 1
    assert "build.df:3: file not found in build context" in res.err


def test_check_only_lints(cli: Cli, seeded: Path) -> None:
    (seeded / "Dockerfile").write_text("from busybox\nCMD echo hi\n")
    res = cli("build", "--check", str(seeded), check=False)
    assert res.code == 1
    assert "JSONArgsRecommended" in res.out
    assert cli("images", "--format", "{{.Repository}}").out.split() == ["busybox"]


def test_context_on_stdin_with_build_args_and_labels(cli: Cli, seeded: Path) -> None:
    (seeded / "Dockerfile").write_text("FROM busybox\nARG X\nLABEL x=$X\n")
    tarred = subprocess.run(["tar", "-C", str(seeded), "-c", "."], capture_output=True).stdout
    cli("build", "-t", "lab", "--build-arg", "X=42", "--label", "y=7", "-", stdin=tarred)
    labels = json.loads(cli("inspect", "--format", "{{json .Config.Labels}}", "lab").out)
    assert labels == {"x": "42", "y": "7"}


def test_reproducible_flag_gives_stable_ids(cli: Cli, seeded: Path) -> None:
    first = cli("build", "-q", "--reproducible", str(seeded), env={"SOURCE_DATE_EPOCH": ""})
    second = cli("build", "-q", "--no-cache", "--reproducible", str(seeded),
                 env={"SOURCE_DATE_EPOCH": ""})  # fmt: skip
    assert first.out == second.out
    created = cli("inspect", "--format", "{{.Created}}", first.out.strip()).out.strip()
    assert created == "1970-01-01T00:00:00Z"


def test_sigterm_cancels_cleanly(cli: Cli, seeded: Path, tmp_path: Path) -> None:
    import os
    import signal
    import sys
    import time

    (seeded / "Dockerfile").write_text(
        "FROM busybox AS a\nRUN sleep 60\nFROM busybox AS b\nRUN sleep 60\n"
        "FROM busybox\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\n"
    )
    log = tmp_path / "build.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lamina", "--root", str(cli.root), "build",  # type: ignore[attr-defined]
             "--progress", "plain", str(seeded)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while log.read_text().count("RUN sleep 60") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    assert time.monotonic() - started < 30
    assert "build cancelled" in log.read_text()
    assert mount_points_under(tmp_path) == []
    assert not list((cli.root / "tmp").glob("step-*"))  # type: ignore[attr-defined]


def test_check_error_directive_fails_the_build(cli: Cli, seeded: Path) -> None:
    (seeded / "Dockerfile").write_text("# check=error=true\nFROM busybox\nCMD echo hi\n")
    res = cli("build", "--progress", "plain", str(seeded), check=False)
    assert res.code == 1
    assert "Dockerfile:3: lint violation: JSONArgsRecommended" in res.err
