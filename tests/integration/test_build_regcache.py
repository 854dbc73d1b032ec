"""The registry build cache (``--cache-to``/``--cache-from``/``--cache-repo``) against a real
docker-registry, shared by two store roots ("two machines").

A step is a registry hit exactly when the progress stream reports it ``cached`` with text
``registry``; RUN steps write a random value (``/proc/sys/kernel/random/uuid``), so equal
image digests across the two roots prove they did not run again. What the second root
downloaded is read from the registry's access log.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lamina.build.outputs import OutputSpec
from lamina.build.progress import Event
from lamina.build.regcache import CONFIG_TYPE, CacheSpec, parse_cache_spec
from lamina.errors import BuildError, NotFound
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest
from lamina.ops.archive import import_rootfs
from lamina.ops.build import BuildResult, build
from lamina.registry import Credential, RegistryClient, StaticCredentials
from lamina.store import Store, chain_ids
from lamina.testing import registry as testreg
from lamina.testing.cli import run_cli
from lamina.transports.docker import Registries

pytest_plugins = ["conftest_runtime"]
pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.needs_overlay,
    pytest.mark.needs_runtime,
    pytest.mark.needs_registry,
]

EPOCH = 1700000000
DOCKERFILE = (
    "FROM busybox AS builder\n"
    "COPY src/ /src/\n"
    "RUN cat /src/one /src/two > /built && cat /proc/sys/kernel/random/uuid >> /built\n"
    "RUN true\n"
    "FROM busybox\n"
    "WORKDIR /app\n"
    "COPY --from=builder /built /app/built\n"
    "RUN cp /app/built /app/copy && cat /proc/sys/kernel/random/uuid > /app/stamp\n"
)
#: the step vertices of DOCKERFILE (FROM vertices excluded)
STEPS = 6
registry = testreg.registry_fixture("reg", access_log=True)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "src" / "one").write_text("1\n")
    (ctx / "src" / "two").write_text("2\n")
    return ctx


def new_store(path: Path, busybox_tar: Path) -> Store:
    store = Store(path)
    import_rootfs(store, str(busybox_tar), "busybox", epoch=EPOCH)
    return store


def run(store: Store, ctx: Path, **kw: object) -> tuple[BuildResult, list[Event]]:
    events: list[Event] = []
    result = build(store, ctx, epoch=EPOCH, progress=events.append, **kw)  # type: ignore[arg-type]
    return result, events


def steps(events: list[Event], kind: str, text: str | None = None) -> list[str]:
    """Names of step vertices (``[i/n] ...``) that ended with ``kind`` (and ``text``)."""
    return [
        e.name
        for e in events
        if e.kind == kind and e.name.startswith("[") and "FROM" not in e.name
        if text is None or e.text == text
    ]


def warnings(events: list[Event]) -> list[str]:
    return [e.text for e in events if e.kind == "warning"]


def spec(registry: testreg.RegistryServer, repo: str, mode: str = "max") -> CacheSpec:
    return parse_cache_spec(f"type=registry,ref={registry.host}/{repo},mode={mode}")


def test_second_root_gets_all_hits_and_downloads_only_the_final_layers(
    tmp_path: Path, ctx: Path, busybox_tar: Path, registry: testreg.RegistryServer
) -> None:
    store_a = new_store(tmp_path / "a", busybox_tar)
    first, events_a = run(store_a, ctx, cache_to=[spec(registry, "cache/shared")])
    assert len(steps(events_a, "done")) == STEPS and warnings(events_a) == []
    before = len(registry.blob_gets("cache/shared"))

    store_b = new_store(tmp_path / "b", busybox_tar)
    second, events_b = run(store_b, ctx, cache_from=[spec(registry, "cache/shared")])
    assert warnings(events_b) == []
    assert len(steps(events_b, "cached", "registry")) == STEPS
    assert steps(events_b, "done") == []
    assert second.digest == first.digest and second.image_id == first.image_id

    # B fetched the cache config and the final stage's own layers: nothing of the builder
    image = store_a.get_image(str(first.digest))
    base = len(store_a.get_image("busybox").layers())
    chains = chain_ids(image.config().diff_ids)[base:]
    final_gzip = set()
    for chain in chains:
        blobs = store_a.layers.db.get(chain).blobs  # type: ignore[union-attr]
        final_gzip |= {str(b.digest) for b in blobs if b.media_type == mediatype.OCI_LAYER_GZIP}
    fetched = registry.blob_gets("cache/shared")[before:]
    config = _cache_manifest(registry, "cache/shared").config.digest
    assert len(chains) == 3 and len(final_gzip) == 3
    assert sorted(fetched) == sorted([str(config), *final_gzip])
    # ...and B's image is complete: its layers are in B's store
    for chain, diff_id in zip(chains, image.config().diff_ids[base:], strict=True):
        assert store_b.layers.db.get(chain) is not None and store_b.blobs.has(diff_id)
    # a rebuild in B: the final stage's steps (and the empty RUN true) are local hits now, the
    # builder's COPY and RUN still come from the registry (never fetched); nothing is fetched
    # again but the cache config
    seen = len(registry.blob_gets("cache/shared"))
    third, events_c = run(store_b, ctx, cache_from=[spec(registry, "cache/shared")])
    assert third.digest == first.digest
    assert len(steps(events_c, "cached", "")) == 4
    assert len(steps(events_c, "cached", "registry")) == 2
    assert registry.blob_gets("cache/shared")[seen:] == [str(config)]


def _cache_manifest(registry: testreg.RegistryServer, repo: str) -> Manifest:
    with RegistryClient(registry.host) as client:
        data, _media, _digest = client.get_manifest(repo, "buildcache")
    return Manifest.from_json(data)


def test_unreachable_cache_registry_warns_and_builds_normally(
    tmp_path: Path, ctx: Path, busybox_tar: Path
) -> None:
    store = new_store(tmp_path / "root", busybox_tar)
    dead = f"127.0.0.1:{testreg.free_port()}"
    where = parse_cache_spec(f"{dead}/cache")
    result, events = run(store, ctx, cache_from=[where], cache_to=[where])
    assert result.digest is not None and len(steps(events, "done")) == STEPS
    found = warnings(events)
    assert len(found) == 2
    assert found[0].startswith(f"importing cache from {dead}/cache:buildcache: ")
    assert found[1].startswith(f"exporting cache to {dead}/cache:buildcache: ")
    assert all("\n" not in w for w in found)


def test_wrong_credentials_warn_in_one_line_without_the_password(
    tmp_path: Path, ctx: Path, busybox_tar: Path
) -> None:
    store = new_store(tmp_path / "root", busybox_tar)
    with testreg.run_registry(tmp_path / "reg", users={"alice": "right-pw"}) as server:
        creds = StaticCredentials({server.host: Credential("alice", "s3cret-wrong")})
        with Registries(credentials=creds) as registries:
            where = parse_cache_spec(f"{server.host}/cache")
            result, events = run(
                store, ctx, cache_from=[where], cache_to=[where], registries=registries
            )
    assert result.digest is not None and len(steps(events, "done")) == STEPS
    found = warnings(events)
    assert len(found) == 2 and all("401" in w or "unauthorized" in w.lower() for w in found)
    assert all("s3cret-wrong" not in w and "\n" not in w for w in found)


def _push_cache(registry: testreg.RegistryServer, repo: str, config: bytes) -> None:
    desc = Descriptor(media_type=CONFIG_TYPE, digest=Digest.of_bytes(config), size=len(config))
    manifest = Manifest(config=desc, layers=()).to_json()
    with RegistryClient(registry.host) as client:
        client.put_blob(repo, io.BytesIO(config), desc)
        client.put_manifest(repo, "buildcache", manifest, mediatype.OCI_MANIFEST)


def test_corrupt_cache_config_is_a_warning_and_a_miss(
    tmp_path: Path, ctx: Path, busybox_tar: Path, registry: testreg.RegistryServer
) -> None:
    _push_cache(registry, "cache/garbage", b"<html>not json</html>")
    store = new_store(tmp_path / "root", busybox_tar)
    result, events = run(store, ctx, cache_from=[spec(registry, "cache/garbage")])
    assert result.digest is not None and len(steps(events, "done")) == STEPS
    assert [w.split(": ")[1] for w in warnings(events)] == ["corrupt cache manifest"]


def test_malformed_records_are_misses_not_crashes(
    tmp_path: Path, ctx: Path, busybox_tar: Path, registry: testreg.RegistryServer
) -> None:
    store = new_store(tmp_path / "root", busybox_tar)
    first, _ = run(store, ctx, cache_to=[spec(registry, "cache/bad")])
    good = _cache_manifest(registry, "cache/bad")
    with RegistryClient(registry.host) as client, client.open_blob("cache/bad", good.config) as f:
        records = json.loads(f.read())["records"]
    # every record damaged a different way: bad key, unknown blob, bad digest, wrong types
    damaged: list[dict[str, object]] = [dict(r) for r in records]
    damaged[0]["key"] = "not-hex"
    for r in damaged[1:]:
        if r["blob"] is not None:
            r["blob"] = "sha256:" + "0" * 64
        else:
            r["size"] = "many"
            r["diff_id"] = "sha256:xyz"
    bad: list[object] = [*damaged, "not an object"]
    _push_cache(registry, "cache/bad2", json.dumps({"version": 1, "records": bad}).encode())
    other = new_store(tmp_path / "other", busybox_tar)
    second, events = run(other, ctx, cache_from=[spec(registry, "cache/bad2")])
    assert steps(events, "cached") == [] and len(steps(events, "done")) == STEPS
    assert warnings(events) == [
        f"importing cache from {registry.host}/cache/bad2:buildcache: "
        f"skipped {len(bad)} malformed records"
    ]
    assert second.digest != first.digest  # the RUN steps ran again (random output)


def test_mode_min_exports_only_the_final_images_steps(
    tmp_path: Path, ctx: Path, busybox_tar: Path, registry: testreg.RegistryServer
) -> None:
    store = new_store(tmp_path / "root", busybox_tar)
    run(store, ctx, cache_to=[spec(registry, "cache/min", "min"), spec(registry, "cache/max")])
    small, big = _cache_manifest(registry, "cache/min"), _cache_manifest(registry, "cache/max")
    assert len(small.layers) == 3 and len(big.layers) == 5


def test_cli_cache_repo_round_trip_says_cached_registry(
    tmp_path: Path, ctx: Path, busybox_tar: Path, registry: testreg.RegistryServer
) -> None:
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    new_store(root_a, busybox_tar)
    new_store(root_b, busybox_tar)
    repo = f"{registry.host}/cache/cli"
    iid = tmp_path / "iid"
    args = ("build", "--progress=plain", "--reproducible", "--cache-repo", repo, str(ctx))
    built = run_cli(root_a, *args, "--iidfile", str(iid))
    assert "WARNING" not in built.err, built.err
    first = iid.read_text()
    res = run_cli(root_b, *args, "--iidfile", str(iid))
    assert iid.read_text() == first, res.err
    assert res.err.count("CACHED (registry)") == STEPS, res.err
    bad = run_cli(root_b, "build", "--cache-to", "type=local,dest=x", str(ctx), check=False)
    assert bad.code != 0 and "unsupported type 'local'" in bad.err
    assert "Traceback" not in bad.err and len(bad.err.strip().splitlines()) <= 2


def test_layer_that_does_not_match_its_record_fails_cleanly(
    tmp_path: Path, ctx: Path, busybox_tar: Path, registry: testreg.RegistryServer
) -> None:
    store = new_store(tmp_path / "root", busybox_tar)
    run(store, ctx, cache_to=[spec(registry, "cache/poison-src")])
    good = _cache_manifest(registry, "cache/poison-src")
    with RegistryClient(registry.host) as client:
        with client.open_blob("cache/poison-src", good.config) as f:
            records = json.loads(f.read())["records"]
        for desc in good.layers:  # the poisoned cache holds the real layers...
            with client.open_blob("cache/poison-src", desc) as f:
                client.put_blob("cache/poison", f, desc)
    for r in records:  # ...under diff_ids they do not have
        if r["diff_id"] is not None:
            r["diff_id"] = str(Digest.of_bytes(r["diff_id"].encode()))
    config = json.dumps({"version": 1, "records": records}).encode()
    desc = Descriptor(media_type=CONFIG_TYPE, digest=Digest.of_bytes(config), size=len(config))
    with RegistryClient(registry.host) as client:
        client.put_blob("cache/poison", io.BytesIO(config), desc)
        manifest = Manifest(config=desc, layers=good.layers).to_json()
        client.put_manifest("cache/poison", "buildcache", manifest, mediatype.OCI_MANIFEST)
    other = new_store(tmp_path / "other", busybox_tar)
    with pytest.raises(BuildError) as info:
        run(other, ctx, cache_from=[spec(registry, "cache/poison")], tags=["poisoned"])
    assert info.value.message.startswith("fetching cache layer sha256:")
    assert "\n" not in info.value.message and info.value.hint
    with pytest.raises(NotFound):
        other.get_image("poisoned")
    assert other.check() == []


def test_a_miss_after_hits_fetches_the_layers_below_it(
    tmp_path: Path, ctx: Path, busybox_tar: Path, registry: testreg.RegistryServer
) -> None:
    store_a = new_store(tmp_path / "a", busybox_tar)
    first, _ = run(store_a, ctx, cache_to=[spec(registry, "cache/miss")])
    (ctx / "Dockerfile").write_text(DOCKERFILE + "RUN cat /app/copy > /app/again\n")
    store_b = new_store(tmp_path / "b", busybox_tar)
    out = tmp_path / "out"
    second, events = run(
        store_b, ctx, cache_from=[spec(registry, "cache/miss")],
        outputs=[OutputSpec(type="local", dest=str(out))],
    )  # fmt: skip
    assert len(steps(events, "cached", "registry")) == STEPS
    assert steps(events, "done") == ["[5/5] RUN cat /app/copy > /app/again"]
    old = store_a.get_image(str(first.digest)).config().diff_ids
    assert store_b.get_image(str(second.digest)).config().diff_ids[:-1] == old
    assert (out / "app" / "again").read_text() == (out / "app" / "copy").read_text() != ""
