"""``lamina build`` on a real Debian base: ``RUN apt-get update && apt-get install -y curl``.

The base is a bookworm minbase rootfs made by mmdebstrap from the Debian mirror apt uses here
and cached between runs (:mod:`lamina.testing.debian`); the build's RUN reaches the same
mirror over the host network (the builder's default). CI installs mmdebstrap and reaches the
mirror, so there this test must run: it fails instead of skipping when ``CI`` is set. With
the cache warm it takes about a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lamina.testing import debian
from lamina.testing.capabilities import mount_points_under
from lamina.testing.cli import run_cli
from lamina.testing.corpus import export_tree, manifest_by_path

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_runtime]

DOCKERFILE = """\
FROM debian:bookworm
RUN apt-get update && apt-get install -y curl
CMD ["curl", "--version"]
"""
#: files the build provides to RUN that must never leak into the layer
PROVIDED = ("etc/hosts", "etc/resolv.conf", "etc/hostname")


@pytest.fixture(scope="module")
def debian_tar() -> Path:
    reason = debian.missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to make the Debian base: {reason}")
        pytest.skip(reason)
    return debian.debian_minbase_tar()


def test_apt_get_install_curl(debian_tar: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    debian.import_debian(root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    res = run_cli(root, "build", "--progress", "plain", "-t", "deb-curl", str(ctx), timeout=600)
    assert "apt-get install -y curl" in res.err + res.out
    [data] = json.loads(run_cli(root, "inspect", "deb-curl").out)
    assert data["Config"]["Cmd"] == ["curl", "--version"]
    assert len(data["RootFS"]["Layers"]) == 2
    tree = export_tree(root, "deb-curl", tmp_path / "tree")
    rows = manifest_by_path(tree, mtimes=False, xattrs=False)
    assert rows["usr/bin/curl"][1:3] == ("f", 0o755)
    # The installed curl runs (no network needed for --version).
    out = subprocess.run(
        ["chroot", str(tree), "/usr/bin/curl", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("curl ")
    # What RUN was given (hosts, resolv.conf, hostname) stays the base's.
    base = tmp_path / "base"
    base.mkdir()
    subprocess.run(["tar", "--numeric-owner", "-C", str(base), "-xpf", str(debian_tar)], check=True)
    base_rows = manifest_by_path(base, mtimes=False, xattrs=False)
    for path in PROVIDED:
        assert rows.get(path) == base_rows.get(path), path
    assert mount_points_under(tmp_path) == []
    assert run_cli(root, "system", "check").out.strip() == "store ok"
