"""Rootless stores: an unprivileged user gets vfs (with a warning); in a user namespace the
kernel overlayfs works with ``userxattr`` and lamina's whiteouts/opaque markers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_root

NOBODY = 65534
TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"

SCRIPT = """
    import json, os, sys
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from lamina.testing.images import build_image
    from lamina.store import Store
    from lamina.testing.layers import directory, file, opaque_in, whiteout_of
    d = Path(sys.argv[1])
    img = build_image(d / "img", [
        [directory("etc"), file("etc/a", b"a"), file("etc/b", b"b"), directory("usr"),
         file("usr/x", b"x")],
        [directory("etc"), whiteout_of("etc/a"), directory("usr"), opaque_in("usr"),
         file("usr/y", b"y")],
    ])
    s = Store(d / "root")
    s.put_image(img, ["x"])
    dirs = s.layer_dirs(s.list_images()[0].top_layer)
    tree = dirs.upper
    if not s.backend.copies:
        for n in ("upper", "work", "merged"):
            (d / n).mkdir()
        s.backend.mount([dirs.upper, *dirs.lower_links], d / "upper", d / "work", d / "merged")
        tree = d / "merged"
    try:
        seen = {p: sorted(os.listdir(tree / p)) for p in ("", "etc", "usr")}
    finally:
        s.backend.unmount(d / "merged")
    problems = s.check()
    s.remove_image("x")
    print(json.dumps({"driver": s.driver, "tree": seen, "problems": problems,
                      "left": sorted(os.listdir(s.layout.overlay2))}))
"""


def _interpreter() -> list[str] | None:
    """A python that user nobody can run with lamina and its deps importable."""
    site = sysconfig.get_paths()["purelib"]
    env_path = f"{SRC}:{site}"
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
    for exe in candidates:
        probe = subprocess.run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                "env",
                f"PYTHONPATH={env_path}",
                exe,
                "-c",
                "import lamina, isal, zstandard",
            ],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return ["env", f"PYTHONPATH={env_path}", exe]
    return None


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lamina-rootless-"))
    os.chown(d, NOBODY, NOBODY)
    yield d
    subprocess.run(["umount", "-R", "-l", str(d / "merged")], capture_output=True, check=False)
    shutil.rmtree(d, ignore_errors=True)


def run_as_nobody(directory: Path, *, userns: bool) -> dict[str, object]:
    python = _interpreter()
    assert python is not None, "no python interpreter usable by user nobody"
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if userns:
        cmd += ["unshare", "--user", "--map-root-user", "--mount"]
    cmd += [*python, "-c", textwrap.dedent(SCRIPT), str(directory), str(TESTS)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        check=False,
        timeout=300,
        env={**os.environ, "HOME": str(directory)},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    import json

    out: dict[str, object] = json.loads(proc.stdout.decode().splitlines()[-1])
    out["stderr"] = proc.stderr.decode()
    return out


EXPECTED = {"": ["etc", "usr"], "etc": ["b"], "usr": ["y"]}


def test_unprivileged_user_falls_back_to_vfs(nobody_dir: Path) -> None:
    out = run_as_nobody(nobody_dir, userns=False)
    assert out["driver"] == "vfs" and "using the vfs driver" in str(out["stderr"])
    assert out["tree"] == EXPECTED and out["problems"] == [] and out["left"] == ["l"]


@pytest.mark.needs_overlay
def test_user_namespace_uses_overlay_with_userxattr(nobody_dir: Path) -> None:
    out = run_as_nobody(nobody_dir, userns=True)
    assert out["driver"] == "overlay2"
    assert out["tree"] == EXPECTED and out["problems"] == [] and out["left"] == ["l"]
