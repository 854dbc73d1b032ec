"""Fixtures for end-to-end tests: the CLI as a subprocess over a fresh store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing.cli import Result, run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's busybox rootfs tarball (from Debian's busybox-static)."""
    out = tmp_path_factory.mktemp("busybox") / "busybox-rootfs.tar"
    subprocess.run(
        [str(REPO / "scripts" / "make-busybox-rootfs.sh"), str(out)],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "0"},
    )
    return out


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """``cli(*args, check=True)`` against a fresh store under tmp_path."""
    root = tmp_path / "root"

    def call(*args: str, **kw: object) -> Result:
        return run_cli(root, *args, **kw)  # type: ignore[arg-type]

    call.root = root  # type: ignore[attr-defined]
    return call
