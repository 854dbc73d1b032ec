"""``--filter`` for ``ps`` and ``images`` (:mod:`lamina.cli.filters`): Docker's key set, OR
within a key (AND for labels), AND across keys, and one usage error for anything malformed."""

from __future__ import annotations

from typing import Any

import pytest

from lamina.cli import filters as flt
from lamina.errors import UsageError


def _ctr(name: str, image: str, status: str, code: int = 0, **labels: str) -> tuple[Any, ...]:
    cid = (name * 64)[:64]
    record = {"Name": f"/{name}", "Image": "sha256:" + "ab" * 32,
              "Config": {"Image": image, "Labels": labels}}  # fmt: skip
    return cid, record, {"Status": status, "ExitCode": code}


CTRS = [
    _ctr("web", "busybox", "running", app="web", tier="front"),
    _ctr("job", "docker.io/library/busybox:latest", "exited", 3, app="job"),
    _ctr("new", "other:1", "created"),
]


def _names(*specs: str) -> list[str]:
    wanted = flt.parse(specs, flt.PS_KEYS)
    return [r["Name"][1:] for cid, r, s in CTRS if flt.container_matches(wanted, cid, r, s)]


@pytest.mark.parametrize(
    ("specs", "names"),
    [
        ((), ["web", "job", "new"]),
        (("status=exited",), ["job"]),
        (("status=exited", "status=created"), ["job", "new"]),  # one key: either
        (("exited=3",), ["job"]),
        (("exited=0",), []),
        (("name=^w",), ["web"]),
        (("name=e",), ["web", "new"]),  # a regular expression searched in the name
        (("label=app",), ["web", "job"]),
        (("label=app=web", "label=tier"), ["web"]),  # labels: all of them
        (("label=app", "status=running"), ["web"]),  # keys: all of them
        (("ancestor=busybox",), ["web", "job"]),  # names compared normalised
        (("ancestor=abab",), ["web", "job", "new"]),  # an image id prefix
        (("id=jobjob",), ["job"]),
    ],
)
def test_ps_filters(specs: tuple[str, ...], names: list[str]) -> None:
    assert _names(*specs) == names


def test_status_and_exited_list_stopped_containers() -> None:
    assert flt.lists_stopped(flt.parse(["status=exited"], flt.PS_KEYS))
    assert not flt.lists_stopped(flt.parse(["name=x"], flt.PS_KEYS))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus=1", "invalid filter 'bogus=1'"),
        ("status", "invalid filter 'status'"),
        ("status=sleeping", "invalid filter 'status=sleeping'"),
        ("exited=x", "invalid filter 'exited=x'"),
        ("name=[", "invalid filter 'name=\\['"),
    ],
)
def test_bad_ps_filters_are_usage_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        flt.parse([spec], flt.PS_KEYS)


@pytest.mark.parametrize(
    ("specs", "rows"),
    [
        (("dangling=true",), [("<none>", "<none>")]),
        (("dangling=false",), [("busybox", "latest"), ("me/app", "1")]),
        (("reference=busy*",), [("busybox", "latest")]),
        (("reference=*:1",), [("me/app", "1")]),
        (("reference=me/*", "reference=busybox"), [("busybox", "latest"), ("me/app", "1")]),
    ],
)
def test_image_filters(specs: tuple[str, ...], rows: list[tuple[str, str]]) -> None:
    wanted = flt.parse(specs, flt.IMAGE_KEYS)
    table = [("busybox", "latest"), ("<none>", "<none>"), ("me/app", "1")]
    assert sorted(r for r in table if flt.image_matches(wanted, *r)) == rows
    with pytest.raises(UsageError, match="dangling=maybe"):
        flt.parse(["dangling=maybe"], flt.IMAGE_KEYS)
