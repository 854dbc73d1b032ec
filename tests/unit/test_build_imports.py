"""Latency guard (issue 4): the build verb loads no registry client unless a build uses one.

A build with no push, registry cache or pull must not pay ~0.15 s for httpx, ssl and rich
(the registry client) or for the native runtime; these are imported where they are used.
The module set is asserted, not the time (timing is flaky on shared machines).
"""

from __future__ import annotations

import subprocess
import sys

REGISTRY = {"httpx", "ssl", "rich", "lamina.registry", "lamina.transports.docker"}


def _loaded(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(proc.stdout.split())


def test_the_build_verb_does_not_load_the_registry_client() -> None:
    names = _loaded("import lamina.ops.build, lamina.build.steps, lamina.build.outputs")
    assert "lamina.build.executor" in names
    assert not names & REGISTRY
    # socket and subprocess only for an --ssh agent, RUN or a fallback mount; tarfile only
    # for ADD archives; csv only for --output and RUN --mount (each imported where used)
    assert not names & {"socket", "subprocess", "tarfile", "csv"}


def test_the_build_steps_load_the_runtime_and_layer_writer_only_when_used() -> None:
    names = _loaded("import lamina.ops.build, lamina.build.steps, lamina.build.outputs")
    assert not {n for n in names if n.startswith(("lamina.runtime.", "lamina.snapshot"))} - {
        "lamina.runtime.user"  # USER/--chown name lookup, a small module
    }


def test_selecting_a_runtime_does_not_load_the_native_one() -> None:
    names = _loaded("from lamina.runtime.selection import select_runtime")
    assert "lamina.runtime.oci_runtime" in names
    assert "lamina.runtime.native" not in names


def test_a_run_build_loads_no_archive_commands_blob_staging_or_secrets() -> None:
    # SOURCE_DATE_EPOCH comes from cli.epoch, not the archive commands; reading a local FROM
    # image needs no staging area (transports.files/layout); ids come from os.urandom; the
    # stage pool and the copier's pool (concurrent.futures, which loads logging) are made
    # only when used
    names = _loaded(
        "import lamina.cli.build_cmd, lamina.ops.build, lamina.build.steps,"
        " lamina.build.outputs, lamina.build.steps.run, lamina.transports.local"
    )
    assert not names & {
        "lamina.cli.archive_cmd", "lamina.transports.files", "lamina.transports.layout",
        "secrets", "hmac", "concurrent.futures", "logging",
        # COPY/ADD/WORKDIR steps, the copier, source keys and the stat cache load when used
        "lamina.build.steps.files", "lamina.build.copy", "lamina.build.sourcekey",
        "lamina.build.statcache",
    }  # fmt: skip
