"""Fuzz: nothing but DockerfileError escapes parse + instructions + graph + lint."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.dockerfile import dump, parse
from lamina.dockerfile.graph import build_graph
from lamina.dockerfile.instructions import parse_instruction
from lamina.dockerfile.lint import lint
from lamina.errors import DockerfileError

TOKENS = [
    "FROM", "from", "RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "CMD", "ENTRYPOINT", "SHELL",
    "EXPOSE", "VOLUME", "USER", "WORKDIR", "ONBUILD", "HEALTHCHECK", "STOPSIGNAL", "MAINTAINER",
    "AS", "--from=", "--mount=", "type=cache,target=/x", "--platform=", "--chown=", "--link",
    "--", "--interval=", "1s", "CMD", "NONE", "<<EOF", "<<-'E'", "EOF", "E", "\t", " ", "  ",
    "\\", "`", "\n", "\r\n", "#", "# escape=`", "# check=error=true", "[", "]", '"', "'", ",",
    "=", "$", "${", "}", ":-", "a", "b0", "x=y", "80/tcp", "1.2.3.4:80:80", "\x00", "é", "\ufeff",
]  # fmt: skip

texts = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join) | st.text(max_size=200)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_only_dockerfile_errors_escape(text: str) -> None:
    try:
        doc = parse(text)
    except DockerfileError:
        return
    dump(doc)
    for node in doc.children:
        with contextlib.suppress(DockerfileError):
            parse_instruction(node)
    try:
        build_graph(doc)
        lint(doc)
    except DockerfileError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_bytes_input(data: bytes) -> None:
    with contextlib.suppress(DockerfileError):
        dump(parse(data))
