"""Acceptance 4: 50 detached containers started, exec'd, stopped and removed concurrently
(several lamina processes on one store at once) leave no mounts, processes or dirs behind.

Where the time goes (measured alone, 2 shared cores): ~200 CLI processes at ~0.2 s of CPU
each (interpreter start and imports), and, before, 50 x the full stop timeout: ``sleep`` as
PID 1 of a pid namespace has no SIGTERM handler, so the kernel drops the signal and ``stop``
waits ``-t`` seconds before SIGKILL (Docker does exactly the same). Now PID 1 traps SIGTERM
and exits 42, so ``stop`` returns as soon as the signal is delivered, and the recorded exit
code proves it was (not a SIGKILL). Every tenth container still runs a bare ``sleep`` and
goes through the timeout and SIGKILL (exit 137), so both paths run concurrently.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lamina.testing.capabilities import mount_points_under
from lamina.testing.cli import Result

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

COUNT = 50
PARALLEL = 6
#: PID 1 that stops on SIGTERM (``wait`` returns at once for a trapped signal)
TRAPPING = ("sh", "-c", 'trap "exit 42" TERM; sleep 600 & wait')


def _lifecycle(cli: Callable[..., Result], root: Path, i: int) -> str:
    name = f"c{i}"
    stubborn = i % 10 == 0  # ignores SIGTERM: stop escalates to SIGKILL after -t
    command = ("sleep", "600") if stubborn else TRAPPING
    cid = cli("run", "-d", "--name", name, "busybox", *command).out.strip()
    res = cli("exec", name, "sh", "-c", f"echo {i} > /mark && cat /mark")
    assert res.out == f"{i}\n"
    cli("stop", "-t", "1" if stubborn else "60", name)
    state = json.loads((root / "containers" / cid / "state.json").read_text())
    assert (state["Status"], state["ExitCode"]) == ("exited", 137 if stubborn else 42)
    cli("rm", name)
    return cid


def test_fifty_concurrent_containers_leave_nothing(cli: Callable[..., Result],
                                                  busybox_tar: Path) -> None:  # fmt: skip
    cli("import", str(busybox_tar), "busybox")
    root: Path = cli.root  # type: ignore[attr-defined]
    overlay_before = set(os.listdir(root / "overlay2"))
    links_before = set(os.listdir(root / "overlay2" / "l"))
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        ids = list(pool.map(lambda i: _lifecycle(cli, root, i), range(COUNT)))
    elapsed = time.monotonic() - started
    assert len(set(ids)) == COUNT
    assert cli("ps", "-aq").out == ""
    assert mount_points_under(root) == []
    assert set(os.listdir(root / "overlay2")) == overlay_before
    assert set(os.listdir(root / "overlay2" / "l")) == links_before
    assert os.listdir(root / "containers" / "names") == []
    assert [e for e in os.listdir(root / "containers") if e != "names"] == []
    leftovers = (
        os.listdir(root / "runtime" / "runc") if (root / "runtime" / "runc").exists() else []
    )
    assert [e for e in leftovers if len(e) == 64] == []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                assert not os.readlink(f"/proc/{entry}/root").startswith(str(root))
            except OSError:
                continue
    assert cli("system", "check").code == 0
    print(f"{COUNT} containers in {elapsed:.1f}s")
