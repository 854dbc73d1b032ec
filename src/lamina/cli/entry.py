"""The console script's entry point (``lamina``, ``python -m lamina``).

Start-up imports click, this package's command table and then the command's modules: tens of
thousands of long-lived objects (functions, classes, dicts, code) and next to no garbage.
CPython's cyclic collector still runs many times while they are created, each time rescanning
what is already there (~4 ms of ``import click`` alone here). :func:`main` pauses automatic
collection before anything is imported; :func:`resume_collection`, called by
:meth:`lamina.cli.main.LazyGroup.get_command` once the command's module is loaded, first
freezes what exists (:func:`gc.freeze`: it is never scanned again) and then resumes it, so the
command itself runs with the collector on.

Invariants: reference counting frees all acyclic garbage while collection is paused, so only
cycles made during argument parsing wait; collection is paused only by this entry point, never
by importing :mod:`lamina.cli.main` (tests and in-process callers of ``main(argv)`` keep their
collector as it was).
"""

from __future__ import annotations

import gc

_paused = False


def main() -> None:
    """Pause automatic collection, then run :func:`lamina.cli.main.main`."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True
    from lamina.cli.main import main as run_cli

    run_cli()


def resume_collection() -> None:
    """Freeze the start-up objects and resume collection, if :func:`main` paused it."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
