"""``render_template``: the Go-template subset behind ``--format`` (inspect, images, ps, ...)."""

from __future__ import annotations

import pytest

from lamina.cli.output import render_template
from lamina.errors import UsageError

DATA = {"Id": "sha256:ab", "Config": {"Cmd": ["cat", "/a.txt"], "Labels": {"k": "v"}},
        "RepoTags": ["seed:latest"], "Flag": True, "None": None}  # fmt: skip


@pytest.mark.parametrize(
    ("template", "out"),
    [
        ("{{.Id}}", "sha256:ab"),
        ("id={{ .Id }}\\t{{.Flag}}", "id=sha256:ab\ttrue"),  # Go-style bools; \\t is a tab
        ("{{json .Config.Cmd}}", '["cat","/a.txt"]'),
        ("{{.Config.Cmd}}", "[cat /a.txt]"),
        ("{{.Config.Labels}}", "map[k:v]"),
        ('{{index .Config.Labels "k"}}', "v"),
        ("{{index .RepoTags 0}}", "seed:latest"),
        ("{{upper .Id}}", "SHA256:AB"),
        ("{{.None}}", "<no value>"),
        ("no actions }} here", "no actions }} here"),
    ],
)
def test_renders_like_go_templates(template: str, out: str) -> None:
    assert render_template(template, DATA) == out


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Nope}}", "can't evaluate field Nope"),
        ("{{.Id", "unclosed action"),
        ("{{.Id}} and {{json .Config", "unclosed action"),
        ("{{}}", "empty action"),
        ("{{index .RepoTags 5}}", "out of range"),
        ("{{printf .Id}}", "unsupported action"),
    ],
)
def test_bad_templates_are_usage_errors(template: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        render_template(template, DATA)
