"""The registry build cache without a registry: flag parsing, the record format, TTLs and
what a hit remembers for download and export (see :mod:`lamina.build.regcache`)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from lamina.build.cachespec import cache_repo_specs, parse_cache_spec
from lamina.build.progress import Reporter
from lamina.build.regcache import (
    CONFIG_TYPE,
    RegistryCache,
    RemoteRecord,
    decode_config,
    encode_config,
)
from lamina.build.regcache import Hit as RegHit
from lamina.errors import UsageError
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.digest import Digest
from lamina.oci.manifest import Manifest
from lamina.registry import RegistryClient
from lamina.store import chain_id

KEY = "ab" * 32
DIFF = Digest.of_bytes(b"tar")
BLOB = Descriptor(media_type=mediatype.OCI_LAYER_GZIP, digest=Digest.of_bytes(b"gz"), size=2)


@pytest.mark.parametrize(
    "text",
    [
        "type=registry",
        "type=registry,ref=r:5000/x,mode=all",
        "type=registry,ref=r/x@sha256:" + "a" * 64,
        "ref=r/x,color=blue",
        "type=registry,ref",
        "type=local,dest=x",
        "type=registry,ref=UPPER/Case",
    ],
)
def test_bad_cache_specs_are_usage_errors_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_cache_spec(text, flag="--cache-to")
    assert info.value.message.startswith("invalid --cache-to")


def test_cache_spec_forms() -> None:
    bare = parse_cache_spec("r:5000/team/cache")
    assert str(bare) == "r:5000/team/cache:buildcache" and bare.mode == "min"
    full = parse_cache_spec("type=registry,ref=r:5000/c:v2,mode=max,ignore-error=true")
    assert (full.host, full.repository, full.tag, full.mode) == ("r:5000", "c", "v2", "max")
    source, target = cache_repo_specs("r:5000/kaniko/cache")
    assert (source.mode, source.merge, target.mode, target.merge) == ("min", False, "max", True)
    assert str(source) == str(target) == "r:5000/kaniko/cache:buildcache"


def _manifest(config: bytes, layers: tuple[Descriptor, ...] = (BLOB,)) -> Manifest:
    desc = Descriptor(media_type=CONFIG_TYPE, digest=Digest.of_bytes(config), size=len(config))
    return Manifest(config=desc, layers=layers)


def test_config_round_trip_is_deterministic() -> None:
    records = {
        KEY: RemoteRecord(diff_id=DIFF, size=10, blob=BLOB, created=5),
        "cd" * 32: RemoteRecord(diff_id=None, created=7),
    }
    data = encode_config(records)
    assert data == encode_config(dict(reversed(list(records.items()))))
    assert [r["key"] for r in json.loads(data)["records"]] == sorted(records)
    assert decode_config(data, _manifest(data)) == (records, 0)


def test_records_naming_blobs_outside_the_manifest_are_dropped() -> None:
    data = encode_config({KEY: RemoteRecord(diff_id=DIFF, size=10, blob=BLOB)})
    assert decode_config(data, _manifest(data, layers=())) == ({}, 1)


@pytest.mark.parametrize("doc", [b"[]", b'{"version": 2, "records": []}', b'{"version": 1}'])
def test_documents_that_are_not_cache_configs_are_refused(doc: bytes) -> None:
    with pytest.raises(ValueError):
        decode_config(doc, _manifest(doc))


def _cache(ttl: timedelta | None, now: float) -> RegistryCache:
    def no_client(host: str) -> RegistryClient:
        raise AssertionError("no registry in a unit test")

    return RegistryCache(
        sources=[], targets=[], client_for=no_client, reporter=Reporter(), ttl=ttl,
        now=lambda: now,
    )  # fmt: skip


def test_ttl_expires_records_by_their_first_export_time() -> None:
    cache = _cache(timedelta(hours=1), now=10_000)
    assert cache.expired(RemoteRecord(diff_id=None, created=10_000 - 3601))
    assert not cache.expired(RemoteRecord(diff_id=None, created=10_000 - 3599))
    assert not _cache(None, now=10**12).expired(RemoteRecord(diff_id=None, created=0))


def test_a_hit_is_pending_until_fetched_and_remembered_for_export() -> None:
    cache = _cache(None, now=0)
    spec = parse_cache_spec("r:5000/c")
    rec = RemoteRecord(diff_id=DIFF, size=10, blob=BLOB, created=3)
    empty = RemoteRecord(diff_id=None, created=3)
    cache.records = {KEY: RegHit(record=rec, spec=spec), "cd" * 32: RegHit(record=empty, spec=spec)}
    parent = Digest.of_bytes(b"parent")
    assert cache.take("ef" * 32, parent) is None
    assert cache.take(KEY, parent) == rec
    chain = chain_id(parent, DIFF)
    assert cache.pending == {chain: (parent, RegHit(record=rec, spec=spec))}
    assert cache.produced[KEY].chain == chain and cache.produced[KEY].result == chain
    assert cache.take("cd" * 32, chain) == empty
    assert cache.produced["cd" * 32].result == chain and len(cache.pending) == 1
