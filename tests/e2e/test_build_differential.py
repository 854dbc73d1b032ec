"""Differential tests: lamina and buildah build the same corpus Dockerfiles, same results.

Every buildable corpus case is built by ``lamina build`` and by ``buildah bud --isolation
chroot --storage-driver vfs`` (a private buildah store; the busybox base goes to buildah as
lamina's ``oci:`` output). The config fields (:data:`~lamina.testing.corpus.CONFIG_FIELDS`)
and the flattened trees (paths, types, modes, owners, sizes, content, link targets, hard-link
groups; not times) must be equal, except for the differences documented below — each is a
place where buildah 1.28 (Debian 12) departs from Docker/BuildKit, which lamina follows.
Differences that are lamina bugs are never listed here: they fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.testing import buildah as buildah_mod
from lamina.testing.buildah import Buildah
from lamina.testing.cli import run_cli
from lamina.testing.corpus import (
    Case,
    build_flags,
    build_with_lamina,
    case_server,
    export_tree,
    import_busybox,
    load_cases,
    manifest_by_path,
    normalize_config,
    prepare_context,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_runtime]

CORPUS = Path(__file__).resolve().parents[1] / "build_corpus"

#: cases buildah 1.28 cannot build at all (checked: it must still refuse them)
BUILDAH_UNSUPPORTED: dict[str, str] = {
    "add_url_checksum": "ADD only supports --chmod and --chown (no --checksum)",
    "copy_chmod_symbolic": "--chmod accepts octal modes only",
    "copy_exclude": "COPY has no --exclude",
    "copy_parents": "COPY has no --parents",
    "copy_link": "COPY has no --link",
    "copy_heredoc": "no heredoc support (reads '<<EOF' as a file name)",
    "run_heredoc": "no heredoc support (runs the body lines as instructions)",
    "run_network_none": "RUN only supports the --mount flag",
    "run_network_cli_none": "--isolation chroot refuses --network none",
}

#: (case, config field) -> why buildah's value differs from Docker's (and lamina's)
CONFIG_DIFFERENCES: dict[tuple[str, str], str] = {
    ("env", "Env"): "buildah moves a redefined variable (PATH) to the end of Env; BuildKit "
    "replaces it in place",
    ("env_inherit_stage", "Env"): "same: STAGE is redefined, buildah appends it after SHARED",
    ("expose_volume", "ExposedPorts"): "buildah keeps the range '8000-8001/tcp' as one key; "
    "Docker expands a range into one port per key",
    ("shell", "Cmd"): "buildah ignores SHELL for a shell-form CMD; Docker wraps it with SHELL",
}

#: paths buildah leaves behind after any RUN (mount targets it creates in the rootfs)
BUILDAH_RUN_LEFTOVERS: dict[str, str] = {
    "etc/hosts": "empty bind-mount target left by chroot isolation",
    "etc/resolv.conf": "empty bind-mount target left by chroot isolation",
    "run": "created for /run/.containerenv and kept",
}

_STUB = (
    "buildah keeps the empty parent directories it creates for a RUN --mount target; "
    "BuildKit removes every mount stub it created, parents included, and so does lamina"
)
#: (case, path) -> why the trees differ at that path (and below it)
TREE_DIFFERENCES: dict[tuple[str, str], str] = {
    ("expose_volume", "cache"): "buildah creates the directory of the last VOLUME; BuildKit's "
    "VOLUME only changes the config",
    ("run_mount_bind", "mnt"): _STUB,
    ("run_mount_cache", "var/cache"): _STUB,
    ("run_mount_secret", "run/secrets"): _STUB,
}

CASES = [c for c in load_cases(CORPUS) if not c.is_error]
COMPARED = [c for c in CASES if c.name not in BUILDAH_UNSUPPORTED]
UNSUPPORTED = [c for c in CASES if c.name in BUILDAH_UNSUPPORTED]


@pytest.fixture(scope="session")
def lamina_root(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Path:
    """A lamina store holding ``busybox`` (one per test session)."""
    root = tmp_path_factory.mktemp("diff-lamina") / "root"
    import_busybox(root, busybox_tar)
    return root


@pytest.fixture(scope="session")
def buildah(lamina_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    """A private vfs buildah store holding lamina's busybox as ``busybox``."""
    assert buildah_mod.available(), "buildah is not installed (CI installs it)"
    work = tmp_path_factory.mktemp("diff-buildah")
    run_cli(lamina_root, "copy", "busybox", f"oci:{work / 'layout'}:busybox")
    b = Buildah(work / "store")
    b.load_oci(work / "layout", "busybox", "busybox")
    try:
        yield b
    finally:
        b.close()


