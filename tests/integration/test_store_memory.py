"""Loading a big layer streams: the peak RSS of a loading process stays under 80 MB."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

LOAD = """
    import sys
    from pathlib import Path
    from lamina.testing.images import build_image
    from lamina.store import Store
    from lamina.testing.layers import file
    root, work = sys.argv[1:3]
    img = build_image(Path(work), [[file("big", (bytes(range(256)) * 13, 400_000_000))]])
    store = Store(Path(root), driver="vfs")
    store.put_image(img, ["big"])
    with store.get_image("big").layers()[0].open_uncompressed() as f:
        while f.read(1 << 20):
            pass
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve from the (big) parent
    status = Path("/proc/self/status").read_text()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def test_big_layer_load_has_bounded_memory(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOAD), str(tmp_path / "root"), str(tmp_path)],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        timeout=600,
    )
    peak_kib = int(out.stdout.decode().strip())
    assert peak_kib < 80 * 1024, f"peak RSS {peak_kib} KiB"
