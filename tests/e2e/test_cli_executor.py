"""``lamina executor`` (Kaniko's flags) end to end: the seed example built and pushed to the real
docker-registry with htpasswd auth, credentials from ``$DOCKER_CONFIG/config.json`` as Kaniko
reads them; every output checked with skopeo/umoci; bad flags are one-line errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing import registry as testreg
from lamina.testing.cli import Result, run_cli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tools, pytest.mark.needs_registry]
Cli = Callable[..., Result]
USER, PASSWORD = "kaniko", "Kan1ko-s3cret-pw-e2e"
SEED = 'FROM busybox\nCOPY a.txt /a.txt\nRUN echo built > /b.txt\nCMD ["cat", "/a.txt"]\n'
registry = testreg.registry_fixture("kaniko-reg", users={USER: PASSWORD}, anonymous_pull=False)
token_registry = testreg.registry_fixture(
    "token-reg", users={USER: PASSWORD}, token_auth=True, anonymous_pull=False
)


@pytest.fixture
def seed(cli: Cli, busybox_tar: Path, tmp_path: Path) -> Path:
    """The seed example's context; busybox imported into the store."""
    cli("import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("This is a simple file.\n")
    (ctx / "Dockerfile").write_text(SEED)
    return ctx


def _docker_config(tmp_path: Path, host: str, password: str = PASSWORD) -> dict[str, str]:
    """A Kaniko-style ``DOCKER_CONFIG`` directory with ``config.json``; the env to use it."""
    directory = tmp_path / "kaniko" / ".docker"
    testreg.write_auth_file(directory / "config.json", host, USER, password)
    return {"DOCKER_CONFIG": str(directory), "REGISTRY_AUTH_FILE": "", "HOME": str(tmp_path)}


def _skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], check=check, capture_output=True)


def _inspect(ref: str, *extra: str) -> dict[str, object]:
    out = _skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", *extra, ref)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _no_secret(res: Result) -> None:
    assert PASSWORD not in res.out and PASSWORD not in res.err
    assert testreg.auth_token(USER, PASSWORD) not in res.err


