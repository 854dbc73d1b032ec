"""Platforms (os/architecture/variant) as in the OCI image index."""

from __future__ import annotations

import platform as _platform
from typing import Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import InvalidManifest, UsageError

#: architecture spellings (``uname -m``'s, Debian's) -> GOARCH, as containerd normalises them
_ARCH = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}

#: GOOS and GOARCH values (Go's lists, as containerd's platform parser checks them): a
#: ``--platform`` naming anything else is a typo, refused rather than silently ignored
_KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux",
    "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
})  # fmt: skip
_KNOWN_ARCH = frozenset({
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle",
    "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv",
    "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
})  # fmt: skip


@lazy_dataclass(frozen=True, kw_only=True)
class Platform:
    """An OCI platform. ``str()`` gives ``os/arch[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/amd64`` or ``linux/arm64/v8``; raise UsageError otherwise."""
        parts = text.strip().lower().split("/")
        hint = "use os/arch[/variant], e.g. linux/amd64"
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}", hint=hint)
        arch = _ARCH.get(parts[1], parts[1])
        if parts[0] not in _KNOWN_OS:
            raise UsageError(f"invalid platform {text!r}: unknown os {parts[0]!r}", hint=hint)
        if arch not in _KNOWN_ARCH:
            raise UsageError(
                f"invalid platform {text!r}: unknown architecture {parts[1]!r}", hint=hint
            )
        variant = parts[2] if len(parts) == 3 else None
        if variant is None and parts[1] in ("armhf", "armel"):
            variant = "v7" if parts[1] == "armhf" else "v6"
        return cls(os=parts[0], architecture=arch, variant=variant)

    @classmethod
    def host(cls) -> Platform:
        """The platform this process runs on."""
        machine = _platform.machine()
        arch = _ARCH.get(machine, machine)
        return cls(os="linux", architecture=arch, variant="v8" if arch == "arm64" else None)

    @classmethod
    def from_dict(cls, obj: Any) -> Platform:
        """From an index descriptor's ``platform`` object."""
        if not isinstance(obj, dict):
            raise InvalidManifest("platform must be an object")
        os_, arch = obj.get("os"), obj.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise InvalidManifest("platform needs string 'os' and 'architecture'")
        variant = obj.get("variant")
        osv = obj.get("os.version")
        return cls(
            os=os_,
            architecture=arch,
            variant=variant if isinstance(variant, str) else None,
            os_version=osv if isinstance(osv, str) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        return out

    def matches(self, other: Platform) -> bool:
        """True if ``other`` satisfies this platform (a missing variant matches any)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant is None or other.variant is None or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)
