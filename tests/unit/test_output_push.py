"""``--output type=registry`` / ``push=true`` parsing and the names a build pushes to."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.build.outputs import parse_output, push_names
from lamina.errors import UsageError
from lamina.ops.executor import KanikoOptions, cache_repo_for, resolve_context, validate


def test_registry_output_names_quoted_and_unquoted() -> None:
    quoted = parse_output('type=registry,"name=r:5000/a:1,r:5000/b:2"')
    assert quoted.type == "registry" and quoted.attrs["name"] == "r:5000/a:1,r:5000/b:2"
    bare = parse_output("type=registry,name=r/a:1,r/b:2,push=true")
    assert bare.attrs == {"name": "r/a:1,r/b:2", "push": "true"}
    assert push_names([quoted], ["t:1"], False) == ["r:5000/a:1", "r:5000/b:2"]


def test_push_names_order_and_defaults() -> None:
    image_push = parse_output("type=image,name=r/c:1,push=true")
    image_only = parse_output("type=image,name=r/d:1")
    registry = parse_output("type=registry")
    assert push_names([image_push, image_only], ["t:1", "t:2"], True) == ["t:1", "t:2", "r/c:1"]
    assert push_names([registry], ["t:1"], False) == ["t:1"]  # no name=: the -t names
    assert push_names([image_only], ["t:1"], False) == []
    assert push_names([registry, registry], ["t:1"], True) == ["t:1"]  # no repeats


@pytest.mark.parametrize(
    ("outputs", "tags", "push", "text"),
    [
        ([], [], True, "nothing to push"),
        (["type=registry"], [], False, "nothing to push"),
        (["type=image,push=perhaps"], ["t"], False, "push='perhaps'"),
    ],
)
def test_push_names_errors(outputs: list[str], tags: list[str], push: bool, text: str) -> None:
    with pytest.raises(UsageError, match=text):
        push_names([parse_output(o) for o in outputs], tags, push)


def test_kaniko_validation_and_defaults() -> None:
    with pytest.raises(UsageError, match="you must provide --destination, or use --no-push"):
        validate(KanikoOptions())
    with pytest.raises(UsageError, match="if setting --image-name-with-digest-file"):
        validate(KanikoOptions(no_push=True, image_name_with_digest_file=Path("names")))
    with pytest.raises(UsageError, match="needs a tag, not a digest"):
        validate(KanikoOptions(destinations=("r/a@sha256:" + "0" * 64,)))
    validate(KanikoOptions(destinations=("r/a:1",), cache_repo="r/c"))  # ignored without --cache
    with pytest.raises(UsageError, match="--cache=true needs --cache-repo"):
        validate(KanikoOptions(no_push=True, cache=True))
    assert cache_repo_for(KanikoOptions(destinations=("r:5000/team/app:v1",))) == (
        "r:5000/team/app/cache"
    )
    assert cache_repo_for(KanikoOptions(cache_repo="r/x")) == "r/x"
    assert resolve_context("tar://stdin") == "-"
    assert resolve_context("tar:///ctx.tgz") == "/ctx.tgz"
    assert resolve_context("dir:///tmp", "") == "/tmp"
    with pytest.raises(UsageError, match="remote build contexts"):
        resolve_context("s3://bucket/ctx.tar.gz")