def test_executor_builds_and_pushes_the_seed_example(
    cli: Cli, seed: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    env = _docker_config(tmp_path, registry.host)
    dest, latest = f"{registry.host}/team/seed:v1", f"{registry.host}/team/seed:latest"
    out = tmp_path / "out"
    res = cli(
        "executor", f"--context=dir://{seed}", "--dockerfile=Dockerfile",
        f"--destination={dest}", "-d", latest,
        f"--digest-file={out}/digest", f"--image-name-with-digest-file={out}/names",
        f"--image-name-tag-with-digest-file={out}/tags", "--label", "stage=ci",
        "--build-arg", "UNUSED=1", "--snapshot-mode=redo", "--use-new-run", "--cache=false",
        env=env,
    )  # fmt: skip
    _no_secret(res)
    assert res.out == ""  # as Kaniko: logs on stderr only
    digest = (out / "digest").read_text()
    assert digest.startswith("sha256:") and len(digest) == 71
    assert f"Pushed {dest}@{digest}" in res.err and "#3 [3/3] RUN echo built" in res.err
    repo = f"{registry.host}/team/seed"
    assert (out / "names").read_text() == f"{repo}@{digest}\n{repo}@{digest}\n"
    assert (out / "tags").read_text() == f"{repo}:v1@{digest}\n{repo}:latest@{digest}\n"
    for ref in (dest, latest):
        info = _inspect(f"docker://{ref}")
        assert info["Digest"] == digest and info["Labels"] == {"stage": "ci"}
    config = _inspect(f"docker://{dest}", "--config")
    assert config["config"]["Cmd"] == ["cat", "/a.txt"]  # type: ignore[index]
    # the pushed image is the seed image: pull it into another store and run it
    other = tmp_path / "other"
    run_cli(other, "pull", dest, env=env)
    assert run_cli(other, "run", "--rm", dest).out == "This is a simple file.\n"
    # the image stays in the store under its destinations (no --cleanup)
    assert cli("inspect", "-f", "{{.Id}}", dest).out.strip().startswith("sha256:")


def test_executor_no_push_writes_tarball_and_oci_layout(
    cli: Cli, seed: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    env = _docker_config(tmp_path, registry.host)
    dest = f"{registry.host}/team/nopush:v1"
    tar, layout, digest_file = tmp_path / "o/img.tar", tmp_path / "o/layout", tmp_path / "d"
    cli(
        "executor", "-c", str(seed), "-d", dest, "--no-push", f"--tar-path={tar}",
        f"--oci-layout-path={layout}", f"--digest-file={digest_file}", "--verbosity=error",
        env=env,
    )  # fmt: skip
    digest = digest_file.read_text()
    # nothing was pushed
    missing = _skopeo(
        "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{dest}",
        check=False,
    )  # fmt: skip
    assert missing.returncode != 0
    # the tarball is docker-save format named after the destination, and skopeo reads it
    with tarfile.open(tar) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [dest]
    assert _skopeo("inspect", f"docker-archive:{tar}").returncode == 0
    # the OCI layout holds exactly the manifest whose digest was written, and umoci unpacks it
    raw = _skopeo("inspect", "--raw", f"oci:{layout}:v1").stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:v1", str(bundle)], check=True)
    assert (bundle / "rootfs" / "a.txt").read_text() == "This is a simple file.\n"
    assert (bundle / "rootfs" / "b.txt").read_text() == "built\n"


def test_executor_tar_context_single_snapshot_reproducible(
    cli: Cli, seed: Path, busybox_tar: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "context.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(seed), "."], check=True)
    digests = []
    for n in range(2):
        root = tmp_path / f"root{n}"
        run_cli(root, "import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
        layout = tmp_path / f"layout{n}"
        run_cli(
            root, "executor", f"--context=tar://{archive}", "--no-push", "--single-snapshot",
            "--reproducible", f"--oci-layout-path={layout}", f"--digest-file={layout}.digest",
            "--cleanup", "--custom-platform=linux/amd64",
            env={"SOURCE_DATE_EPOCH": ""},
        )  # fmt: skip
        digests.append((tmp_path / f"layout{n}.digest").read_text())
        manifest = json.loads(_skopeo("inspect", "--raw", f"oci:{layout}:latest").stdout)
        assert len(manifest["layers"]) == 2  # busybox + one squashed layer
        # --cleanup: the built image is gone from the store, the base stays
        images = run_cli(root, "images", "--format", "{{.Repository}}").out.split()
        assert images == ["busybox"]
        assert run_cli(root, "system", "check").out.strip() == "store ok"
    assert digests[0] == digests[1]
    config = _skopeo("inspect", "--config", f"oci:{tmp_path}/layout0:latest").stdout
    assert json.loads(config)["created"] == "1970-01-01T00:00:00Z"


def _one_line_error(res: Result, code: int, text: str) -> None:
    assert res.code == code, res.err
    assert "Traceback" not in res.err
    first = res.err.splitlines()[0]
    assert first.startswith("lamina: error: ") and text in first, res.err


def test_executor_bad_flags_are_one_line_errors(
    cli: Cli, seed: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    ctx = f"--context={seed}"
    dest = f"--destination={registry.host}/team/bad:v1"
    cases: list[tuple[list[str], int, str]] = [
        ([ctx], 2, "you must provide --destination, or use --no-push"),
        ([ctx, "--no-push", "--tar-path=x.tar"], 2, "--destination if setting --tar-path"),
        ([ctx, "--no-push", "--cache=true"], 2, "--cache=true needs --cache-repo"),
        (["--context=gs://bucket/ctx.tar.gz", dest], 2, "remote build contexts"),
        ([f"--context={tmp_path}/absent", dest], 2, "is not a directory"),
        ([ctx, dest, "--cache-ttl=two-weeks"], 2, "invalid --cache-ttl"),
        ([ctx, dest, "--dockerfile=Nope"], 1, "failed to read dockerfile"),
    ]
    env = _docker_config(tmp_path, registry.host)
    for args, code, text in cases:
        _one_line_error(cli("executor", *args, env=env, check=False), code, text)
    unknown = cli("executor", ctx, dest, "--no-such-flag", check=False)
    assert unknown.code == 2 and "No such option" in unknown.err
    assert cli("images", "--format", "{{.Repository}}").out.split() == ["busybox"]


def test_executor_wrong_password_is_one_line_without_the_secret(
    cli: Cli, seed: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    env = _docker_config(tmp_path, registry.host, password=PASSWORD + "-wrong")
    res = cli("executor", "-c", str(seed), "-d", f"{registry.host}/team/denied:v1", env=env,
              check=False)  # fmt: skip
    _one_line_error(res, 1, registry.host)
    assert PASSWORD not in res.err and "401" in res.err


def test_executor_cache_repo_shared_by_two_stores(
    cli: Cli, seed: Path, busybox_tar: Path, registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    env = _docker_config(tmp_path, registry.host)
    (seed / "Dockerfile").write_text(
        "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /proc/sys/kernel/random/uuid > /id\n"
    )
    dest = f"{registry.host}/team/cached:v1"
    args = ["executor", "-c", str(seed), "-d", dest, "--cache=true", "--cache-ttl=24h",
            "--reproducible"]  # fmt: skip
    first = cli(*args, f"--digest-file={tmp_path}/d1", env=env)
    assert "CACHED" not in first.err
    # the cache went to Kaniko's default repository: <destination>/cache
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                  f"docker://{registry.host}/team/cached/cache:buildcache").stdout  # fmt: skip
    assert json.loads(raw)["layers"]
    other = tmp_path / "other"
    run_cli(other, "import", str(busybox_tar), "busybox:latest", "--change", 'CMD ["sh"]')
    second = run_cli(other, *args, f"--digest-file={tmp_path}/d2", env=env)
    assert second.err.count("CACHED") == 2  # COPY and RUN: the RUN did not run again
    assert (tmp_path / "d1").read_text() == (tmp_path / "d2").read_text()


def test_executor_with_a_token_auth_registry(
    cli: Cli, seed: Path, token_registry: testreg.RegistryServer, tmp_path: Path
) -> None:
    """Bearer-token auth (as GitLab's registry): config.json credentials go to the token
    service; the push check, the cache and the push get push+pull tokens."""
    env = _docker_config(tmp_path, token_registry.host)
    dest = f"{token_registry.host}/group/project:v1"
    res = cli("executor", "-c", str(seed), "-d", dest, f"--digest-file={tmp_path}/d",
              "--cache=true", env=env)  # fmt: skip
    _no_secret(res)
    digest = (tmp_path / "d").read_text()
    info = _inspect(f"docker://{dest}")
    assert info["Digest"] == digest
    wrong = _docker_config(tmp_path / "w", token_registry.host, password="wrong-" + PASSWORD)
    denied = cli("executor", "-c", str(seed), "-d", dest, env=wrong, check=False)
    assert denied.code == 1 and "Traceback" not in denied.err
    assert denied.err.startswith("lamina: error: ") and token_registry.host in denied.err
    assert PASSWORD not in denied.err
