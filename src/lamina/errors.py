"""Every exception lamina raises on purpose.

The tree::

    LaminaError                       message, hint, exit_code (class level)
    ├── UsageError                    bad flags or arguments
    ├── InvalidReference              an image name or transport reference that does not parse
    ├── DockerfileError               path, line, column
    ├── ImageError                    bad image content
    │   ├── InvalidManifest           manifest/index/config JSON that is malformed or mistyped
    │   ├── DigestMismatch            bytes that do not hash to what was promised (or wrong size)
    │   ├── NotFound                  an image, blob, layer or tag that does not exist
    │   └── UnsafeArchive             a tar member that would escape its target, corrupt tars
    ├── RegistryError                 status, code, url (redacted), retryable
    │   ├── AuthError
    │   └── RegistryNotFound          a 404 from a registry (also a NotFound)
    ├── StorageError                  the local store
    │   ├── LockTimeout
    │   └── StoreCorrupt
    ├── UnionFSError                  mount / unmount failures
    ├── ContainerError                containers and runtimes
    │   ├── CommandNotFound           the command is not in the rootfs (exit 127, as Docker)
    │   └── CommandNotExecutable      the command is not executable (exit 126, as Docker)
    └── BuildError                    stage, line

Invariants: messages are lowercase and carry context first ("loading x: reading blob y: ...");
they never contain credentials. Only ``lamina.cli`` turns these into text and exit codes.
This module imports nothing from lamina.
"""

from __future__ import annotations


class LaminaError(Exception):
    """Base of all lamina errors: a one-line ``message`` and an optional ``hint``."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def with_context(self, context: str) -> LaminaError:
        """Prefix ``context: `` to the message; mutates and returns self."""
        self.message = f"{context}: {self.message}"
        self.args = (self.message,)
        return self


class UsageError(LaminaError):
    """The command line was wrong."""

    exit_code = 2


class InvalidReference(LaminaError):
    """An image reference or transport reference could not be parsed."""

    exit_code = 2


class DockerfileError(LaminaError):
    """A Dockerfile could not be parsed or is invalid. Carries its location."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "Dockerfile",
        line: int = 0,
        column: int = 0,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line:
            loc = f"{self.path}:{self.line}"
            if self.column:
                loc += f":{self.column}"
            return f"{loc}: {self.message}"
        return f"{self.path}: {self.message}"


class ImageError(LaminaError):
    """Image content is invalid."""


class InvalidManifest(ImageError):
    """A manifest, index or config is malformed or has an unexpected media type."""


class DigestMismatch(ImageError):
    """Content did not match its digest or declared size."""


class NotFound(ImageError):
    """Something that was asked for does not exist."""


class UnsafeArchive(ImageError):
    """A layer or archive tried to write outside its target, or is corrupt."""


class RegistryError(LaminaError):
    """A registry request failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        url: str | None = None,
        retryable: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.url = url
        self.retryable = retryable


class AuthError(RegistryError):
    """Authentication or authorisation with a registry failed."""


class RegistryNotFound(RegistryError, NotFound):
    """A 404 from a registry: both a RegistryError (status, code, url) and a NotFound."""


class StorageError(LaminaError):
    """The local store failed."""


class LockTimeout(StorageError):
    """A store lock could not be taken in time."""


class StoreCorrupt(StorageError):
    """The store holds inconsistent or corrupt data."""


class UnionFSError(LaminaError):
    """Mounting or unmounting a union filesystem failed."""


class ContainerError(LaminaError):
    """A container operation failed."""

    exit_code = 125


class CommandNotFound(ContainerError):
    """The container's command does not exist in its rootfs (or on its PATH)."""

    exit_code = 127


class CommandNotExecutable(ContainerError):
    """The container's command exists but cannot be executed (mode, directory)."""

    exit_code = 126


class BuildError(LaminaError):
    """A build step failed."""

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.stage = stage
        self.line = line
