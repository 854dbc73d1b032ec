"""TLS settings for a registry host, as Docker and podman configure them.

Trust = the system CAs plus every ``*.crt`` in ``<certs dir>/<host[:port]>/`` (Docker's
``/etc/docker/certs.d``, containers' ``/etc/containers/certs.d``, and the user's
``~/.config/containers/certs.d`` first, as containers/image does: :func:`certs_dirs_for`);
a ``NAME.cert`` with a ``NAME.key`` beside it is a client certificate. ``verify=False`` turns
verification off entirely (``--tls-verify=false``). The directories are parameters; nothing
reads the environment.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from lamina.errors import RegistryError

DEFAULT_CERTS_DIRS: tuple[Path, ...] = (
    Path("/etc/docker/certs.d"),
    Path("/etc/containers/certs.d"),
)


def certs_dirs_for(home: Path | None) -> tuple[Path, ...]:
    """The certs.d directories for a user whose home is ``home`` (None: the system ones only):
    ``~/.config/containers/certs.d``, then :data:`DEFAULT_CERTS_DIRS`."""
    if home is None:
        return DEFAULT_CERTS_DIRS
    return (home / ".config" / "containers" / "certs.d", *DEFAULT_CERTS_DIRS)


def ssl_context(
    host: str, *, verify: bool = True, certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS
) -> ssl.SSLContext:
    """A client SSL context for ``host`` (``name[:port]``); raises RegistryError on bad files."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()
    for base in certs_dirs:
        directory = Path(base) / host
        if not directory.is_dir():
            continue
        try:
            for ca in sorted(directory.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(ca))
            for cert in sorted(directory.glob("*.cert")):
                key = cert.with_suffix(".key")
                if not key.exists():
                    raise RegistryError(f"tls: client certificate {cert} has no {key.name}")
                ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            raise RegistryError(f"tls: loading certificates from {directory}: {exc}") from None
    return ctx
