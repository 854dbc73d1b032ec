"""Benchmark: CLI start-up — ``lamina --version``, ``lamina --help``, ``lamina images``.

Issue 2's target: each under 100 ms wall on an idle machine. Every command runs ``--runs``
times (default 20) after one warm-up run, interleaved with two baselines that bound what is
achievable (the bare interpreter, and the interpreter importing click, which the CLI must use);
the report gives median and best wall time per command. ``lamina images`` runs against an
empty store in a temp dir.

On a shared machine wall and CPU times swing with the neighbours' load; ``--instructions``
also counts each command's user-space instructions once under valgrind (callgrind), which
does not depend on load: compare them with the ``import click`` baseline.
Usage: ``python bench/bench_cli.py [--runs N] [--instructions]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
LAMINA = str(ROOT / ".venv" / "bin" / "lamina")
sys.path.insert(0, str(ROOT / "bench"))

from bench_store import compile_sources  # noqa: E402

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


def wall(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds for one run of ``argv`` (output discarded; a failure stops the
    benchmark). CPU = the child's user + system time: on a shared machine it is the better
    guide to what an idle machine's wall time would be."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def instructions(argv: list[str]) -> int:
    """User-space instructions ``argv`` executes (valgrind's callgrind "Collected" count)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"bench: no instruction count from valgrind for {argv}")


def report_instructions(cmds: dict[str, list[str]]) -> None:
    """One instruction count per command, and its ratio to the ``import click`` baseline."""
    counts = {name: instructions(argv) for name, argv in cmds.items()}
    click_count = next(c for n, c in counts.items() if "import click" in n)
    print(f"\n{'command':40} {'M instr':>8} {'/ click':>8}")
    for name, count in counts.items():
        print(f"{name:40} {count / 1e6:8.1f} {count / click_count:8.2f}")


def calibrate() -> float:
    """Best of 3 timings of a fixed pure-Python loop: how fast this core is right now (a
    busy neighbour on a shared core slows everything, start-up included, by the same factor)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        sum(range(10**7))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--instructions", action="store_true", help="also count instructions")
    args = ap.parse_args()
    if args.instructions and not shutil.which("valgrind"):
        print("bench: --instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    compile_sources()
    with tempfile.TemporaryDirectory(prefix="lamina-bench-cli-") as tmp:
        cmds = commands(Path(tmp) / "store")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
        for argv in cmds.values():
            wall(argv)  # warm-up: page cache, .pyc files, the store's first creation
        for _ in range(args.runs):
            for name, argv in cmds.items():  # interleaved: load changes hit every command
                times[name].append(wall(argv))
        if args.instructions:
            report_instructions(cmds)
    load = os.getloadavg()[0]
    print(f"\nload average {load:.2f}; CPU speed check: {calibrate():.3f} s for sum(range(10**7))")
    print("wall and CPU (user + system) per run, in ms")
    print(f"{'command':40} {'median':>8} {'best':>8} {'CPU med':>8}")
    ok = True
    for name, runs in times.items():
        med = statistics.median(r[0] for r in runs) * 1000
        low = min(r[0] for r in runs) * 1000
        cpu = statistics.median(r[1] for r in runs) * 1000
        flag = ""
        if name.startswith("lamina"):
            flag = "ok" if med < TARGET_MS else "OVER"
            ok = ok and med < TARGET_MS
        print(f"{name:40} {med:8.1f} {low:8.1f} {cpu:8.1f}  {flag}")
    print(f"\ntarget: every lamina command's median < {TARGET_MS:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
