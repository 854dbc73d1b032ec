"""Run the lamina CLI as a subprocess, as end-to-end tests and benchmarks do."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: the SOURCE_DATE_EPOCH e2e runs use, so digests are stable
EPOCH = "1700000000"


@dataclass
class Result:
    """A finished CLI run (``raw``: stdout as bytes, for binary output such as tar streams)."""

    code: int
    out: str
    err: str
    raw: bytes = b""


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
    proc = subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    res = Result(
        proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(), proc.stdout
    )
    if check and res.code != 0:
        raise AssertionError(f"lamina {' '.join(args)} exited {res.code}: {res.err}")
    return res


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
