""".dockerignore conformance: ../shared/conformance/dockerignore (read at run time).

One test id per data row. The five permission-denied walk cases need a user that cannot read a
``chmod 000`` directory; when the suite runs as root they run in a forked child that drops to
``nobody`` first (the tree then lives in a world-traversable temporary directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.dockerfile.dockerignore import (
    ContextFilter,
    PatternMatcher,
    find_ignore_file,
    read_dockerignore,
    walk_context,
)
from lamina.errors import BuildError, DockerfileError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "dockerignore"


def _tsv_rows() -> list[dict[str, str]]:
    lines = (DATA / "cases.tsv").read_text(encoding="utf-8").split("\n")
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]


TSV_ROWS = _tsv_rows()
WALK_CASES: list[dict[str, Any]] = json.loads(
    (DATA / "tree-walk-cases.json").read_text(encoding="utf-8")
)["cases"]
OTHER: dict[str, Any] = json.loads((DATA / "other-cases.json").read_text(encoding="utf-8"))
INTEGRATION: list[dict[str, Any]] = OTHER["buildkit_integration"]


# --- cases.tsv ---------------------------------------------------------------------------------


def _tsv_result(row: dict[str, str]) -> str:
    patterns, path = json.loads(row["patterns"]), json.loads(row["path"])
    try:
        matcher = PatternMatcher(patterns)
        first = matcher.matches(path)
        # Upstream checks every row through the parent-results variant too; they must agree,
        # and a failing pattern must fail again on a second call.
        assert matcher.matches_using_parent(path)[0] == first
        assert matcher.matches(path) == first
    except DockerfileError:
        return "error"
    return str(first).lower()


@pytest.mark.parametrize("row", TSV_ROWS, ids=[f"{r['id']}-{r['source']}" for r in TSV_ROWS])
def test_pattern_row(row: dict[str, str]) -> None:
    assert _tsv_result(row) == row["expected"], row


# --- tree-walk-cases.json ----------------------------------------------------------------------


def _make_tree(base: Path, tree: list[list[str]]) -> None:
    for rel, kind in tree:
        if kind == "dir":
            (base / rel).mkdir(parents=True, exist_ok=True)
        else:
            (base / rel).touch()


def _walk_lines(case: dict[str, Any], base: str) -> list[str]:
    context_filter = ContextFilter(
        excludes=case.get("exclude_patterns"), includes=case.get("include_patterns")
    )
    return [f"{'dir' if e.is_dir else 'file'} {e.path}" for e in context_filter.walk(base)]


def _outcome(case: dict[str, Any], base: str) -> dict[str, Any]:
    """Run one case: the walk (or its error) and the filtered opens."""
    try:
        walked = _walk_lines(case, base)
    except DockerfileError as exc:
        return {"filter_error": str(exc)}
    except BuildError as exc:
        return {"walk_error": str(exc)}
    context_filter = ContextFilter(
        excludes=case.get("exclude_patterns"), includes=case.get("include_patterns")
    )
    opens = {}
    for path in case.get("expected_open", {}):
        try:
            context_filter.open(base, path).close()
            opens[path] = True
        except FileNotFoundError:
            opens[path] = False
    return {"walk": walked, "open": opens}


def _as_nobody(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` as an unprivileged user: directly if we are not root, else in a forked child."""
    if os.geteuid() != 0:
        return fn()
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            payload = fn()
        except BaseException as exc:
            payload = {"child_error": f"{type(exc).__name__}: {exc}"}
            status = 1
        with os.fdopen(write_end, "wb") as out:
            out.write(json.dumps(payload).encode())
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data)
    return result


