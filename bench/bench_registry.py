"""Benchmark: `lamina push` / `lamina pull` against skopeo (+umoci) and buildah, one run.

Workload (issue 5): one image whose layer holds 20,000 small files in nested directories and one
200 MiB random file, pushed to and pulled from Debian's docker-registry on 127.0.0.1. Every
measured command runs under GNU time (wall time, peak RSS) against a *fresh* registry (new
port, empty storage), so no tool can skip uploads through an existing blob or a blob-info cache.

Rows (lower ratio is better):

- push, gzip cached: lamina pushes an image whose gzip blob is in its store, vs ``skopeo copy
  oci:LAYOUT docker://`` (a gzip layout) and ``buildah push`` (buildah keeps layers
  uncompressed and gzips them on every push); target <= 0.8x buildah.
- push, first (gzip): lamina pushes a freshly imported plain-tar layer, compressing it (as
  buildah does every time), vs buildah push.
- pull: ``lamina pull docker://`` (download + verify + extract into the store) vs ``skopeo copy
  docker:// oci:DIR`` + ``umoci unpack`` (times added); target <= 1.0x.

Usage: ``python bench/bench_registry.py [--files N] [--big-mib M] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_store import make_rootfs  # noqa: E402

from lamina.testing.registry import run_registry  # noqa: E402

LAMINA = [str(ROOT / ".venv" / "bin" / "lamina")]
#: (wall seconds, peak RSS KiB, CPU seconds user+sys)
Result = tuple[float, int, float]


def timed(cmd: list[str]) -> Result:
    """Run ``cmd`` under GNU time; (wall s, peak RSS KiB, user+sys CPU s)."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M %U %S", *cmd],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall, rss, user, system = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss), float(user) + float(system)


def rm(*paths: Path) -> None:
    """Remove files and trees (missing ones are fine)."""
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def against_fresh_registry(
    work: Path,
    repeat: int,
    command: Callable[[str], list[str]],
    *,
    before: Callable[[], None] | None = None,
    seed: Callable[[str], None] | None = None,
    after: Callable[[], list[str]] | None = None,
) -> Result:
    """Best wall time of ``repeat`` runs, each against a new registry; ``seed(host)`` fills
    it first, ``after()`` names a second command timed and added (umoci unpack)."""
    runs: list[Result] = []
    for n in range(repeat):
        directory = work / f"registry-{n}"
        rm(directory)
        with run_registry(directory) as server:
            if seed is not None:
                seed(server.host)
            if before is not None:
                before()
            wall, rss, cpu = timed(command(server.host))
            if after is not None:
                extra_wall, extra_rss, extra_cpu = timed(after())
                wall, rss, cpu = wall + extra_wall, max(rss, extra_rss), cpu + extra_cpu
            runs.append((wall, rss, cpu))
        rm(directory)
    return min(r[0] for r in runs), max(r[1] for r in runs), min(r[2] for r in runs)


