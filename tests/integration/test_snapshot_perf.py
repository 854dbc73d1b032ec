"""The hot path of ``load``: 20,000 small files + one 200 MiB file apply faster than umoci.

Also checks that the apply streams: peak RSS stays far below the layer size.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.testing.layers import Entry, directory, file, write_tar

pytestmark = [pytest.mark.needs_tools, pytest.mark.needs_root]

APPLY = """
import sys, time
from pathlib import Path
from lamina.snapshot.apply import apply_layer
start = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    result = apply_layer(f, Path(sys.argv[2]), mode=sys.argv[3])
elapsed = time.perf_counter() - start
from lamina.testing.cli import peak_rss_bytes
rss = peak_rss_bytes()
print(elapsed, result.entries, result.size, rss)
"""


def _entries() -> Iterator[Entry]:
    for d in range(200):
        yield directory(f"d{d:03}")
        for f in range(100):
            yield file(f"d{d:03}/f{f:03}", b"x" * (f * 37 % 3000))
    yield file("big", (b"0123456789abcdef", 200 << 20))


def _oci_layout(layer: Path, layout: Path) -> None:
    """A one-layer OCI layout for umoci (uncompressed layer, tag ``t``)."""
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)
    h = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    os.link(layer, blobs / h.hexdigest())

    def put(obj: dict[str, object]) -> tuple[str, int]:
        data = json.dumps(obj).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    cfg = put(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{h.hexdigest()}"]},
        }
    )
    man = put({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg[0], "size": cfg[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{h.hexdigest()}", "size": layer.stat().st_size}],
    })  # fmt: skip
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man[0],
        "size": man[1], "annotations": {"org.opencontainers.image.ref.name": "t"}}]}  # fmt: skip
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def test_apply_is_faster_than_umoci_and_streams(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with open(layer, "wb") as out:
        write_tar(_entries(), out)
    _oci_layout(layer, tmp_path / "oci")
    start = time.perf_counter()
    subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path}/oci:t", str(tmp_path / "bundle")],
        check=True,
        capture_output=True,
    )
    umoci = time.perf_counter() - start
    (tmp_path / "ours").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", APPLY, str(layer), str(tmp_path / "ours"), "overlay"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    ours, entries, size, rss = float(out[0]), int(out[1]), int(out[2]), int(out[3])
    assert entries == 20_201 and size == layer.stat().st_size
    assert (tmp_path / "ours/big").stat().st_size == 200 << 20
    assert rss < 80 << 20, f"peak RSS {rss >> 20} MiB"
    assert ours < umoci, f"apply took {ours:.2f}s, umoci unpack {umoci:.2f}s"
