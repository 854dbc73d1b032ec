"""``lamina build --push`` and ``--output type=registry`` against the real docker-registry with
htpasswd auth (credentials from ``--authfile``), checked with skopeo."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing import registry as testreg
from lamina.testing.cli import Result

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tools, pytest.mark.needs_registry]
Cli = Callable[..., Result]
USER, PASSWORD = "builder", "bu1ld-Push-s3cret-e2e"
registry = testreg.registry_fixture("push-reg", users={USER: PASSWORD}, anonymous_pull=False)


@pytest.fixture
def ctx(cli: Cli, busybox_tar: Path, tmp_path: Path) -> Path:
    cli("import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("pushed\n")
    (ctx / "Dockerfile").write_text('FROM busybox\nCOPY a.txt /a.txt\nCMD ["cat", "/a.txt"]\n')
    return ctx


def _authfile(tmp_path: Path, host: str, password: str = PASSWORD) -> Path:
    return testreg.write_auth_file(tmp_path / "auth.json", host, USER, password)


def _digest(ref: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
         f"docker://{ref}"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return str(json.loads(out)["Digest"])


def test_build_push_pushes_every_tag(
    cli: Cli, ctx: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    a, b = f"{registry.host}/app/one:v1", f"{registry.host}/app/two:v2"
    auth = _authfile(tmp_path, registry.host)
    res = cli("build", "--progress", "plain", "-t", a, "-t", b, "--push", "--authfile", str(auth),
              str(ctx))  # fmt: skip
    assert PASSWORD not in res.out + res.err
    pushed = dict(line.split()[1].split("@") for line in res.err.splitlines() if line.startswith(
        "pushed "))  # fmt: skip
    assert list(pushed) == [a, b]
    assert _digest(a) == pushed[a] == pushed[b] == _digest(b)


def test_output_type_registry_with_a_name_list(
    cli: Cli, ctx: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    auth = _authfile(tmp_path, registry.host)
    x, y, z = (f"{registry.host}/out/{n}:1" for n in "xyz")
    cli("build", "-q", "-t", "local-only", "--authfile", str(auth),
        "--output", f'type=registry,"name={x},{y}"',
        "--output", f"type=image,name={z},push=true", str(ctx))  # fmt: skip
    assert _digest(x) == _digest(y) == _digest(z)
    # type=registry without name= pushes the -t names
    w = f"{registry.host}/out/w:1"
    cli("build", "-q", "-t", w, "--authfile", str(auth), "--output", "type=registry", str(ctx))
    assert _digest(w) == _digest(x)


def test_push_errors_are_one_line(
    cli: Cli, ctx: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    res = cli("build", "--push", str(ctx), check=False)
    assert res.code == 2 and res.err.startswith("lamina: error: nothing to push")
    res = cli("build", "--output", "type=registry,push=maybe", str(ctx), check=False)
    assert res.code == 2 and "push=" in res.err.splitlines()[0]
    wrong = _authfile(tmp_path, registry.host, password="not-" + PASSWORD)
    res = cli("build", "-q", "-t", f"{registry.host}/app/denied:v1", "--push", "--authfile",
              str(wrong), str(ctx), check=False)  # fmt: skip
    assert res.code == 1 and "Traceback" not in res.err
    assert res.err.startswith("lamina: error: pushing to docker://") and "401" in res.err
    assert PASSWORD not in res.err
    # the image was built and stored before the push failed; the store is consistent
    assert cli("system", "check").out.strip() == "store ok"
