"""Streaming: a large layer goes through every transport with bounded memory.

A child process builds a 128 MB layer (random-ish, so compression cannot shrink the work),
copies it oci -> docker-archive (decompressing) -> oci-archive -> oci, validates the result and
reports its peak RSS, which must stay under the 80 MB budget whatever the layer size.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import hashlib, sys, tarfile
    from pathlib import Path
    from lamina import transports
    from lamina._internal.compression import open_compressor
    from lamina.image.memory import MemoryImage, file_layer
    from lamina.image.validate import validate_image
    from lamina.oci.config import ImageConfig

    d = Path(sys.argv[1])
    size = int(sys.argv[2])

    class Noise:
        def __init__(self, n):
            self.left, self.counter = n, 0
        def read(self, n=-1):
            n = self.left if n < 0 else min(n, self.left)
            out = bytearray()
            while len(out) < n:
                self.counter += 1
                out += hashlib.sha256(self.counter.to_bytes(8, "little")).digest() * 64
            self.left -= n
            return bytes(out[:n])

    with open(d / "layer.tar.gz", "wb") as raw:
        gz = open_compressor(raw, "gzip")
        with tarfile.open(fileobj=gz, mode="w|") as tar:
            info = tarfile.TarInfo("big")
            info.size = size
            tar.addfile(info, Noise(size))
        gz.close()
    layer = file_layer(d / "layer.tar.gz")
    img = MemoryImage(ImageConfig(diff_ids=(layer.diff_id(),)), [layer])
    current = img
    for text in (f"oci:{d}/a:x", f"docker-archive:{d}/b.tar:x:1", f"oci-archive:{d}/c.tar:x",
                 f"oci:{d}/e:x"):
        ref = transports.parse(text)
        transports.copy(current, ref)
        current = ref.open_image()
    validate_image(current)
    assert current.config().diff_ids == img.config().diff_ids
    from lamina.testing.cli import peak_rss_bytes
    print(peak_rss_bytes() >> 20)
    """
)


def test_large_layer_streams_with_bounded_memory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(128 << 20)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.strip().splitlines()[-1])
    assert peak_mb < 80, f"peak RSS {peak_mb} MB"
