"""``render_template``: the Go-template subset behind ``--format`` (inspect, images, ps, ...);
expected outputs are what Go's text/template prints for the same template and data."""

from __future__ import annotations

import pytest

from lamina.cli.output import render_template
from lamina.errors import UsageError

DATA = {"Id": "sha256:ab", "Config": {"Cmd": ["cat", "/a.txt"], "Labels": {"k": "v", "a": "b"}},
        "RepoTags": ["seed:latest"], "Flag": True, "None": None, "Empty": [],
        "Mounts": [{"Destination": "/ws"}, {"Destination": "/ws@tmp"}]}  # fmt: skip


@pytest.mark.parametrize(
    ("template", "out"),
    [
        ("{{.Id}}", "sha256:ab"),
        ("id={{ .Id }}\\t{{.Flag}}", "id=sha256:ab\ttrue"),  # Go-style bools; \\t is a tab
        ("{{json .Config.Cmd}}", '["cat","/a.txt"]'),
        ("{{.Config.Cmd}}", "[cat /a.txt]"),
        ("{{.Config.Labels}}", "map[a:b k:v]"),
        # the Jenkins Docker plugin's DockerClient.getVolumes(), keyword glued to the field
        ("{{range.Mounts}}{{.Destination}}\\n{{end}}", "/ws\n/ws@tmp\n"),
        ("{{range .Config.Labels}}{{.}},{{end}}", "b,v,"),  # a map in key order
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ("{{range .None}}x{{end}}", ""),
        ("{{if .Flag}}yes{{else}}no{{end}}", "yes"),
        ("{{if .Empty}}yes{{else}}no{{end}}", "no"),
        ('{{if index .Config.Labels "k"}}{{index .Config.Labels "k"}}{{end}}', "v"),
        ("{{range .Mounts}}{{if .Destination}}[{{.Destination}}]{{end}}{{end}}", "[/ws][/ws@tmp]"),
        ("a  {{- .Id -}}  b", "asha256:abb"),
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
        ("{{range .Mounts}}{{.Destination}}", "has no {{end}}"),
        ("{{if .Flag}}x{{else}}y", "has no {{end}}"),
        ("x{{end}}", "unexpected {{end}}"),
        ("{{range .Id}}x{{end}}", "can't iterate"),
        ("{{range}}x{{end}}", "missing value"),
        ("{{$x := .Id}}", "unsupported"),
    ],
)
def test_bad_templates_are_usage_errors(template: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        render_template(template, DATA)
