"""Run the lamina CLI as a subprocess, as end-to-end tests and benchmarks do."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lamina.testing.command import Result, run_command

__all__ = ["EPOCH", "Result", "peak_rss_bytes", "run_cli"]

#: the SOURCE_DATE_EPOCH e2e runs use, so digests are stable
EPOCH = "1700000000"


def run_cli(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    check: bool = True,
    timeout: float = 300,
) -> Result:
    """Run ``python -m lamina --root ROOT ARGS``; with ``check`` a non-zero exit raises."""
    full_env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, **(env or {})}
    return run_command(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        env=full_env, stdin=stdin, check=check, timeout=timeout, name=f"lamina {' '.join(args)}",
    )  # fmt: skip


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM).

    Not ``ru_maxrss``: Linux carries that across ``execve`` from the parent, so a child of a
    big pytest worker would report the worker's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
