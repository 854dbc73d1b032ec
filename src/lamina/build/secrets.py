"""Build secrets: ``--secret id=ID,src=PATH`` (or ``env=VAR``) for ``RUN --mount=type=secret``.

A secret is bind-mounted read-only at ``/run/secrets/<id>`` (or the mount's ``target``) for the
duration of one RUN, or exported as an environment variable when the mount says ``env=``. It
never enters a layer (the mount point lives in the step's init layer, see
:mod:`lamina.build.workspace`) and never enters a cache key: changing a secret's content does
not invalidate the cache, as in BuildKit.

Parsing follows ``docker buildx build --secret``: comma-separated ``key=value`` fields,
``id`` (defaults to the base name of ``src``), ``src``/``source`` (a file), ``env`` (an
environment variable of the builder process, given to us as a mapping), ``type`` (``file`` or
``env``). Missing files are reported when a RUN needs them ("secret ID: file not found"), and
a ``required`` mount fails when the secret was not given at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import BuildError, UsageError

#: secret values larger than this are refused (they are read into memory for env= secrets)
MAX_ENV_SECRET = 512 * 1024


@lazy_dataclass(frozen=True, kw_only=True)
class SecretSource:
    """Where a secret comes from: a file ``path`` or the value of an environment variable."""

    id: str
    path: Path | None = None
    env_value: str | None = None


def parse_secret(spec: str, environ: Mapping[str, str]) -> SecretSource:
    """Parse one ``--secret`` value; UsageError when it is malformed."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"invalid --secret {spec!r}: {item!r} is not key=value")
        fields[key.strip().lower()] = value
    unknown = set(fields) - {"id", "src", "source", "env", "type"}
    if unknown:
        raise UsageError(f"invalid --secret {spec!r}: unknown field {sorted(unknown)[0]!r}")
    src = fields.get("src") or fields.get("source")
    kind = fields.get("type") or ("env" if "env" in fields and not src else "file")
    if kind not in ("file", "env"):
        raise UsageError(f"invalid --secret {spec!r}: type must be file or env")
    ident = fields.get("id") or (os.path.basename(src) if src else fields.get("env") or "")
    if not ident:
        raise UsageError(f"invalid --secret {spec!r}: an id is required")
    if kind == "env":
        var = fields.get("env") or src or ident
        env_value = environ.get(var)
        if env_value is None:
            raise UsageError(f"secret {ident}: environment variable {var} is not set")
        return SecretSource(id=ident, env_value=env_value)
    if not src:
        raise UsageError(f"invalid --secret {spec!r}: src=PATH is required for a file secret")
    return SecretSource(id=ident, path=Path(src).absolute())


class SecretStore:
    """The secrets of one build, by id."""

    def __init__(self, sources: Sequence[SecretSource] = ()) -> None:
        self._by_id = {s.id: s for s in sources}

    def ids(self) -> list[str]:
        """The ids given, sorted."""
        return sorted(self._by_id)

    def get(self, ident: str) -> SecretSource | None:
        """The secret ``ident``, or None."""
        return self._by_id.get(ident)

    def file_for(self, ident: str, scratch: Path) -> Path:
        """A host file holding the secret (env secrets are written into ``scratch``, 0400).

        Raises BuildError when the secret is unknown or its file is missing or not a file.
        """
        source = self._by_id.get(ident)
        if source is None:
            raise BuildError(
                f"secret {ident} not found",
                hint=f"pass it with --secret id={ident},src=PATH",
            )
        if source.path is None:
            scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
            out = scratch / f"secret-{len(list(scratch.iterdir()))}"
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write((source.env_value or "").encode())
            return out
        if not source.path.is_file():
            raise BuildError(
                f"secret {ident}: file {source.path} not found",
                hint="check the src= path of --secret",
            )
        return source.path

    def value_for(self, ident: str) -> str:
        """The secret as text (for ``env=`` mounts); BuildError as :meth:`file_for`."""
        source = self._by_id.get(ident)
        if source is not None and source.env_value is not None:
            return source.env_value
        path = self.file_for(ident, Path("/nonexistent"))
        if path.stat().st_size > MAX_ENV_SECRET:
            raise BuildError(f"secret {ident}: larger than {MAX_ENV_SECRET} bytes for env=")
        return path.read_text(errors="replace")
