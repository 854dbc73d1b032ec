"""HTTPS end to end: a docker-registry serving TLS with a certificate from a CA the test makes.

The registry is reached as ``NAME:PORT`` where NAME is this machine's host name (resolving to
127.0.0.1, :func:`lamina.testing.tls.loopback_name`), so lamina takes its remote-registry path:
HTTPS, certificates verified. ``lamina push``/``pull`` (the CLI, as a subprocess whose HOME is
the test's) must fail with one line naming the untrusted certificate; succeed once the CA is in
``$HOME/.config/containers/certs.d/NAME:PORT/ca.crt``, and with ``--tls-verify=false`` without
it. The registry build cache works over the same HTTPS registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.build.progress import Event
from lamina.build.regcache import parse_cache_spec
from lamina.image.memory import MemoryImage
from lamina.ops.archive import import_rootfs
from lamina.ops.build import build
from lamina.ops.registry import open_registries
from lamina.store import Store
from lamina.testing import registry as testreg
from lamina.testing.cli import run_cli
from lamina.testing.layers import Entry, file

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_registry]
EPOCH = 1700000000
tls_registry = testreg.registry_fixture("reg", tls=True)


@pytest.fixture
def root(tmp_path: Path, make_image: Callable[..., MemoryImage]) -> Path:
    """A store holding ``app:v1`` (two small layers)."""
    root = tmp_path / "root"
    layers: list[list[Entry]] = [
        [file("etc/hello", b"hello over tls\n")],
        [file("bin/tool", b"#!x\n", mode=0o755)],
    ]
    image = make_image(layers)
    Store(root).put_image(image, ["app:v1"])
    return root


def home(tmp_path: Path, name: str) -> dict[str, str]:
    """An environment whose HOME (and so certs.d and credential files) is a fresh dir."""
    path = tmp_path / name
    path.mkdir()
    return {"HOME": str(path), "DOCKER_CONFIG": str(path / ".docker")}


def test_untrusted_certificate_is_one_clear_line(
    tmp_path: Path, root: Path, tls_registry: testreg.RegistryServer
) -> None:
    env = home(tmp_path, "home")
    dest = f"{tls_registry.host}/tls/app:v1"
    for args in (("push", "app:v1", dest), ("pull", dest)):
        res = run_cli(root, *args, env=env, check=False)
        assert res.code != 0 and "Traceback" not in res.err
        first = res.err.strip().splitlines()[0]
        assert f"tls certificate of {tls_registry.host} is not trusted" in first, res.err
        assert len(res.err.strip().splitlines()) <= 2  # the message and its hint


def test_ca_in_certs_d_makes_push_and_pull_work(
    tmp_path: Path, root: Path, tls_registry: testreg.RegistryServer
) -> None:
    env = home(tmp_path, "home")
    installed = tls_registry.trust(Path(env["HOME"]) / ".config/containers/certs.d")
    assert installed.parent.name == tls_registry.host  # HOST:PORT
    dest = f"{tls_registry.host}/tls/app:v2"
    pushed = run_cli(root, "push", "app:v1", dest, env=env).out.strip().splitlines()[-1]
    assert pushed.startswith("v2: digest: sha256:")
    other = tmp_path / "other"
    assert run_cli(other, "pull", dest, env=env).out.strip() == dest
    [data] = json.loads(run_cli(other, "inspect", dest, env=env).out)
    assert data["Descriptor"]["digest"] == pushed.split()[2]


def test_tls_verify_false_needs_no_ca(
    tmp_path: Path, root: Path, tls_registry: testreg.RegistryServer
) -> None:
    env = home(tmp_path, "home")
    dest = f"{tls_registry.host}/tls/app:v3"
    run_cli(root, "push", "--tls-verify=false", "app:v1", dest, env=env)
    other = tmp_path / "other"
    assert run_cli(other, "pull", "--tls-verify=false", dest, env=env).out.strip() == dest


@pytest.mark.needs_root
@pytest.mark.needs_overlay
@pytest.mark.needs_runtime
def test_registry_cache_over_https(
    tmp_path: Path, busybox_tar: Path, tls_registry: testreg.RegistryServer
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY a /a\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n"
    )
    (ctx / "a").write_text("a\n")
    env = home(tmp_path, "home")
    tls_registry.trust(Path(env["HOME"]) / ".config/containers/certs.d")
    where = parse_cache_spec(f"type=registry,ref={tls_registry.host}/tls/cache,mode=max")
    digests, hits = [], []
    for name, (cache_to, cache_from) in (("a", ([where], [])), ("b", ([], [where]))):
        store = Store(tmp_path / name)
        import_rootfs(store, str(busybox_tar), "busybox", epoch=EPOCH)
        events: list[Event] = []
        with open_registries(env) as registries:
            result = build(
                store, ctx, epoch=EPOCH, progress=events.append, registries=registries,
                cache_to=cache_to, cache_from=cache_from,
            )  # fmt: skip
        assert [e.text for e in events if e.kind == "warning"] == []
        digests.append(result.digest)
        hits.append(sum(1 for e in events if e.kind == "cached" and e.text == "registry"))
    assert digests[0] == digests[1] and hits == [0, 2]
