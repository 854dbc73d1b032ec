"""Several lamina processes sharing one store: concurrent puts, crashes (kill -9), recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lamina.blobstore import BlobStore
from lamina.oci.digest import Digest
from lamina.store import Store, chain_ids

TESTS = Path(__file__).resolve().parents[1]

DRIVERS = [
    "vfs",
    pytest.param("overlay2", marks=[pytest.mark.needs_root, pytest.mark.needs_overlay]),
]


def run_children(script: str, args: list[list[str]], timeout: float = 120) -> list[str]:
    """Start one python child per args entry at once; return their stdouts (all must pass)."""
    code = textwrap.dedent(script)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *a],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(TESTS)},
        )
        for a in args
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err.decode()
        outs.append(out.decode())
    return outs


PUT_BLOBS = """
    import sys
    from pathlib import Path
    from lamina.blobstore import BlobStore
    store = BlobStore(Path(sys.argv[1]))
    store.ensure()
    me = sys.argv[2].encode()
    for i in range(30):
        store.put_bytes(b"shared blob %d " % i * 50_000)
        print(store.put_bytes(me * 100_000 + b"%d" % i)[0])
"""


def test_concurrent_blob_puts_from_four_processes(tmp_path: Path) -> None:
    root = tmp_path / "cas"
    outs = run_children(PUT_BLOBS, [[str(root), f"p{i}"] for i in range(4)])
    store = BlobStore(root)
    digests = set(store.iter_digests())
    assert len(digests) == 30 + 4 * 30
    for line in "".join(outs).split():
        assert Digest.parse(line) in digests
    for d in digests:
        store.verify(d)
    assert os.listdir(store.ingest_dir) == []


PUT_IMAGE = """
    import sys
    from pathlib import Path
    from lamina.testing.images import build_image
    from lamina.store import Store
    from lamina.testing.layers import directory, file
    root, driver, tag, work = sys.argv[1:5]
    base = [directory("etc"), file("etc/base", (b"base", 2_000_000))]
    img = build_image(Path(work), [base, [file(tag, tag.encode())]], tag=tag)
    store = Store(Path(root), driver=driver)
    print(store.put_image(img, [tag]))
"""


@pytest.mark.parametrize("driver", DRIVERS)
def test_four_concurrent_loads_sharing_a_base(tmp_path: Path, driver: str) -> None:
    root = tmp_path / "root"
    Store(root, driver=driver)  # create it once so the probe is not raced
    args = [[str(root), driver, f"img{i}", str(tmp_path / f"w{i}")] for i in range(4)]
    outs = run_children(PUT_IMAGE, args)
    store = Store(root)
    assert store.check() == []
    recs = store.list_images()
    assert sorted(n for r in recs for n in r.names) == [
        f"docker.io/library/img{i}:latest" for i in range(4)
    ]
    assert {str(r.digest) for r in recs} == {o.strip() for o in outs}
    bases = {r.layers[0] for r in recs}
    assert len(bases) == 1  # one shared base layer
    layer_dirs = [e for e in os.listdir(store.layout.overlay2) if e != "l"]
    assert len(layer_dirs) == 5 and len(os.listdir(store.layout.links)) == 5
    for i in range(4):
        store.remove_image(f"img{i}")
    assert store.check() == [] and os.listdir(store.layout.links) == []


SLOW_LOAD = """
    import sys
    from pathlib import Path
    from lamina.testing.images import build_image
    from lamina.store import Store
    from lamina.testing.layers import directory, file
    root, driver, work = sys.argv[1:4]
    files = [file(f"big{i}", (bytes([i]) * 997, 8_000_000)) for i in range(40)]
    img = build_image(Path(work), [[directory("data"), *files]], tag="big")
    print("built", flush=True)
    Store(Path(root), driver=driver).put_image(img, ["big"])
    print("done", flush=True)
"""


@pytest.mark.parametrize("driver", DRIVERS)
def test_kill_9_mid_load_then_check_gc_and_retry(tmp_path: Path, driver: str) -> None:
    root = tmp_path / "root"
    store = Store(root, driver=driver)
    work = tmp_path / "work"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_LOAD), str(root), driver, str(work)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"built\n"
    deadline = time.monotonic() + 60
    while not any(e.startswith(".tmp-") for e in os.listdir(store.layout.overlay2)):
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.002)
    time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    problems = store.check()
    assert problems and all(p.startswith("removable: ") for p in problems), problems
    assert store.list_images() == []
    assert store.gc() > 0
    assert store.check() == []
    assert sorted(os.listdir(store.layout.overlay2)) == ["l"]
    # the retry succeeds (same layer files: the image is the same)
    sys.path.insert(0, str(TESTS))
    from lamina.testing.images import build_image
    from lamina.testing.layers import directory, file

    files = [file(f"big{i}", (bytes([i]) * 997, 8_000_000)) for i in range(40)]
    img = build_image(tmp_path / "again", [[directory("data"), *files]], tag="big")
    store.put_image(img, ["big"])
    assert store.check() == []
    top = chain_ids(img.config().diff_ids)[-1]
    assert (store.layer_dirs(top).upper / "big39").stat().st_size == 8_000_000
