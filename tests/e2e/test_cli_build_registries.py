"""A build loads the registry client only when it talks to a registry (issue 4: latency), and
then with the same credentials as before: a ``FROM`` pull from an authenticated registry uses
the environment's credential file (``REGISTRY_AUTH_FILE``), with no registry flag given."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing import registry as testreg
from lamina.testing.cli import Result, run_cli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tools, pytest.mark.needs_registry]
Cli = Callable[..., Result]
USER, PASSWORD = "puller", "pu11-Fr0m-s3cret"
REGISTRY_MODULES = ("httpx", "lamina.registry", "lamina.transports.docker")
registry = testreg.registry_fixture("from-reg", users={USER: PASSWORD}, anonymous_pull=False)


def _context(tmp_path: Path, base: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY a.txt /a.txt\n")
    return ctx


def _imported(root: Path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lamina", "--root", str(root), *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_a_local_build_does_not_load_the_registry_client(
    cli: Cli, busybox_tar: Path, tmp_path: Path
) -> None:
    cli("import", str(busybox_tar), "busybox:latest")
    names = _imported(cli.root, "build", "-q", "-t", "app", str(_context(tmp_path, "busybox")))  # type: ignore[attr-defined]
    assert "lamina.build.executor" in names
    assert not names & set(REGISTRY_MODULES)


def test_a_from_pull_uses_the_environment_credentials(
    cli: Cli, busybox_tar: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    auth = testreg.write_auth_file(tmp_path / "auth.json", registry.host, USER, PASSWORD)
    base = f"{registry.host}/base/busybox:1"
    cli("import", str(busybox_tar), "busybox:latest")
    cli("push", "--authfile", str(auth), "busybox", base)

    other = tmp_path / "other-root"  # an empty store: FROM must be pulled
    ctx = _context(tmp_path, base)
    denied = run_cli(other, "build", "-q", "-t", "app", str(ctx), check=False,
                     env={"REGISTRY_AUTH_FILE": str(tmp_path / "missing.json")})  # fmt: skip
    assert denied.code != 0 and PASSWORD not in denied.out + denied.err
    names = _imported(other, "build", "-q", "-t", "app", str(ctx),
                      env={"REGISTRY_AUTH_FILE": str(auth)})  # fmt: skip
    assert {"httpx", "lamina.registry"} <= names  # loaded, because this build pulled
    out = run_cli(other, "run", "--rm", "app", "cat", "/a.txt").out
    assert out == "hello\n"
