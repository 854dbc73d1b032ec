"""Transports: where images live, as ``transport:details`` references (containers-transports(5)).

======================  ==========================================================
``oci:DIR[:REF]``       an OCI image layout directory (:mod:`.oci`)
``oci-archive:FILE``    a tar of an OCI layout, ``[:REF]`` (:mod:`.ociarchive`)
``docker-archive:FILE`` ``docker save`` format, ``[:NAME:TAG|:@N]`` (:mod:`.dockerarchive`)
``local:NAME``          the local store; a bare ``NAME`` means the same (:mod:`.local`)
``docker://NAME``       a registry repository, ``NAME[:TAG|@DIGEST]`` (:mod:`.docker`)
======================  ==========================================================

Adding a transport = one module with an :class:`ImageRef` subclass (``parse(details)``,
``details()``, ``open()``, ``destination()``) + one row in :data:`TRANSPORTS` + passing
``tests/conformance/test_transports.py``.

Invariant: ``parse(str(ref)) == ref`` for every ref :func:`parse` returns. A name whose prefix
before the first ``:`` is not a transport is a local-store name (so ``busybox:1`` and
``localhost:5000/x`` are local names); a local name that collides with a transport name needs
the explicit ``local:`` prefix.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lamina.errors import InvalidReference
from lamina.transports.base import Destination, Format, ImageRef
from lamina.transports.copy import Progress, copy, copy_image

if TYPE_CHECKING:
    from lamina.store import Store

#: transport name -> (module, ImageRef class); imported lazily
TRANSPORTS: dict[str, tuple[str, str]] = {
    "oci": ("lamina.transports.oci", "OciRef"),
    "oci-archive": ("lamina.transports.ociarchive", "OciArchiveRef"),
    "docker-archive": ("lamina.transports.dockerarchive", "DockerArchiveRef"),
    "local": ("lamina.transports.local", "LocalRef"),
    "docker": ("lamina.transports.docker", "DockerRef"),
}

#: transports that are planned but not built, with the reason shown to the user
PENDING: dict[str, str] = {}


def transport_class(name: str) -> Any:
    """The ImageRef class registered for transport ``name``."""
    module, attr = TRANSPORTS[name]
    return getattr(importlib.import_module(module), attr)


def parse(text: str, *, store: Store | None = None) -> ImageRef:
    """Parse ``transport:details`` (or a bare local-store name) into an :class:`ImageRef`.

    ``store`` is attached to local-store refs (they need it to open or write).
    """
    prefix, sep, details = text.partition(":")
    if sep and prefix in PENDING:
        raise InvalidReference(
            f"{text}: {PENDING[prefix]}",
            hint="save the image with docker save and use docker-archive:FILE, or use oci:DIR",
        )
    if not sep or prefix not in TRANSPORTS:
        prefix, details = "local", text
    if prefix == "local":
        return transport_class("local").parse(details, store=store)  # type: ignore[no-any-return]
    return transport_class(prefix).parse(details)  # type: ignore[no-any-return]


__all__ = [
    "PENDING",
    "TRANSPORTS",
    "Destination",
    "Format",
    "ImageRef",
    "Progress",
    "copy",
    "copy_image",
    "parse",
    "transport_class",
]
