"""Credentials: Docker config.json, podman auth.json, docker-credential-* helpers (real
scripts), default file locations from an explicit environment mapping."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from lamina.errors import AuthError
from lamina.registry import (
    AuthFile,
    ChainProvider,
    Credential,
    StaticCredentials,
    default_auth_files,
    default_provider,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_docker_config_keys_in_every_form(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:hubpw")},
                "http://reg.example:5000/v2/": {"auth": b64("me:p:w")},
                "tok.example": {"identitytoken": "idt"},
            }
        },
    )
    f = AuthFile(config)
    assert f.get("docker.io") == Credential("hub", "hubpw")
    assert f.get("index.docker.io") == Credential("hub", "hubpw")
    assert f.get("reg.example:5000") == Credential("me", "p:w")
    assert f.get("tok.example") == Credential(identity_token="idt")
    assert f.get("other.example") is None


def test_podman_namespaced_keys_most_specific_wins(tmp_path: Path) -> None:
    auth = write(
        tmp_path / "auth.json",
        {
            "auths": {
                "quay.example": {"auth": b64("any:1")},
                "quay.example/team": {"auth": b64("team:2")},
                "quay.example/team/app": {"auth": b64("app:3")},
            }
        },
    )
    f = AuthFile(auth)
    assert f.get("quay.example", "team/app/sub") == Credential("app", "3")
    assert f.get("quay.example", "team/other") == Credential("team", "2")
    assert f.get("quay.example", "teamx/app") == Credential("any", "1")
    assert f.get("quay.example") == Credential("any", "1")


def test_bad_files_give_errors_without_content(tmp_path: Path) -> None:
    assert AuthFile(tmp_path / "missing.json").get("r") is None
    bad = write(tmp_path / "bad.json", {"auths": {"r": {"auth": "!!!secret-ish!!!"}}})
    with pytest.raises(AuthError) as info:
        AuthFile(bad).get("r")
    assert "secret-ish" not in str(info.value) and str(bad) in str(info.value)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(AuthError, match="JSON object"):
        AuthFile(tmp_path / "list.json").get("r")


def test_store_is_0600_keeps_other_keys_and_replaces_aliases(tmp_path: Path) -> None:
    config = write(
        tmp_path / "d" / "config.json",
        {"auths": {"https://r.example/v1/": {"auth": b64("old:old")}}, "psFormat": "x"},
    )
    config.chmod(0o644)
    f = AuthFile(config)
    f.store("r.example", Credential("new", "pw"))
    saved = json.loads(config.read_text())
    assert saved["psFormat"] == "x" and list(saved["auths"]) == ["r.example"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f.get("r.example") == Credential("new", "pw")
    f.store("docker.io", Credential("hub", "h"))
    assert "https://index.docker.io/v1/" in json.loads(config.read_text())["auths"]
    assert f.erase("r.example") and not f.erase("r.example")
    assert f.get("r.example") is None and f.get("docker.io") == Credential("hub", "h")
    assert [p.name for p in config.parent.iterdir()] == ["config.json"]  # no temp files left


HELPER = """#!/bin/sh
log="{log}"
read -r input
echo "$1 $input" >> "$log"
case "$1" in
  get)
    case "$input" in
      r.example) echo '{{"ServerURL":"r.example","Username":"hbob","Secret":"hsecret"}}' ;;
      https://index.docker.io/v1/) echo '{{"Username":"<token>","Secret":"hub-idt"}}' ;;
      *) echo "credentials not found in native keychain"; exit 1 ;;
    esac ;;
  store|erase) exit 0 ;;
esac
"""


def make_helper(tmp_path: Path, name: str) -> tuple[str, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / f"{name}.log"
    script = bindir / f"docker-credential-{name}"
    script.write_text(HELPER.format(log=log))
    script.chmod(0o755)
    return str(bindir), log


def test_credential_helpers_get_store_erase(tmp_path: Path) -> None:
    path, log = make_helper(tmp_path, "fake")
    config = write(tmp_path / "config.json", {"credsStore": "fake", "auths": {}})
    f = AuthFile(config, helper_path=path)
    assert f.get("r.example") == Credential("hbob", "hsecret")
    assert f.get("docker.io") == Credential(identity_token="hub-idt")
    assert f.get("none.example") is None
    f.store("r.example", Credential("u", "p"))
    assert f.erase("r.example")
    lines = log.read_text().splitlines()
    assert lines[:3] == ["get r.example", "get https://index.docker.io/v1/", "get none.example"]
    assert json.loads(lines[3].removeprefix("store ")) == {
        "ServerURL": "r.example",
        "Username": "u",
        "Secret": "p",
    }
    assert lines[4] == "erase r.example"
    assert "auth" not in json.dumps(json.loads(config.read_text())["auths"])


def test_cred_helpers_per_host_and_missing_helper(tmp_path: Path) -> None:
    path, _ = make_helper(tmp_path, "per")
    config = write(
        tmp_path / "config.json",
        {
            "credHelpers": {"r.example": "per", "gone.example": "absent"},
            "auths": {"gone.example": {"auth": b64("file:pw")}},
        },
    )
    f = AuthFile(config, helper_path=path)
    assert f.get("r.example") == Credential("hbob", "hsecret")
    assert f.get("gone.example") == Credential("file", "pw")  # helper missing: the file answers
    with pytest.raises(AuthError, match="docker-credential-absent not found"):
        f.store("gone.example", Credential("x", "y"))


def test_default_files_come_from_the_given_environment(tmp_path: Path) -> None:
    env = {
        "DOCKER_CONFIG": "/dc",
        "XDG_RUNTIME_DIR": "/run/user/7",
        "REGISTRY_AUTH_FILE": "/a.json",
    }
    assert default_auth_files(env, tmp_path) == [
        Path("/a.json"),
        Path("/dc/config.json"),
        Path("/run/user/7/containers/auth.json"),
        tmp_path / ".config/containers/auth.json",
    ]
    assert default_auth_files({}, tmp_path) == [
        tmp_path / ".docker/config.json",
        tmp_path / ".config/containers/auth.json",
    ]


def test_default_provider_order_and_authfile_override(tmp_path: Path) -> None:
    write(tmp_path / ".docker/config.json", {"auths": {"r.example": {"auth": b64("docker:1")}}})
    pod = {"r.example": {"auth": b64("pod:2")}, "p.example": {"auth": b64("pod:2")}}
    write(tmp_path / "run/containers/auth.json", {"auths": pod})
    provider = default_provider({"XDG_RUNTIME_DIR": str(tmp_path / "run")}, tmp_path)
    assert provider.get("r.example") == Credential("docker", "1")
    assert provider.get("p.example") == Credential("pod", "2")
    only = default_provider({}, tmp_path, auth_file=tmp_path / "run/containers/auth.json")
    assert only.get("r.example") == Credential("pod", "2")
    assert default_provider({}, tmp_path, auth_file=tmp_path / "none.json").get("r.example") is None


def test_static_and_chain_providers() -> None:
    a = StaticCredentials({"https://index.docker.io/v1/": Credential("a", "1")})
    b = StaticCredentials({"r:5000": Credential("b", "2")})
    chain = ChainProvider([a, b])
    assert chain.get("docker.io") == Credential("a", "1")
    assert chain.get("r:5000") == Credential("b", "2")
    assert chain.get("x") is None