@contextlib.contextmanager
def _traversable_dir() -> Iterator[Path]:
    """A temporary directory that ``nobody`` can traverse (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="lamina-walk-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
        shutil.rmtree(base)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    with _traversable_dir() as base:
        yield base


def _walk_case_ok(case: dict[str, Any], base: Path) -> bool:
    _make_tree(base, case["tree"])
    if "setup" in case:
        assert case["setup"].startswith("chmod 000 foo/bar")
        (base / "foo" / "bar").chmod(0)
        outcome = _as_nobody(lambda: _outcome(case, str(base)))
    else:
        outcome = _outcome(case, str(base))
    expected_error = case.get("expected_error")
    if expected_error is True:
        return "filter_error" in outcome
    if isinstance(expected_error, str):
        return expected_error in outcome.get("walk_error", "")
    if "walk" not in outcome:
        return False
    if "expected_walk" in case and outcome["walk"] != case["expected_walk"]:
        return False
    return bool(outcome["open"] == case.get("expected_open", {}))


@pytest.mark.parametrize(
    "case", WALK_CASES, ids=[f"{i}-{c['source']}" for i, c in enumerate(WALK_CASES)]
)
def test_walk_case(case: dict[str, Any], shared_tmp: Path) -> None:
    assert _walk_case_ok(case, shared_tmp), case


# --- other-cases.json --------------------------------------------------------------------------


def test_ignorefile_readall() -> None:
    facts = OTHER["ignorefile_readall"]
    assert read_dockerignore(facts["input"]) == facts["expected_patterns"]
    assert read_dockerignore(facts["input"].encode()) == facts["expected_patterns"]
    assert read_dockerignore(b"") == []


def _write_context(base: Path, files: dict[str, str], dockerfile: str = "") -> None:
    for name, content in files.items():
        text = dockerfile if content == "<the dockerfile>" else content
        (base / name).write_text(text, encoding="utf-8")


def _sent(base: Path, dockerfile_name: str = "Dockerfile") -> dict[str, str]:
    ignore = find_ignore_file(base, dockerfile_name)
    excludes = read_dockerignore(ignore.read_bytes()) if ignore else []
    return {
        e.path: (base / e.path).read_text(encoding="utf-8")
        for e in walk_context(base, excludes=excludes)
        if not e.is_dir
    }


def _integration_ok(case: dict[str, Any], base: Path) -> bool:
    _write_context(base, case["context_files"], case.get("dockerfile", ""))
    source = case["source"]
    if source.endswith("testDockerignore"):
        sent = _sent(base)
        absent_ok = not set(case["expected_absent"]) & set(sent)
        return absent_ok and sent == case["expected_in_image"]
    if source == "testDockerignoreInvalid":
        try:
            _sent(base)
        except DockerfileError:
            return True
        return False
    if source == "testDockerignoreOverride":
        first, second = _sent(base, "Dockerfile"), _sent(base, "Dockerfile2")
        return ("foo" in first and "bar" not in first) and ("bar" in second and "foo" not in second)
    raise AssertionError(f"unknown integration case {source}")


@pytest.mark.parametrize("case", INTEGRATION, ids=[c["source"].split()[-1] for c in INTEGRATION])
def test_buildkit_integration(case: dict[str, Any], tmp_path: Path) -> None:
    assert _integration_ok(case, tmp_path), case


def test_pass_counts(capsys: pytest.CaptureFixture[str]) -> None:
    tsv = sum(_tsv_result(r) == r["expected"] for r in TSV_ROWS)
    walks = 0
    for case in WALK_CASES:
        with _traversable_dir() as base:
            walks += _walk_case_ok(case, base)
    other = 1
    for case in INTEGRATION:
        with tempfile.TemporaryDirectory() as tmp:
            other += _integration_ok(case, Path(tmp))
    with capsys.disabled():
        print(f"\ndockerignore cases.tsv: {tsv}/{len(TSV_ROWS)}")
        print(f"dockerignore tree-walk-cases.json: {walks}/{len(WALK_CASES)}")
        print(f"dockerignore other-cases.json: {other}/{1 + len(INTEGRATION)}")
    assert (tsv, walks, other) == (138, 32, 4)
