"""Benchmark: ``run --rm IMAGE true`` latency, lamina vs podman, on the same busybox rootfs.

Usage: ``python bench/bench_run.py [-n 20]``. Builds the busybox rootfs with
``scripts/make-busybox-rootfs.sh``, imports it into a fresh lamina store (overlay2) and a fresh
podman store (``--root``/``--runroot`` in a temp dir, ``--storage-driver overlay``,
``--cgroup-manager cgroupfs``, ``--runtime runc`` as lamina, ``--ulimit`` nofile/nproc
1024, since runc refuses podman's defaults above the hard limit here,
``--network none`` on both sides), warms each once, then runs each ``-n`` times
alternately and prints the medians and the ratio lamina/podman.

It also prints the floor under lamina's number, measured the same way: the interpreter and
CLI start-up alone (``lamina --version``) and ``runc run`` of a bundle on the same rootfs
alone (the runtime's own cost, with no store, overlay or bookkeeping around it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from bench_store import compile_sources  # noqa: E402


def timed(argv: list[str]) -> float:
    """Wall time of one run of ``argv`` (must exit 0)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def runc_alone(tmp: Path, tar: Path) -> list[str]:
    """The argv of a bare ``runc run`` of ``true`` on the busybox rootfs (bundle made here)."""
    from lamina.runtime import ContainerSpec, ProcessSpec, write_bundle

    rootfs = tmp / "rootfs"
    rootfs.mkdir()
    subprocess.run(["tar", "-xf", str(tar), "-C", str(rootfs)], check=True)
    spec = ContainerSpec(
        rootfs=rootfs, process=ProcessSpec(args=("/bin/true",), env=("PATH=/bin",))
    )
    write_bundle(tmp / "bundle", spec, container_id="bench-floor")
    runc = shutil.which("runc") or "/usr/sbin/runc"
    return [
        runc,
        "--root",
        str(tmp / "runc"),
        "run",
        "--bundle",
        str(tmp / "bundle"),
        "bench-floor",
    ]


def main() -> None:
    """Run the benchmark and print the result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    compile_sources()
    tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
    try:
        tar = tmp / "busybox.tar"
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0"}
        subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs.sh"), str(tar)], check=True,
                       env=env)  # fmt: skip
        lamina = [sys.executable, "-m", "lamina", "--root", str(tmp / "lamina")]
        subprocess.run([*lamina, "import", str(tar), "bench"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        podman = ["podman", "--root", str(tmp / "podman"), "--runroot", str(tmp / "podman-run"),
                  "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                  "--events-backend", "none", "--runtime", "runc"]  # fmt: skip
        subprocess.run([*podman, "import", str(tar), "localhost/bench"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        lam_cmd = [*lamina, "run", "--rm", "--network", "none", "bench", "true"]
        limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        pod_cmd = [*podman, "run", "--rm", "--network", "none", *limits, "localhost/bench", "true"]
        version_cmd = [*lamina, "--version"]
        runc_cmd = runc_alone(tmp, tar)
        for cmd in (lam_cmd, pod_cmd, version_cmd, runc_cmd):
            timed(cmd)
        lam, pod, start, runc = [], [], [], []
        for _ in range(args.n):
            lam.append(timed(lam_cmd))
            pod.append(timed(pod_cmd))
            start.append(timed(version_cmd))
            runc.append(timed(runc_cmd))
        lm, pm = statistics.median(lam), statistics.median(pod)
        sm, rm = statistics.median(start), statistics.median(runc)
        print(f"lamina run --rm true: median {lm:.3f}s over {args.n}")
        print(f"podman run --rm true: median {pm:.3f}s over {args.n}")
        print(f"ratio lamina/podman: {lm / pm:.2f}")
        print(f"floor: lamina --version {sm:.3f}s + runc run alone {rm:.3f}s = {sm + rm:.3f}s")
        subprocess.run([*podman, "system", "reset", "-f"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    finally:
        # podman leaves its overlay home mounted (e.g. <tmp>/podman/overlay): unmount every
        # mount under tmp, deepest first, before removing it.
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f if line.split()[1].startswith(f"{tmp}/")]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", point], check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
