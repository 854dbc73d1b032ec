"""Benchmark: CLI start-up — ``lamina --version``, ``lamina --help``, ``lamina images``.

Issue 2's target: each under 100 ms wall on an idle machine. Every command runs ``--runs``
times (default 20) after one warm-up run, interleaved with two baselines that bound what is
achievable (the bare interpreter, and the interpreter importing click, which the CLI must use);
the report gives median and best wall time per command. ``lamina images`` runs against an
empty store in a temp dir. Usage: ``python bench/bench_cli.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
LAMINA = str(ROOT / ".venv" / "bin" / "lamina")
TARGET_MS = 100.0


def commands(store: Path) -> dict[str, list[str]]:
    """name -> argv, baselines first."""
    return {
        "python -c pass (baseline)": [PYTHON, "-c", "pass"],
        "python -c 'import click' (baseline)": [PYTHON, "-c", "import click"],
        "lamina --version": [LAMINA, "--version"],
        "lamina --help": [LAMINA, "--help"],
        "lamina images": [LAMINA, "--root", str(store), "images"],
    }


def wall(argv: list[str]) -> float:
    """Seconds for one run of ``argv`` (output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lamina-bench-cli-") as tmp:
        cmds = commands(Path(tmp) / "store")
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for argv in cmds.values():
            wall(argv)  # warm-up: page cache, .pyc files, the store's first creation
        for _ in range(args.runs):
            for name, argv in cmds.items():  # interleaved: load changes hit every command
                times[name].append(wall(argv))
    load = os.getloadavg()[0]
    print(f"\n{'command':40} {'median ms':>10} {'best ms':>8}  (load average {load:.2f})")
    ok = True
    for name, runs in times.items():
        med, low = statistics.median(runs) * 1000, min(runs) * 1000
        flag = ""
        if name.startswith("lamina"):
            flag = "ok" if med < TARGET_MS else "OVER"
            ok = ok and med < TARGET_MS
        print(f"{name:40} {med:10.1f} {low:8.1f}  {flag}")
    print(f"\ntarget: every lamina command's median < {TARGET_MS:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
