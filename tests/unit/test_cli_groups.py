"""The lazy command tables: every entry of ``lamina``, ``lamina container`` and ``lamina image``
names an importable click command, and the management groups use Docker's sub-names."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import click
import pytest

from lamina.cli import main as cli_main

TABLES = {
    "lamina": cli_main.COMMANDS,
    "container": cli_main.CONTAINER_COMMANDS,
    "image": cli_main.IMAGE_COMMANDS,
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_entry_is_an_importable_command(table: str) -> None:
    for name, (module, attr, help_text, _hidden) in TABLES[table].items():
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command), (table, name)
        assert help_text.endswith("."), (table, name)  # the help lists one sentence each


def test_docker_management_sub_names() -> None:
    container = set(cli_main.CONTAINER_COMMANDS)
    image = set(cli_main.IMAGE_COMMANDS)
    assert {"ls", "inspect", "rm", "run", "exec", "export", "logs", "stop", "commit"} <= container
    assert {"ls", "inspect", "rm", "tag", "history", "save", "load", "pull", "push"} <= image
    # `container inspect` and `image inspect` see one kind only, as in Docker
    assert cli_main.CONTAINER_COMMANDS["inspect"][1] == "container_inspect"
    assert cli_main.IMAGE_COMMANDS["inspect"][1] == "image_inspect"


def test_version_has_docker_shape(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lamina import __version__

    runner = CliRunner()
    res = runner.invoke(cli_main.cli, ["--root", str(tmp_path / "r"), "version", "-f", "json"])
    info = json.loads(res.output)
    assert info["Client"]["Version"] == info["Server"]["Version"] == __version__
    assert info["Server"]["Root"] == str(tmp_path / "r")
    res = runner.invoke(cli_main.cli, ["version", "--format", "{{.Server.Version}}"])
    assert res.output == f"{__version__}\n"
    assert not (tmp_path / "r").exists()  # no store is made or opened
