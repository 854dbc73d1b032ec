"""Build graph: stage references, pruning, parallel levels, build-arg accounting."""

from __future__ import annotations

import pytest

from lamina.dockerfile import parse
from lamina.dockerfile.graph import build_graph
from lamina.errors import DockerfileError

DF = """\
ARG BASE=alpine
FROM ${BASE} AS deps
FROM ${BASE} AS tools
FROM deps AS build
COPY --from=tools /t /t
RUN --mount=from=0,target=/d true
FROM scratch AS docs
FROM build
COPY --from=nginx:1 /etc /etc
"""


def test_dependencies_and_levels() -> None:
    graph = build_graph(parse(DF))
    assert graph.target == 4
    assert [n.deps for n in graph.stages] == [(), (), (0, 1), (), (2,)]
    assert graph.stages[2].base_stage == 0 and graph.stages[0].base_image == "alpine"
    assert graph.stages[4].images == ("nginx:1",)
    assert graph.levels == ((0, 1), (2,), (4,))
    assert 3 not in graph.needed


def test_target_prunes() -> None:
    graph = build_graph(parse(DF), target="Docs")
    assert graph.needed == (3,) and graph.levels == ((3,),)
    with pytest.raises(DockerfileError, match='target stage "nope" could not be found'):
        build_graph(parse(DF), target="nope")


def test_from_uses_global_args_and_build_args() -> None:
    graph = build_graph(parse(DF), build_args={"BASE": "deps", "UNUSED": "1", "http_proxy": "p"})
    assert graph.stages[0].base_image == "deps"  # no earlier stage called deps yet
    assert graph.unused_build_args == ("UNUSED",)
    assert graph.unused_build_args_warning == "One or more build-args [UNUSED] were not consumed"


def test_env_inherited_from_parent_stage() -> None:
    graph = build_graph(parse("FROM a AS p\nENV X=1\nFROM p\nWORKDIR /$X\n"))
    assert graph.stages[1].resolved.steps[0].instruction.path == "/1"  # type: ignore[attr-defined]


def test_blank_base_is_error() -> None:
    with pytest.raises(DockerfileError, match="should not be blank"):
        build_graph(parse("ARG X\nFROM $X\n"))
