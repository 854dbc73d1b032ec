"""``lamina push / pull / login / logout`` end to end against the real docker-registry (plain,
htpasswd basic auth, bearer tokens), checked with skopeo; passwords never reach the output."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing import registry as testreg
from lamina.testing.cli import Result, run_cli
from lamina.testing.layers import tree_manifest

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tools, pytest.mark.needs_registry]
Cli = Callable[..., Result]
USER, PASSWORD = "alice", "s3cret-Pa55word-e2e"
WRONG = "not-the-Pa55word-e2e"
plain = testreg.registry_fixture("plain")
secured = testreg.registry_fixture(
    "secured", each_auth=True, users={USER: PASSWORD}, anonymous_pull=False
)


def _import(cli: Cli, tar: Path, name: str = "busybox:latest") -> str:
    return cli("import", str(tar), name, "--change", 'CMD ["sh"]').out.strip()


def _tree(root: Path, name: str, tmp: Path) -> list[tuple[object, ...]]:
    out = tmp / f"export-{abs(hash((root, name)))}.tar"
    run_cli(root, "export", name, "-o", str(out))
    target = tmp / (out.name + ".d")
    target.mkdir()
    # GNU tar restores symlink mtimes too (Python's tarfile does not)
    subprocess.run(["tar", "-C", str(target), "-xpf", str(out)], check=True)
    return tree_manifest(target, dir_mtimes=False)


def _no_secret(res: Result) -> None:
    for secret in (PASSWORD, WRONG):
        assert secret not in res.out and secret not in res.err


def test_push_pull_round_trip_with_skopeo(
    cli: Cli, busybox_tar: Path, plain: testreg.RegistryServer, tmp_path: Path
) -> None:
    _import(cli, busybox_tar)
    dest = f"{plain.host}/e2e/busybox:v1"
    res = cli("push", "busybox", dest)
    last = res.out.strip().splitlines()[-1]
    assert last.startswith("v1: digest: sha256:") and "Pushed" in res.err
    digest = last.split()[2]
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"],
            check=True,
            capture_output=True,
        ).stdout
    )
    assert info["Digest"] == digest and info["Os"] == "linux"
    assert "Layer already exists" in cli("push", "busybox", dest).err
    # `pull NAME` without a transport is a registry name, as for docker pull
    other = tmp_path / "other"
    assert run_cli(other, "pull", "--tls-verify=false", dest).out.strip() == dest
    [data] = json.loads(run_cli(other, "inspect", dest).out)
    assert data["Descriptor"]["digest"] == digest and data["Config"]["Cmd"] == ["sh"]
    assert _tree(other, dest, tmp_path) == _tree(cli.root, "busybox", tmp_path)  # type: ignore[attr-defined]
    assert run_cli(other, "system", "check").out.strip() == "store ok"
    # push to another transport, and copy registry -> oci layout
    layout = tmp_path / "layout"
    cli("push", "busybox", f"oci:{layout}:bb")
    copied = cli("copy", f"docker://{dest}", f"oci:{tmp_path}/layout2:bb").out.strip()
    assert copied == digest


def test_run_pulls_a_missing_image(
    cli: Cli, busybox_tar: Path, plain: testreg.RegistryServer, tmp_path: Path
) -> None:
    """As `docker run`: a missing image is pulled from its registry first (--pull=missing);
    --pull=never refuses, --pull=always fetches again."""
    _import(cli, busybox_tar)
    dest = f"{plain.host}/e2e/runme:v1"
    cli("push", "busybox", dest)
    other = tmp_path / "fresh"
    res = run_cli(other, "run", "--rm", "--pull=never", dest, "true", check=False)
    assert res.code == 125 and f"no such image: {dest}" in res.err
    res = run_cli(other, "run", "--rm", "--tls-verify=false", dest, "echo", "pulled")
    assert res.out == "pulled\n"
    assert f"Unable to find image '{dest}' locally" in res.err
    assert f"Status: Downloaded newer image for {dest}" in res.err
    res = run_cli(other, "run", "--rm", dest, "echo", "again")  # present now: no pull
    assert res.out == "again\n" and "Unable to find" not in res.err
    res = run_cli(other, "run", "--rm", "--pull=always", f"local:{dest}", "echo", "local")
    assert res.out == "local\n" and "Downloaded" not in res.err  # local: is never pulled
    res = run_cli(other, "create", "--pull=always", "--tls-verify=false", dest, "true")
    assert "Downloaded newer image" in res.err and "Unable to find" not in res.err
    run_cli(other, "rm", res.out.strip())
    assert run_cli(other, "system", "check").out.strip() == "store ok"


def test_missing_tag_and_local_prefix_are_one_line(cli: Cli, plain: testreg.RegistryServer) -> None:
    res = cli("pull", f"{plain.host}/e2e/absent:nope", check=False)
    assert res.code == 1 and "Traceback" not in res.err
    assert res.err.splitlines()[0].startswith("lamina: error: fetching manifest")
    assert "e2e/absent:nope" in res.err and "404" in res.err
    res = cli("pull", "local:busybox", check=False)
    assert res.code == 2 and "local store" in res.err
    assert cli("system", "check").out.strip() == "store ok"


def test_login_push_pull_logout(
    cli: Cli, busybox_tar: Path, secured: testreg.RegistryServer, tmp_path: Path
) -> None:
    _import(cli, busybox_tar)
    host = secured.host
    dest = f"{host}/secure/busybox:v1"
    config_dir = tmp_path / "docker-config"
    env = {"DOCKER_CONFIG": str(config_dir), "REGISTRY_AUTH_FILE": ""}
    denied = cli("push", "busybox", dest, env=env, check=False)
    assert denied.code != 0 and "Traceback" not in denied.err
    first = denied.err.splitlines()[0]
    assert first.startswith("lamina: error: pushing to docker://") and host in first
    assert f"lamina login {host}" in denied.err  # in the line, or in the hint below it
    login = cli(
        "login", "-u", USER, "--password-stdin", host, env=env, stdin=f"{PASSWORD}\n".encode()
    )
    assert login.out.strip() == "Login Succeeded"
    _no_secret(login)
    config = config_dir / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert host in json.loads(config.read_text())["auths"]
    pushed = cli("push", "busybox", dest, env=env)
    _no_secret(pushed)
    other = tmp_path / "other"
    assert run_cli(other, "pull", dest, env=env).out.strip() == dest
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--authfile", str(config), f"docker://{dest}"],
        check=True,
        capture_output=True,
    ).stdout
    assert json.loads(out)["Digest"] == pushed.out.split()[2]
    assert cli("logout", host, env=env).out.strip() == f"Removed login credentials for {host}"
    assert cli("logout", host, env=env).out.strip() == f"Not logged in to {host}"
    again = run_cli(tmp_path / "third", "pull", dest, env=env, check=False)
    assert again.code != 0 and f"lamina login {host}" in again.err


def test_bad_credentials_name_the_registry_and_never_show_the_password(
    cli: Cli, busybox_tar: Path, secured: testreg.RegistryServer, tmp_path: Path
) -> None:
    host = secured.host
    authfile = tmp_path / "auth.json"
    res = cli("login", "-u", USER, "-p", WRONG, "--authfile", str(authfile), host, check=False)
    assert res.code != 0 and "Traceback" not in res.err
    lines = [line for line in res.err.splitlines() if not line.startswith("WARNING!")]
    assert lines[0].startswith("lamina: error:") and host in lines[0] and "401" in lines[0]
    assert "hint: check the username and password" in res.err
    _no_secret(res)
    assert not authfile.exists()
    _import(cli, busybox_tar)
    creds = cli("push", "--creds", f"{USER}:{WRONG}", "busybox", f"{host}/x/y:z", check=False)
    assert creds.code != 0 and len(creds.err.splitlines()) <= 2
    assert host in creds.err and "lamina login" in creds.err
    _no_secret(creds)
    ok = cli("push", "-q", "--creds", f"{USER}:{PASSWORD}", "busybox", f"{host}/x/y:z")
    assert ok.out.strip().startswith("sha256:")
    _no_secret(ok)
