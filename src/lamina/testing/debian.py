"""A real Debian base image for tests and benchmarks: ``mmdebstrap --variant=minbase``.

:func:`debian_minbase_tar` makes a bookworm minbase rootfs tarball from the Debian mirror this
machine's apt uses (:func:`mirror_url`, read from ``/etc/apt/sources.list*``), once: the
tarball is cached under :func:`cache_dir` (``$LAMINA_TEST_CACHE``, else
``$XDG_CACHE_HOME/lamina-test`` or ``~/.cache/lamina-test``: outside the work tree, so fresh
clones such as CI's reuse it) and reused while it exists. Creation is atomic (temp file +
rename) and serialised by a lock file, so parallel test workers build it once.
:func:`import_debian` loads it into a lamina store. Needs root, ``mmdebstrap`` (a Debian
package) and the mirror. Never imported by lamina itself.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from lamina._internal.lock import flocked
from lamina.testing.cli import run_cli
from lamina.testing.command import run_command

SUITE = "bookworm"
TARBALL = f"debian-{SUITE}-minbase.tar"
#: what a Debian image's config usually carries
DEBIAN_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
)


def cache_dir() -> Path:
    """``$LAMINA_TEST_CACHE``, else ``$XDG_CACHE_HOME/lamina-test`` (~/.cache), created."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(os.environ.get("LAMINA_TEST_CACHE") or os.path.join(xdg, "lamina-test"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stanzas(text: str) -> list[tuple[list[str], list[str]]]:
    """(uris, suites) of each deb822 stanza or one-line ``deb`` entry in ``text``."""
    found: list[tuple[list[str], list[str]]] = []
    for block in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(URIs|Suites|Types):\s*(.*)$", block, re.M))
        if "deb" in fields.get("Types", "").split() and "URIs" in fields:
            found.append((fields["URIs"].split(), fields.get("Suites", "").split()))
    for line in text.splitlines():
        parts = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
        if len(parts) >= 3 and parts[0] == "deb":
            found.append(([parts[1]], [parts[2]]))
    return found


def mirror_url(etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI apt uses for ``bookworm`` (not the security archive)."""
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        for uris, suites in _stanzas(path.read_text(errors="replace")):
            if SUITE in suites:
                for uri in uris:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
    raise RuntimeError(f"no Debian {SUITE} mirror in {etc_apt}/sources.list*")


def missing() -> str | None:
    """None when a minbase image can be made (or is cached); else the reason it cannot."""
    if (cache_dir() / TARBALL).is_file():
        return None
    if os.geteuid() != 0:
        return "mmdebstrap needs root here"
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap is not installed (apt-get install mmdebstrap)"
    return None


def debian_minbase_tar(*, timeout: float = 900) -> Path:
    """The cached minbase tarball, made by mmdebstrap on first use."""
    out = cache_dir() / TARBALL
    if out.is_file():
        return out
    with flocked(cache_dir() / f".{TARBALL}.lock", timeout=timeout):
        if out.is_file():
            return out
        tmp = out.with_name(f".{TARBALL}.{os.getpid()}.tmp.tar")
        env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
        try:
            run_command(
                ["mmdebstrap", "--quiet", "--variant=minbase", SUITE, str(tmp), mirror_url()],
                env=env,
                timeout=timeout,
            )
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def import_debian(root: Path, name: str = "debian:bookworm") -> str:
    """Import the minbase tarball into the lamina store at ``root``; returns the image id."""
    changes = [arg for change in DEBIAN_CHANGES for arg in ("--change", change)]
    res = run_cli(root, "import", str(debian_minbase_tar()), name, *changes, timeout=600)
    return res.out.strip()