def buildah_build(b: Buildah, case: Case, work: Path, *, check: bool = True) -> int:
    """Build ``case`` with buildah as ``corpus-<name>``; returns buildah's exit code."""
    ctx = prepare_context(case, work)
    for pre in case.spec.get("pre_builds", []):
        b.bud(ctx, ["-f", str(ctx / pre["dockerfile"])], tag=pre["tag"])
    with case_server(case) as url:
        proc = b.bud(ctx, build_flags(case, ctx, url), tag=f"corpus-{case.name}", check=check)
    return proc.code


def _has_run(case: Case) -> bool:
    return any(
        line.lstrip().upper().startswith(("RUN", "ONBUILD RUN"))
        for p in case.path.glob("Dockerfile*")
        for line in p.read_text().splitlines()
    )


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def tree_differences(
    case: Case, ours: dict[str, tuple[object, ...]], theirs: dict[str, tuple[object, ...]]
) -> list[str]:
    """Path-by-path differences (kind, mode, owner, size, content/target, hard-link group)."""
    if _has_run(case):
        for path in BUILDAH_RUN_LEFTOVERS:
            if path not in ours:
                theirs.pop(path, None)
    out = []
    for path in sorted(set(ours) | set(theirs)):
        if any((case.name, p) in TREE_DIFFERENCES for p in _prefixes(path)):
            continue
        a, b = ours.get(path), theirs.get(path)
        if a is None or b is None:
            out.append(f"{path}: only in {'buildah' if a is None else 'lamina'}")
            continue
        # (kind, mode, uid, gid, size, content, group): no rdev/xattrs/mtime.
        fa, fb = (
            (a[1], a[2], a[3], a[4], a[5], a[6], a[9]),
            (b[1], b[2], b[3], b[4], b[5], b[6], b[9]),
        )
        if fa != fb:
            out.append(f"{path}: lamina {fa} != buildah {fb}")
    return out


@pytest.mark.parametrize("case", COMPARED, ids=[c.name for c in COMPARED])
def test_same_as_buildah(lamina_root: Path, buildah: Buildah, case: Case, tmp_path: Path) -> None:
    res, _ = build_with_lamina(lamina_root, case, tmp_path / "lamina")
    assert res.code == 0, f"lamina build failed ({res.code}):\n{res.err}"
    tag = f"corpus-{case.name}"
    [data] = json.loads(run_cli(lamina_root, "inspect", tag).out)
    ours_tree = manifest_by_path(
        export_tree(lamina_root, tag, tmp_path / "tree"), mtimes=False, xattrs=False
    )
    buildah_build(buildah, case, tmp_path / "buildah")
    ours, theirs = normalize_config(data["Config"]), normalize_config(buildah.config(tag))
    problems = [
        f"config {k}: lamina {ours[k]!r} != buildah {theirs[k]!r}"
        for k in ours
        if ours[k] != theirs[k] and (case.name, k) not in CONFIG_DIFFERENCES
    ]
    with buildah.rootfs(tag) as rootfs:
        problems += tree_differences(
            case, ours_tree, manifest_by_path(rootfs, mtimes=False, xattrs=False)
        )
    assert problems == []


@pytest.mark.parametrize("case", UNSUPPORTED, ids=[c.name for c in UNSUPPORTED])
def test_buildah_still_unsupported(buildah: Buildah, case: Case, tmp_path: Path) -> None:
    """Keeps :data:`BUILDAH_UNSUPPORTED` honest: once buildah builds a case, compare it."""
    assert buildah_build(buildah, case, tmp_path, check=False) != 0, (
        f"buildah now builds {case.name}: move it to the compared cases"
    )


def test_documented_differences_name_real_cases() -> None:
    names = {c.name for c in CASES}
    assert set(BUILDAH_UNSUPPORTED) <= names
    assert {n for n, _ in CONFIG_DIFFERENCES} <= names
    assert {n for n, _ in TREE_DIFFERENCES} <= names
