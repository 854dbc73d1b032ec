"""An attached ``lamina run`` seen from outside while it runs, and its signals.

``run`` (no ``-d``) is its container's monitor: while the container runs, ``inspect`` must
show it running with the pid of its init (another observer may ``exec`` or ``kill`` it);
SIGINT to lamina's process group (a terminal's ^C) and SIGTERM to lamina reach the container
(that the runtime is outside lamina's process group is checked in
``tests/integration/test_runtime_watched.py``); the container's status is lamina's exit
status, and ``--rm`` leaves nothing behind, not even the runtime's state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing.cli import EPOCH, Result

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

#: counts SIGINTs; exits with that count on SIGTERM
COUNTER = (
    "n=0; trap 'n=$((n+1))' INT; trap 'exit $((40+n))' TERM; echo ready; "
    "while :; do sleep 0.05; done"
)


def start_run(root: Path, *args: str) -> subprocess.Popen[bytes]:
    """``lamina run ARGS`` attached, in its own session (as a shell would start a job)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lamina", "--root", str(root), "run", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
    )  # fmt: skip


def wait_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"


def test_running_state_is_visible_and_signals_reach_the_container(
    cli: Callable[..., Result], busybox_tar: Path
) -> None:
    cli("import", str(busybox_tar), "busybox")
    root: Path = cli.root  # type: ignore[attr-defined]
    proc = start_run(root, "--name", "fg", "busybox", "sh", "-c", COUNTER)
    try:
        wait_ready(proc)
        state = json.loads(cli("inspect", "fg").out)[0]["State"]
        assert state["Status"] == "running" and state["Running"] is True
        pid = state["Pid"]
        assert pid > 0 and os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        assert "Up" in cli("ps").out
        assert cli("exec", "fg", "echo", "inside").out == "inside\n"
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's ^C: the whole foreground group
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 41
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state = json.loads(cli("inspect", "fg").out)[0]["State"]
    assert (state["Status"], state["ExitCode"], state["Pid"]) == ("exited", 41, 0)
    assert not os.path.exists(f"/proc/{pid}")
    cli("rm", "fg")


def test_rm_run_killed_by_signal_exits_137_and_leaves_nothing(
    cli: Callable[..., Result], busybox_tar: Path
) -> None:
    cli("import", str(busybox_tar), "busybox")
    root: Path = cli.root  # type: ignore[attr-defined]
    proc = start_run(root, "--rm", "--name", "doomed", "busybox", "sh", "-c", COUNTER)
    try:
        wait_ready(proc)
        cli("kill", "doomed")
        assert proc.wait(timeout=30) == 137
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert cli("ps", "-a", "-q").out == ""
    assert [p.name for p in (root / "containers").iterdir()] == ["names"]
    assert not any(p.name.endswith("-init") for p in (root / "overlay2").iterdir())
    runc_state = root / "runtime" / "runc"
    assert sorted(p.name for p in runc_state.iterdir() if p.is_dir()) == []
