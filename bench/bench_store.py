"""Benchmark: `lamina save` / `lamina load` against skopeo and umoci, side by side, one run.

Workload (issue 2): one image whose layer holds 20,000 small files in nested directories and
one 200 MiB random file. Every command runs under GNU time for wall time and peak RSS; the
report gives lamina/peer ratios (lower is better; target <= 1.0) and lamina's peak RSS
(target <= 80 MB). Usage: ``python bench/bench_store.py [--files N] [--big-mib M] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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


def timed(cmd: list[str], **kw: object) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in KiB)."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *cmd],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[arg-type]
    )
    wall, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss)


def best(cmd: list[str], repeat: int, before: object = None) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs (and the max RSS seen)."""
    runs = []
    for _ in range(repeat):
        if callable(before):
            before()
        runs.append(timed(cmd))
    return min(r[0] for r in runs), max(r[1] for r in runs)


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

    results: list[tuple[str, tuple[float, int], tuple[float, int]]] = []

    def rm(*paths: Path) -> object:
        def go() -> None:
            for p in paths:
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()

        return go

    for fmt in ("docker-archive", "oci-archive"):
        out = work / f"save.{fmt}.tar"
        ours = best([*lam, "save", "-o", str(out), "--format", fmt, "bench"], args.repeat, rm(out))
        peer = best(
            ["skopeo", "copy", "-q", f"oci:{layout}:bench", f"{fmt}:{out}"], args.repeat, rm(out)
        )
        results.append((f"save {fmt} vs skopeo copy oci:->{fmt}:", ours, peer))
        load_root = work / "load-root"
        ours = best(
            [*LAMINA, "--root", str(load_root), "load", "-i", str(out)], args.repeat, rm(load_root)
        )
        dst = work / "skopeo-dst"
        peer = best(["skopeo", "copy", "-q", f"{fmt}:{out}", f"oci:{dst}:x"], args.repeat, rm(dst))
        results.append((f"load {fmt} vs skopeo copy {fmt}:->oci:", ours, peer))
    bundle = work / "bundle"
    load_root = work / "load-root"
    ours = best(
        [*LAMINA, "--root", str(load_root), "pull", f"oci:{layout}:bench"],
        args.repeat,
        rm(load_root),
    )
    peer = best(
        ["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)], args.repeat, rm(bundle)
    )
    results.append(("pull oci: (extract) vs umoci unpack", ours, peer))

    print(f"\n{'workload':48} {'lamina s':>9} {'peer s':>9} {'ratio':>6} {'lamina RSS':>11}")
    worst_rss = 0
    for name, (ot, orss), (pt, _) in results:
        worst_rss = max(worst_rss, orss)
        print(f"{name:48} {ot:9.2f} {pt:9.2f} {ot / pt:6.2f} {orss / 1024:9.1f}MB")
    print(f"\npeak RSS of lamina: {worst_rss / 1024:.1f} MB (target <= 80 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
