"""The build corpus end to end: ``lamina build`` of every ``tests/build_corpus`` case.

Each case (see :mod:`lamina.testing.corpus` for ``expect.json``) is built through the CLI
into a store holding the busybox base, then checked as a user sees the result: the config
fields from ``lamina inspect`` and the flattened filesystem from ``lamina export`` (extracted
with GNU tar, numeric owners). Bad-input cases must fail with one clear error naming
``Dockerfile:LINE`` — no traceback — and leave no image, no mount and a store that
``lamina system check`` finds consistent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lamina.testing.capabilities import mount_points_under
from lamina.testing.cli import run_cli
from lamina.testing.corpus import (
    Case,
    build_with_lamina,
    config_problems,
    export_tree,
    file_problems,
    import_busybox,
    load_cases,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_runtime]

CORPUS = Path(__file__).resolve().parents[1] / "build_corpus"
CASES = load_cases(CORPUS)
GOOD = [c for c in CASES if not c.is_error]
BAD = [c for c in CASES if c.is_error]


def test_corpus_covers_the_issue() -> None:
    """At least 40 cases, and every instruction of the issue appears in one."""
    assert len(CASES) >= 40
    text = "\n".join((c.path / c.spec.get("dockerfile", "Dockerfile")).read_text() for c in CASES)
    for word in (
        "FROM scratch", "RUN [", "RUN <<", "--mount=type=cache", "--mount=type=bind",
        "--mount=type=tmpfs", "--mount=type=secret", "--network=none", "COPY --from=",
        "--chown=", "--chmod=", "--link", "--parents", "--exclude", "ADD ", "--checksum",
        "ENV ", "ARG ", "WORKDIR ", "USER ", "LABEL ", "EXPOSE ", "VOLUME ", "CMD ",
        "ENTRYPOINT ", "SHELL ", "STOPSIGNAL ", "HEALTHCHECK ", "ONBUILD ", "MAINTAINER ",
        "COPY <<",
    ):  # fmt: skip
        assert word in text or any(
            word in p.read_text() for c in CASES for p in c.path.glob("Dockerfile*")
        ), word


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Path:
    """One store per test session holding ``busybox`` (cases tag ``corpus-<name>``)."""
    root = tmp_path_factory.mktemp("corpus") / "root"
    import_busybox(root, busybox_tar)
    return root


def store_problems(root: Path) -> set[str]:
    """The lines ``lamina system check`` prints (empty when the store is consistent).

    Cases share a store per test session, so each test asserts that *its* build added no
    problem (tests of one xdist worker run one at a time).
    """
    res = run_cli(root, "system", "check", check=False)
    lines = set(res.out.splitlines()) - {"store ok"}
    assert (res.code == 0) == (not lines), (res.code, res.out, res.err)
    return lines


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_build_case(corpus_root: Path, case: Case, tmp_path: Path) -> None:
    before = store_problems(corpus_root)
    res, ctx = build_with_lamina(corpus_root, case, tmp_path)
    assert res.code == 0, f"build failed ({res.code}):\n{res.err}"
    tag = f"corpus-{case.name}"
    [data] = json.loads(run_cli(corpus_root, "inspect", tag).out)
    problems = config_problems(case.spec.get("config", {}), data["Config"])
    problems += [
        f"inspect {k}: want {v!r}, got {data.get(k)!r}"
        for k, v in case.spec.get("image", {}).items()
        if data.get(k) != v
    ]
    tree = export_tree(corpus_root, tag, tmp_path / "tree")
    problems += file_problems(
        case.spec.get("files", {}), tree, exact=case.spec.get("exact_paths", False)
    )
    problems += [f"host path {p} was created" for p in case.spec.get("host_absent", [])
                 if os.path.lexists(p)]  # fmt: skip
    problems += [f"context gained {n}" for n in case.spec.get("context_unchanged", [])
                 if os.path.lexists(ctx / n)]  # fmt: skip
    assert problems == []
    assert mount_points_under(corpus_root) == []
    assert mount_points_under(tmp_path) == []
    assert store_problems(corpus_root) - before == set()


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_input(corpus_root: Path, case: Case, tmp_path: Path) -> None:
    before = store_problems(corpus_root)
    res, _ = build_with_lamina(corpus_root, case, tmp_path)
    want = case.spec["error"]
    assert res.code != 0, f"build should fail:\n{res.out}\n{res.err}"
    assert "Traceback" not in res.err
    for text in want["contains"]:
        assert text in res.err, f"{text!r} not in:\n{res.err}"
    if "line" in want:
        assert f"Dockerfile:{want['line']}" in res.err, res.err
    # No half-written image, nothing mounted, a consistent store.
    missing = run_cli(corpus_root, "inspect", f"corpus-{case.name}", check=False)
    assert missing.code != 0
    assert mount_points_under(corpus_root) == []
    assert mount_points_under(tmp_path) == []
    assert store_problems(corpus_root) - before == set()
