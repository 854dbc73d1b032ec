"""The console entry point pauses the cyclic collector during start-up only
(:mod:`lamina.cli.entry`): it is off while click and the command's module load, on when the
command runs, and importing :mod:`lamina.cli.main` alone never touches it."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from lamina.cli import entry
from lamina.cli import main as cli_main


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


def test_collection_is_off_while_the_command_loads_and_on_when_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    states: list[bool] = []
    real_import = importlib.import_module

    def watching_import(name: str, package: str | None = None) -> ModuleType:
        states.append(gc.isenabled())
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", watching_import)
    monkeypatch.setattr(sys, "argv", ["lamina", "--root", str(tmp_path), "images"])
    assert gc.isenabled()
    entry.main()
    assert states == [False]  # the command's module was imported with collection paused
    assert gc.isenabled()  # and the command ran with it resumed
    assert "REPOSITORY" in capsys.readouterr().out


def test_in_process_main_leaves_the_collector_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gc.disable()  # a caller's choice: resume_collection must not override it
    cli_main.main(["--root", str(tmp_path), "images"])
    assert not gc.isenabled()
    gc.enable()
    cli_main.main(["--root", str(tmp_path), "images"])
    assert gc.isenabled()
