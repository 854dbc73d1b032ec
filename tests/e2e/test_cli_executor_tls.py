"""``lamina executor`` against an HTTPS registry whose CA nobody trusts: Kaniko's
``--skip-tls-verify`` (destinations), ``--skip-tls-verify-registry`` (named hosts, pulls of
``FROM`` images included) and ``--skip-tls-verify-pull``; without them, one line before any
build step runs. Also: ``--verbosity=debug`` logs no credential, ``--single-snapshot`` keeps
deletions of base files, a failing RUN names its line, SIGTERM cancels cleanly, and Kaniko's
``git://`` contexts are fetched from a real git server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing import gitserver
from lamina.testing import registry as testreg
from lamina.testing.capabilities import mount_points_under
from lamina.testing.cli import Result, run_cli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tools, pytest.mark.needs_registry]
Cli = Callable[..., Result]
USER, PASSWORD = "tlsuser", "Tls-s3cret-pw-e2e"
tls_registry = testreg.registry_fixture("tls-reg", tls=True, users={USER: PASSWORD})


def _env(tmp_path: Path, host: str) -> dict[str, str]:
    home = tmp_path / "home"
    testreg.write_auth_file(home / ".docker" / "config.json", host, USER, PASSWORD)
    return {"HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), "REGISTRY_AUTH_FILE": ""}


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "a.txt").write_text("over tls\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def test_skip_tls_verify_flags(
    cli: Cli,
    busybox_tar: Path,
    tls_registry: testreg.RegistryServer,
    tmp_path: Path,
) -> None:
    host = tls_registry.host
    env = _env(tmp_path, host)
    cli("import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
    base = f"{host}/base/busybox:v1"
    cli("push", "--tls-verify=false", "busybox", base, env=env)
    ctx = _context(tmp_path, "FROM busybox\nCOPY a.txt /a.txt\n")
    dest = f"{host}/team/tls:v1"
    refused = cli("executor", "-c", str(ctx), "-d", dest, env=env, check=False)
    assert refused.code == 1 and "Traceback" not in refused.err
    first = refused.err.splitlines()[0]
    assert first.startswith("lamina: error: ") and "certificate" in first and host in first
    assert "#1 " not in refused.err  # refused before building
    cli("executor", "-c", str(ctx), "-d", dest, "--skip-tls-verify", "-v", "debug", env=env)
    debug = cli("executor", "-c", str(ctx), "-d", dest, "--skip-tls-verify", "--verbosity=trace",
                env=env)  # fmt: skip
    secret = testreg.auth_token(USER, PASSWORD)
    assert PASSWORD not in debug.err and secret not in debug.err
    # the CA installed where podman looks ($HOME/.config/containers/certs.d/HOST:PORT): no flag
    trusting = {**env, "HOME": str(tmp_path / "trusting")}
    tls_registry.trust(tmp_path / "trusting" / ".config/containers/certs.d")
    cli("executor", "-c", str(ctx), "-d", f"{host}/team/tls:ca", "-v", "error", env=trusting)
    # FROM on the TLS registry, nothing pushed: the pull needs --skip-tls-verify-pull or the
    # per-registry flag (a destination's flags cover its host, pulls included)
    from_tls = _context(tmp_path / "x", f"FROM {base}\nCOPY a.txt /a.txt\n")
    args = ["executor", "-c", str(from_tls), "--no-push"]
    res = run_cli(tmp_path / "other", *args, env=env, check=False)
    assert res.code == 1 and "certificate" in res.err and f"image {base}" in res.err
    run_cli(tmp_path / "other", *args, "--skip-tls-verify-pull", env=env)
    third = tmp_path / "third"
    run_cli(third, "executor", "-c", str(from_tls), "-d", f"{host}/team/tls:v3",
            f"--skip-tls-verify-registry={host}", env=env)  # fmt: skip
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
         f"docker://{host}/team/tls:v3"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    assert len(json.loads(out)["Layers"]) == 2


def test_single_snapshot_keeps_deletions(cli: Cli, busybox_tar: Path, tmp_path: Path) -> None:
    cli("import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
    ctx = _context(
        tmp_path,
        "FROM busybox\nRUN rm /etc/passwd && echo tmp > /tmp/gone\nCOPY a.txt /a.txt\n"
        "RUN rm /tmp/gone && mkdir -p /data && echo kept > /data/x\n",
    )
    layout = tmp_path / "layout"
    cli("executor", "-c", str(ctx), "-d", "squashed:v1", "--no-push", "--single-snapshot",
        f"--oci-layout-path={layout}", "-v", "error")  # fmt: skip
    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{layout}:v1"], check=True, capture_output=True
        ).stdout
    )
    assert len(manifest["layers"]) == 2
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"oci:{layout}:v1"], check=True, capture_output=True
        ).stdout
    )
    history = config["history"]
    assert len(history) == 4  # import + the 3 steps after FROM: all kept
    assert sum(1 for h in history if not h.get("empty_layer")) == 2  # one per layer
    run = cli("run", "--rm", "squashed:v1", "sh", "-c",
              "ls /etc/passwd /tmp/gone 2>&1; cat /a.txt /data/x", check=False)  # fmt: skip
    assert "over tls\nkept\n" in run.out and "/etc/passwd" in run.out  # ls: no such file
    assert run.out.count("No such file") == 2


def test_failed_run_and_sigterm(cli: Cli, busybox_tar: Path, tmp_path: Path) -> None:
    """A failing RUN is one ``Dockerfile:LINE:`` error; SIGTERM (a cancelled CI job) exits 130
    with nothing left mounted."""
    cli("import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
    ctx = _context(tmp_path, "FROM busybox\nCOPY a.txt /a.txt\nRUN exit 3\n")
    res = cli("executor", "-c", str(ctx), "--no-push", check=False)
    assert res.code == 1 and "Traceback" not in res.err
    assert "lamina: error: Dockerfile:3: " in res.err
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN sleep 60\n")
    log = tmp_path / "executor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lamina", "--root", str(cli.root), "executor",  # type: ignore[attr-defined]
             "-c", str(ctx), "--no-push"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while "RUN sleep 60" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    assert mount_points_under(tmp_path) == []


@pytest.mark.skipif(not gitserver.available(), reason="git http-backend is not installed")
def test_git_context(cli: Cli, busybox_tar: Path, tmp_path: Path) -> None:
    """``--context git://HOST/REPO.git#REF[#COMMIT]`` (``GIT_PULL_METHOD=http``), with
    ``--context-sub-path`` and ``--git branch=``; a pinned commit that differs is refused."""
    cli("import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
    repo = gitserver.Repo(tmp_path / "work")
    repo.write("app/Dockerfile", "FROM busybox\nCOPY a.txt /a.txt\n")
    repo.write("app/a.txt", "from main\n")
    first = repo.commit("main")
    gitserver.git("checkout", "-q", "-b", "dev", cwd=repo.path)
    repo.write("app/a.txt", "from dev\n")
    repo.commit("dev")
    repo.publish(tmp_path / "srv" / "app.git")
    env = {"GIT_PULL_METHOD": "http"}
    with gitserver.serve_git(tmp_path / "srv") as url:
        where = "git://" + url.removeprefix("http://") + "/app.git"
        cases = [
            ([f"--context={where}#refs/heads/main"], "from main\n"),
            ([f"--context={where}", "--git", "branch=dev,single-branch=true"], "from dev\n"),
            ([f"--context={where}#refs/heads/main#{first}"], "from main\n"),
        ]
        for n, (args, text) in enumerate(cases):
            cli("executor", *args, "--context-sub-path=app", "--no-push", "-d", f"git:{n}",
                "-v", "error", env=env)  # fmt: skip
            assert cli("run", "--rm", f"git:{n}", "cat", "/a.txt").out == text
        wrong = cli("executor", f"--context={where}#refs/heads/dev#{first}", "--no-push",
                    "--context-sub-path=app", env=env, check=False)  # fmt: skip
        assert wrong.code == 1 and "does not match checksum" in wrong.err
    assert not list((cli.root / "tmp").glob("git-context-*"))  # type: ignore[attr-defined]
