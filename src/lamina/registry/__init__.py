"""OCI distribution client: manifests, blobs (verified, resumable), uploads, tags, auth.

The public surface is re-exported here; the modules behind it are

- :mod:`~lamina.registry.client`       RegistryClient (one registry, optional mirrors)
- :mod:`~lamina.registry.transport`    HTTP, scheme policy, retries, redirects (TransportOptions)
- :mod:`~lamina.registry.auth`         I/O-free challenge -> token state machine
- :mod:`~lamina.registry.credentials`  config.json / auth.json / credential helpers
- :mod:`~lamina.registry.login`        login / logout
- :mod:`~lamina.registry.blob`, :mod:`~lamina.registry.upload`  blob download and upload
- :mod:`~lamina.registry.document`     bounded reads, manifest digest checks, tag pages
- :mod:`~lamina.registry.response`, :mod:`~lamina.registry.redaction`  errors, redaction

It returns bytes, streams and descriptors and knows nothing of the local store.
"""

from __future__ import annotations

from lamina.errors import RegistryNotFound
from lamina.registry.auth import Credential, Scope
from lamina.registry.client import DEFAULT_ACCEPT, MAX_MANIFEST, RegistryClient, split_reference
from lamina.registry.credentials import (
    AuthFile,
    ChainProvider,
    CredentialProvider,
    StaticCredentials,
    default_auth_files,
    default_provider,
)
from lamina.registry.login import login, logout
from lamina.registry.redaction import redact_url
from lamina.registry.transport import RetryPolicy, TransportOptions

__all__ = [
    "DEFAULT_ACCEPT",
    "MAX_MANIFEST",
    "AuthFile",
    "ChainProvider",
    "Credential",
    "CredentialProvider",
    "RegistryClient",
    "RegistryNotFound",
    "RetryPolicy",
    "Scope",
    "StaticCredentials",
    "TransportOptions",
    "default_auth_files",
    "default_provider",
    "login",
    "logout",
    "redact_url",
    "split_reference",
]
