"""Benchmark: `lamina save` / `lamina load` against skopeo and umoci, side by side, one run.

Workload (issue 2): one image whose layer holds 20,000 small files in nested directories and
one 200 MiB random file. Every command runs under GNU time for wall time and peak RSS; the
report gives lamina/peer ratios (lower is better; target <= 1.0) and lamina's peak RSS
(target <= 80 MB). Runs are interleaved (lamina, peer, lamina, peer, ...) and the best of
``--repeat`` counts; each run's leftovers are removed and synced *before* the next is timed.

``save``: lamina and skopeo each write their own archive from the same image. ``load``: both
read the archive lamina saved. lamina's load extracts every layer into the store, so the
target's peer is ``skopeo copy ARCHIVE oci:`` *plus* ``umoci unpack`` (copy and extract, as
lamina does); the copy-only ratio is printed too. Usage:
``python bench/bench_store.py [--files N] [--big-mib M] [--repeat R] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAMINA = [str(ROOT / ".venv" / "bin" / "lamina")]


def make_rootfs(dest: Path, files: int, big_mib: int) -> None:
    """20,000 x ~1 KiB files in a 3-level tree plus one big random file."""
    rnd = os.urandom(1 << 20)
    for i in range(files):
        d = dest / f"d{i % 20}" / f"e{(i // 20) % 50}"
        d.mkdir(parents=True, exist_ok=True)
        off = (i * 1031) % ((1 << 20) - 2048)
        (d / f"f{i}.txt").write_bytes(rnd[off : off + 1024])
    with (dest / "big.bin").open("wb") as f:
        for _ in range(big_mib):
            f.write(os.urandom(1 << 20))


def timed(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in KiB)."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *cmd],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss)


Step = tuple[list[str], Callable[[], None]]  # a command and what to clean up before it


def clean(*paths: Path) -> Callable[[], None]:
    """Remove ``paths``, then sync, so deleting the last run's files is not timed."""

    def go() -> None:
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        os.sync()

    return go


def run_steps(steps: list[Step]) -> tuple[float, int]:
    """Run ``steps`` in order; (summed wall seconds, peak RSS in KiB)."""
    total, rss = 0.0, 0
    for cmd, before in steps:
        before()
        t, r = timed(cmd)
        total, rss = total + t, max(rss, r)
    return total, rss


def pair(ours: list[Step], peers: list[list[Step]], repeat: int) -> list[tuple[float, int]]:
    """Best of ``repeat`` for lamina and each peer, runs interleaved (load hits all alike)."""
    runs: list[list[tuple[float, int]]] = [[] for _ in range(1 + len(peers))]
    for _ in range(repeat):
        for i, steps in enumerate([ours, *peers]):
            runs[i].append(run_steps(steps))
    return [(min(r[0] for r in rs), max(r[1] for r in rs)) for rs in runs]


Result = tuple[str, tuple[float, int], tuple[float, int]]


def bench_archives(work: Path, lam: list[str], layout: Path, repeat: int) -> list[Result]:
    """save and load, each archive format; load reads the archive lamina saved."""
    results: list[Result] = []
    dst, bundle, load_root = work / "skopeo-dst", work / "bundle", work / "load-root"
    for fmt in ("docker-archive", "oci-archive"):
        ours_out, peer_out = work / f"lamina.{fmt}.tar", work / f"skopeo.{fmt}.tar"
        save = [*lam, "save", "-o", str(ours_out), "--format", fmt, "bench"]
        copy = ["skopeo", "copy", "-q", f"oci:{layout}:bench", f"{fmt}:{peer_out}"]
        ours, peer = pair([(save, clean(ours_out))], [[(copy, clean(peer_out))]], repeat)
        results.append((f"save {fmt} vs skopeo copy oci: {fmt}:", ours, peer))
        if not ours_out.exists():  # the last run removed nothing after itself; be explicit
            raise SystemExit(f"bench: {ours_out} missing")
        load = [*LAMINA, "--root", str(load_root), "load", "-i", str(ours_out)]
        copy_only = ["skopeo", "copy", "-q", f"{fmt}:{ours_out}", f"oci:{dst}:x"]
        unpack = ["umoci", "unpack", "--image", f"{dst}:x", str(bundle)]
        ours, peer_copy, peer_both = pair(
            [(load, clean(load_root))],
            [[(copy_only, clean(dst))], [(copy_only, clean(dst, bundle)), (unpack, clean())]],
            repeat,
        )
        results.append((f"load {fmt} vs skopeo copy {fmt}: oci: (copy only)", ours, peer_copy))
        results.append((f"load {fmt} vs skopeo copy + umoci unpack", ours, peer_both))
    return results


def compile_sources() -> None:
    """Byte-compile src as ``make compile`` does: timed runs must not compile changed sources
    (PYTHONDONTWRITEBYTECODE=1 on these machines would make every run pay for it)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "src")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--big-mib", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    for tool in ("skopeo", "umoci"):
        if not shutil.which(tool):
            print(f"bench: {tool} not installed (make deps)", file=sys.stderr)
            return 1
    compile_sources()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lamina-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    env_root = work / "root"
    rootfs = work / "rootfs"
    if not rootfs.exists():
        print(f"bench: making rootfs in {rootfs}", file=sys.stderr)
        make_rootfs(rootfs, args.files, args.big_mib)
    tar = work / "rootfs.tar"
    subprocess.run(["tar", "--sort=name", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    lam = [*LAMINA, "--root", str(env_root)]
    shutil.rmtree(env_root, ignore_errors=True)
    subprocess.run([*lam, "import", str(tar), "bench:latest"], check=True)
    # Peers start from what lamina wrote, so both sides read the same bytes.
    layout = work / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    subprocess.run([*lam, "copy", "bench:latest", f"oci:{layout}:bench"], check=True)

    results = bench_archives(work, lam, layout, args.repeat)
    bundle, load_root = work / "bundle", work / "load-root"
    pull = [*LAMINA, "--root", str(load_root), "pull", f"oci:{layout}:bench"]
    unpack = ["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)]
    ours, peer = pair([(pull, clean(load_root))], [[(unpack, clean(bundle))]], args.repeat)
    results.append(("pull oci: (extracts) vs umoci unpack", ours, peer))
    for p in (bundle, load_root, work / "skopeo-dst"):
        clean(p)()

    load = os.getloadavg()
    print(f"\nload average (1, 5, 15 min) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'workload':60} {'lamina s':>9} {'peer s':>9} {'ratio':>6} {'lamina RSS':>11}")
    worst_rss = 0
    for name, (ot, orss), (pt, _) in results:
        worst_rss = max(worst_rss, orss)
        print(f"{name:60} {ot:9.2f} {pt:9.2f} {ot / pt:6.2f} {orss / 1024:9.1f}MB")
    print(f"\npeak RSS of lamina: {worst_rss / 1024:.1f} MB (target <= 80 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