def quiet(cmd: list[str]) -> None:
    """Run a setup command; fail loudly."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def prepare(work: Path, files: int, big_mib: int) -> tuple[Path, Path]:
    """(plain-tar rootfs archive, gzip OCI layout ``:bench``) of the workload."""
    rootfs = work / "rootfs"
    if not rootfs.exists():
        print(f"bench: making rootfs in {rootfs}", file=sys.stderr)
        make_rootfs(rootfs, files, big_mib)
    tar = work / "rootfs.tar"
    quiet(["tar", "--sort=name", "-C", str(rootfs), "-cf", str(tar), "."])
    scratch = work / "scratch-root"
    rm(scratch)
    quiet([*LAMINA, "--root", str(scratch), "import", str(tar), "bench:latest"])
    plain, gz = work / "layout-plain", work / "layout-gz"
    rm(plain, gz)
    quiet([*LAMINA, "--root", str(scratch), "copy", "bench:latest", f"oci:{plain}:bench"])
    quiet(["skopeo", "copy", "-q", "--dest-compress", f"oci:{plain}:bench", f"oci:{gz}:bench"])
    rm(scratch, plain)
    return tar, gz


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--big-mib", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    for tool in ("skopeo", "umoci"):
        if not shutil.which(tool):
            print(f"bench: {tool} not installed", file=sys.stderr)
            return 1
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lamina-bench-reg-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    tar, gz = prepare(work, args.files, args.big_mib)
    results: list[tuple[str, Result, str, Result]] = []
    r = args.repeat

    def push_to(host: str) -> list[str]:
        return ["--tls-verify=false", f"{host}/bench/app:v1"]

    # lamina, gzip already in the store (pulled from the gzip layout)
    cached = work / "root-cached"
    rm(cached)
    quiet([*LAMINA, "--root", str(cached), "pull", f"oci:{gz}:bench", "--name", "bench"])
    lam_cached = against_fresh_registry(
        work, r, lambda h: [*LAMINA, "--root", str(cached), "push", "-q", "bench", *push_to(h)[1:]]
    )
    # lamina, first push of an imported plain layer (compresses it)
    first = work / "root-first"

    def fresh_import() -> None:
        rm(first)
        quiet([*LAMINA, "--root", str(first), "import", str(tar), "bench:latest"])

    lam_first = against_fresh_registry(
        work,
        r,
        lambda h: [*LAMINA, "--root", str(first), "push", "-q", "bench", *push_to(h)[1:]],
        before=fresh_import,
    )
    skopeo_push = against_fresh_registry(
        work,
        r,
        lambda h: ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{gz}:bench",
                   f"docker://{h}/bench/app:v1"],
    )  # fmt: skip
    results.append(("push, gzip cached", lam_cached, "skopeo copy oci:->docker://", skopeo_push))
    if shutil.which("buildah"):
        storage = work / "buildah"
        bud = ["buildah", "--storage-driver", "vfs", "--root", str(storage / "root"),
               "--runroot", str(storage / "run")]  # fmt: skip
        rm(storage)
        pulled_id = subprocess.run(
            [*bud, "pull", "-q", f"oci:{gz}:bench"], check=True, capture_output=True, text=True
        ).stdout.strip()
        buildah = against_fresh_registry(
            work,
            r,
            lambda h: [*bud, "push", "-q", "--tls-verify=false", pulled_id,
                       f"docker://{h}/bench/app:v1"],
        )  # fmt: skip
        results.append(("push, gzip cached", lam_cached, "buildah push", buildah))
        results.append(("push, first (lamina gzips)", lam_first, "buildah push", buildah))
        rm(storage)
    else:
        results.append(("push, first (lamina gzips)", lam_first, "skopeo copy", skopeo_push))

    def seed(host: str) -> None:
        quiet(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{gz}:bench",
               f"docker://{host}/bench/app:v1"])  # fmt: skip

    pulled = work / "root-pull"
    lam_pull = against_fresh_registry(
        work,
        r,
        lambda h: [*LAMINA, "--root", str(pulled), "pull", f"{h}/bench/app:v1"],
        seed=seed,
        before=lambda: rm(pulled),
    )
    layout, bundle = work / "pulled-layout", work / "bundle"
    peer_pull = against_fresh_registry(
        work,
        r,
        lambda h: ["skopeo", "copy", "-q", "--src-tls-verify=false",
                   f"docker://{h}/bench/app:v1", f"oci:{layout}:bench"],
        seed=seed,
        before=lambda: rm(layout, bundle),
        after=lambda: ["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)],
    )  # fmt: skip
    results.append(("pull (extract)", lam_pull, "skopeo copy + umoci unpack", peer_pull))
    rm(pulled, layout, bundle, cached, first)

    print(
        f"\n{'workload':27} {'peer':27} {'lamina s':>8} {'peer s':>7} {'ratio':>5}"
        f" {'CPU ratio':>9} {'RSS':>8}"
    )
    worst = 0
    for name, (ot, orss, oc), peer, (pt, _, pc) in results:
        worst = max(worst, orss)
        print(
            f"{name:27} {peer:27} {ot:8.2f} {pt:7.2f} {ot / pt:5.2f} {oc / pc:9.2f}"
            f" {orss / 1024:6.1f}MB"
        )
    print("(wall: best run; CPU: user+sys, best run; RSS: worst run)")
    print(f"\npeak RSS of lamina: {worst / 1024:.1f} MB (target <= 80 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
