"""Run buildah (a reference builder) in a private store, and read back what it built.

:class:`Buildah` wraps ``buildah --root R --runroot R/run --storage-driver D``: every image,
container and mount lives under ``R``, nothing touches the host's ``/var/lib/containers``.
Base images come in from lamina's ``oci:`` output (:meth:`Buildah.load_oci`), so no registry
is involved. Builds never pull (``--pull=never``). :meth:`Buildah.close` removes containers,
images and any mount left under ``R`` (idempotent). Never imported by lamina itself.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lamina.testing.capabilities import mount_points_under
from lamina.testing.command import Result, run_command


def available() -> bool:
    """True when the ``buildah`` binary is installed."""
    return shutil.which("buildah") is not None


class Buildah:
    """buildah over a private store at ``root`` (created on first use).

    ``driver`` is ``vfs`` (what the differential tests use: plain directories) or ``overlay``
    (what the benchmark uses). ``isolation`` is passed to every ``bud``.
    """

    def __init__(self, root: Path, *, driver: str = "vfs", isolation: str = "chroot") -> None:
        self.root = root
        self.driver = driver
        self.isolation = isolation
        self.base = [
            "buildah",
            "--root",
            str(root / "storage"),
            "--runroot",
            str(root / "run"),
            "--storage-driver",
            driver,
        ]

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> Result:
        """Run one buildah command; with ``check`` a failure raises with its stderr."""
        name = f"buildah {' '.join(args)}"
        return run_command([*self.base, *args], check=check, timeout=timeout, name=name)

    def load_oci(self, layout: Path, ref: str, name: str) -> str:
        """Pull ``oci:LAYOUT:REF`` into the store and tag it ``name``; returns the image id."""
        self.run("pull", "-q", f"oci:{layout}:{ref}")
        image_id = self.run("images", "-q", "--no-trunc", f"oci:{layout}:{ref}", check=False)
        ident = image_id.out.split()[0] if image_id.out.strip() else ""
        if not ident:
            ident = self.run("images", "-q", "--no-trunc").out.split()[0]
        self.run("tag", ident, name)
        return ident

    def bud(
        self, context: Path, flags: Sequence[str], *, tag: str, layers: bool = False,
        check: bool = True,
    ) -> Result:  # fmt: skip
        """``buildah bud`` of ``context`` tagged ``tag``.

        Never pulls, adds no ``io.buildah.version`` label, and writes Docker's image format
        (the OCI config has no Healthcheck, OnBuild, Shell: buildah drops them there).
        """
        return self.run(
            "bud",
            "--isolation",
            self.isolation,
            "--pull=never",
            "--identity-label=false",
            "--format",
            "docker",
            f"--layers={'true' if layers else 'false'}",
            *flags,
            "-t",
            tag,
            str(context),
            check=check,
        )

    def inspect(self, tag: str) -> dict[str, Any]:
        """``buildah inspect --type image`` as a dict."""
        data = json.loads(self.run("inspect", "--type", "image", tag).out)
        assert isinstance(data, dict)
        return data

    def config(self, tag: str) -> dict[str, Any]:
        """The Docker image config's ``config`` object of ``tag``."""
        cfg = self.inspect(tag)["Docker"].get("config") or {}
        assert isinstance(cfg, dict)
        return cfg

    @contextlib.contextmanager
    def rootfs(self, tag: str) -> Iterator[Path]:
        """The flattened filesystem of ``tag`` (a working container's mount), removed after."""
        ctr = self.run("from", "--pull=never", tag).out.strip().splitlines()[-1]
        try:
            yield Path(self.run("mount", ctr).out.strip())
        finally:
            self.run("umount", ctr, check=False)
            self.run("rm", ctr, check=False)

    def close(self) -> None:
        """Remove every container and image, unmount leftovers, delete the store. Idempotent."""
        if not self.root.exists():
            return
        self.run("rm", "--all", check=False)
        self.run("rmi", "--all", "--force", check=False)
        for point in reversed(mount_points_under(self.root)):
            run_command(["umount", "-l", point], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
