"""lamina._internal.log: logging is imported and configured only when a record is emitted."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from lamina._internal import log


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (module state and sys.modules of its own)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_without_a_deferred_setup_records_go_to_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Also after the CLI ran in this process: its main() cancels the setup it deferred."""
    caplog.set_level(logging.DEBUG, logger="lamina.test")
    log.defer_setup(log.ERROR, lambda: None)
    log.cancel_setup()
    lazy = log.get_logger("lamina.test")
    lazy.debug("d %d", 1)
    lazy.warning("w %s", "x")
    assert [(r.levelname, r.getMessage(), r.name) for r in caplog.records] == [
        ("DEBUG", "d 1", "lamina.test"),
        ("WARNING", "w x", "lamina.test"),
    ]
    assert caplog.records[0].funcName == "test_without_a_deferred_setup_records_go_to_logging"


def test_records_below_the_threshold_never_import_logging() -> None:
    done = run_python(
        "import sys\n"
        "from lamina._internal import log\n"
        "from lamina.cli.main import _configure_logging\n"
        "log.defer_setup(log.WARNING, lambda: _configure_logging(False))\n"
        "lazy = log.get_logger('lamina.x')\n"
        "lazy.debug('hidden %s', 1); lazy.info('hidden')\n"
        "print('logging' in sys.modules)\n"
        "lazy.warning('shown %s', 2); lazy.debug('still hidden')\n"
        "print('logging' in sys.modules)\n"
    )
    assert done.stdout.split() == ["False", "True"]
    assert done.stderr == "lamina: shown 2\n"  # the CLI's format: the setup ran first


def test_the_setup_runs_once_under_concurrent_first_records() -> None:
    done = run_python(
        "import threading\n"
        "from lamina._internal import log\n"
        "calls = []\n"
        "log.defer_setup(log.WARNING, lambda: calls.append(1))\n"
        "lazy = log.get_logger('lamina.y')\n"
        "barrier = threading.Barrier(8)\n"
        "def go():\n"
        "    barrier.wait(); lazy.error('e')\n"
        "ts = [threading.Thread(target=go) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(len(calls))\n"
    )
    assert done.stdout.strip() == "1"
    assert done.stderr.count("e\n") == 8  # logging's last resort: no handler was configured


def test_ensure_setup_hands_levels_to_logging() -> None:
    """After ensure_setup (the executor's --verbosity), logging's levels decide, debug included."""
    done = run_python(
        "import logging\n"
        "from lamina._internal import log\n"
        "log.defer_setup(log.WARNING, lambda: logging.basicConfig(format='%(message)s'))\n"
        "log.ensure_setup(); log.ensure_setup()\n"
        "logging.getLogger('lamina').setLevel(logging.DEBUG)\n"
        "log.get_logger('lamina.z').debug('now shown')\n"
    )
    assert done.stderr == "now shown\n"


def test_a_record_that_cannot_load_logging_goes_to_stderr() -> None:
    """As after a privilege drop that leaves the stdlib out of reach (the unprivileged apply):
    warnings are still shown, lower records dropped, nothing raised."""
    done = run_python(
        "import sys\n"
        "sys.modules['logging'] = None  # import logging now raises ImportError\n"
        "from lamina._internal import log\n"
        "lazy = log.get_logger('lamina.w')\n"
        "lazy.info('dropped'); lazy.warning('skipped %d entries', 1); lazy.error('plain')\n"
    )
    assert done.stderr == "lamina: skipped 1 entries\nlamina: plain\n"
