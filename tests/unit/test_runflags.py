"""``run``/``create`` pass-through flags (:mod:`lamina.ops.runflags`): Docker's parsing rules."""

from __future__ import annotations

import pytest

from lamina.errors import UsageError
from lamina.ops import runflags
from lamina.runtime import defaults


@pytest.mark.parametrize(
    ("spec", "entry"),
    [("db:10.0.0.5", "db:10.0.0.5"), ("db=10.0.0.5", "db:10.0.0.5"), ("v6:::1", "v6:::1"),
     ("v6=[2001:db8::1]", "v6:2001:db8::1"), ("a.b-c:1.2.3.4", "a.b-c:1.2.3.4")],
)  # fmt: skip
def test_add_host(spec: str, entry: str) -> None:
    assert runflags.parse_add_host(spec) == entry
    assert runflags.extra_hosts([entry]) == [tuple(entry.split(":", 1))]


@pytest.mark.parametrize(
    "spec", ["db", ":1.2.3.4", "db:", "db:notanip", "-x:1.2.3.4", "x:host-gateway"]
)
def test_bad_add_host(spec: str) -> None:
    with pytest.raises(UsageError):
        runflags.parse_add_host(spec)


@pytest.mark.parametrize(
    ("text", "size"),
    [("64m", 64 << 20), ("2g", 2 << 30), ("1.5GiB", 3 << 29), ("1048576", 1 << 20),
     ("512k", 512 << 10), ("10b", 10), ("1 MB", 1 << 20)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert runflags.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "-1m", "0", "1x", "1.2.3m"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError):
        runflags.parse_size(text)


def test_capabilities_follow_dockers_rules() -> None:
    default = defaults.CAPABILITIES
    assert runflags.capabilities([], []) == default
    caps = runflags.capabilities(["sys_ptrace", "CAP_NET_ADMIN"], ["net_raw"])
    assert "CAP_SYS_PTRACE" in caps and "CAP_NET_ADMIN" in caps and "CAP_NET_RAW" not in caps
    assert runflags.capabilities(["NET_ADMIN"], ["ALL"]) == ("CAP_NET_ADMIN",)
    every = runflags.capabilities(["ALL"], ["MKNOD"])
    assert len(every) == len(defaults.CAPABILITY_NUMBERS) - 1 and "CAP_MKNOD" not in every
    assert runflags.capabilities(["CHOWN"], []) == default  # no duplicates
    with pytest.raises(UsageError, match="unknown capability 'NOPE'"):
        runflags.capabilities(["NOPE"], [])


def test_dns_servers_are_addresses() -> None:
    assert runflags.parse_dns(["9.9.9.9", "2001:4860:4860::8888"]) == [
        "9.9.9.9",
        "2001:4860:4860::8888",
    ]
    with pytest.raises(UsageError, match="not an IP address"):
        runflags.parse_dns(["dns.example"])
