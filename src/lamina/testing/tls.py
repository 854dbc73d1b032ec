"""A throw-away certificate authority for HTTPS tests (``openssl`` CLI), and a loopback name.

:class:`CertAuthority` makes a CA (EC P-256, valid two days) in a directory the caller owns, issues
server certificates for :func:`loopback_name` (and ``127.0.0.1``), and installs its CA
certificate the way Docker and podman look for it: ``<certs.d>/<host[:port]>/ca.crt``.

:func:`loopback_name` is this machine's host name when it resolves to loopback addresses
only (``/etc/hosts`` maps it to 127.0.0.1 on Debian): a name that is not ``localhost`` nor an
IP literal, so registry clients treat it like any remote registry (HTTPS, verified), while
every byte stays on this machine. Never imported by the lamina package itself.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.testing.command import run_command

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def loopback_name() -> str:
    """A host name (not ``localhost``, not an IP) that resolves to loopback addresses only.

    Raises RuntimeError when this machine has none (its /etc/hosts does not map its name).
    """
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError as exc:
        raise RuntimeError(f"host name {name!r} does not resolve: {exc}") from exc
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if name.lower().endswith("localhost") or not addresses:
        raise RuntimeError(f"host name {name!r} is a localhost alias")
    if not all(a.is_loopback for a in addresses):
        raise RuntimeError(
            f"host name {name!r} resolves to non-loopback {sorted(map(str, addresses))}"
        )
    return name


def _openssl(*args: str) -> None:
    run_command(["openssl", *args])


@lazy_dataclass
class CertAuthority:
    """A CA under ``directory`` (``ca.crt``, ``ca.key``); ``name`` is the server name."""

    directory: Path
    name: str

    @classmethod
    def create(cls, directory: Path, name: str | None = None) -> CertAuthority:
        """Make a new CA in ``directory`` (created) for ``name`` (default :func:`loopback_name`)."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory, name or loopback_name())
        _openssl(
            "req", "-x509", *_EC, "-days", "2", "-subj", "/CN=lamina test CA",
            "-keyout", str(ca.ca_key), "-out", str(ca.ca_cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return ca

    @property
    def ca_cert(self) -> Path:
        """The CA certificate (PEM)."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (PEM)."""
        return self.directory / "ca.key"

    def server_cert(self, directory: Path) -> tuple[Path, Path]:
        """(certificate, key) for ``name`` and 127.0.0.1, signed by this CA, under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key, csr = (
            directory / "server.crt",
            directory / "server.key",
            directory / "server.csr",
        )
        ext = directory / "server.ext"
        ext.write_text(
            f"subjectAltName=DNS:{self.name},IP:127.0.0.1\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        _openssl("req", *_EC, "-subj", f"/CN={self.name}", "-keyout", str(key), "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return cert, key

    def install(self, certs_d: Path, host: str) -> Path:
        """Copy the CA certificate to ``certs_d/host/ca.crt`` (Docker's layout); returns it."""
        target = certs_d / host / "ca.crt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.ca_cert, target)
        return target
