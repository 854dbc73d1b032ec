"""``render_template``: the Go-template subset behind ``--format`` (inspect, images, ps, ...);
expected outputs are what Go's text/template prints for the same template and data."""

from __future__ import annotations

import json

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


def test_table_format_has_titles_and_tabwriter_columns(capsys: pytest.CaptureFixture[str]) -> None:
    from lamina.cli.output import render_rows

    rows = [
        {"ID": "48d5bd619b4e", "Names": "tabby", "Status": "Up 2 seconds"},
        {"ID": "0123456789ab", "Names": "a-much-longer-name", "Status": "Exited (0)"},
    ]
    render_rows("table {{.ID}}\\t{{.Names}}\\t{{.Status}}", rows, id_title="CONTAINER ID")
    assert capsys.readouterr().out.splitlines() == [
        "CONTAINER ID   NAMES                STATUS",
        "48d5bd619b4e   tabby                Up 2 seconds",
        "0123456789ab   a-much-longer-name   Exited (0)",
    ]
    render_rows("table {{.Names}}", rows[:1])
    assert capsys.readouterr().out == "NAMES\ntabby\n"
    render_rows("json", rows[:1])
    assert json.loads(capsys.readouterr().out) == rows[0]
    render_rows("{{.Names}}!", rows)
    assert capsys.readouterr().out == "tabby!\na-much-longer-name!\n"
    render_rows("table{{.Names}}", rows[:1])  # no space: a template that starts with "table"
    assert capsys.readouterr().out == "tabletabby\n"
