"""Start-up guard (issue 2: the CLI starts in under 100 ms): what each command imports.

Timing is flaky on shared CI machines, so these tests assert the *module set* that
``python -X importtime -m lamina ...`` reports, which is what the start-up time follows:
``--version`` and ``--help`` load only click and the entry module; ``images`` reads the
store's read-only catalog; ``run`` loads the store and the runtime but never the registry
client, the builder, rich or the compression codecs. ``bench/bench_cli.py`` measures the wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: never needed to start, list images or run a container
HEAVY = {"httpx", "rich", "isal", "zstandard", "sqlite3", "importlib.metadata"}
#: lamina packages that only some commands need
UNUSED = {
    "lamina.registry",
    "lamina.build",
    "lamina.dockerfile",
    "lamina.transports",
    "lamina.snapshot",
}
#: all of lamina that --version and --help may load
ENTRY = {
    "lamina",
    "lamina.__main__",
    "lamina.cli",
    "lamina.cli.entry",
    "lamina.cli.main",
    "lamina.errors",
}


def imported(*args: str) -> set[str]:
    """Modules that ``python -m lamina ARGS`` imports (its exit status is not checked)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMINA_")}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lamina", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "lamina.cli.main" in names, proc.stderr[-2000:]
    return names


def _packages(names: set[str]) -> set[str]:
    """Each name and its parent packages (``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``)."""
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return out


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_load_only_click_and_the_entry_module(args: list[str]) -> None:
    names = imported(*args)
    assert "click" in names
    assert {n for n in names if n.split(".")[0] == "lamina"} <= ENTRY
    assert not names & (HEAVY | {"logging", "pathlib", "json", "subprocess"})


@pytest.mark.needs_root
def test_images_reads_the_catalog_only(tmp_path: Path) -> None:
    """``images`` lists through the read-only catalog: no blob store, union-fs backend (ctypes,
    subprocess), container store or runtime is loaded, nor ``logging`` (nothing logs), and an
    absent store is not created."""
    root = tmp_path / "store"
    names = imported("--root", str(root), "images")
    assert "lamina.store.catalog" in names
    light = {"lamina.store.store", "lamina.blobstore", "lamina.unionfs", "lamina.runtime"}
    assert not _packages(names) & (HEAVY | UNUSED | light | {"ctypes", "subprocess", "logging"})
    assert not root.exists()


@pytest.mark.needs_root
def test_run_loads_the_runtime_but_not_the_registry_or_builder(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    names = imported(
        "--root", root, "--storage-driver", "vfs", "run", "--pull=never", "no-such-image", "true"
    )  # --pull=never: a missing image would otherwise be fetched from docker.io
    assert "lamina.runtime" in names
    assert not _packages(names) & (HEAVY | UNUSED)
    # socket is for -t and network namespaces; container ids come from os.urandom, not
    # secrets (which loads hmac and OpenSSL); nothing logs, so logging stays unloaded; the
    # console module (termios, a pump thread) is for -t only
    assert not names & {"socket", "secrets", "hmac", "logging", "lamina.runtime.console"}


def test_version_is_the_package_version() -> None:
    """``--version`` reads ``lamina.__version__`` (no importlib.metadata): keep it in sync."""
    import tomllib

    from lamina import __version__

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert __version__ == declared
    proc = subprocess.run(
        [sys.executable, "-m", "lamina", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"lamina, version {__version__}"
