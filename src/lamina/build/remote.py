"""``ADD <url>``: which sources are URLs, and fetching one into a temporary directory.

Rules (BuildKit's Dockerfile frontend and HTTP source):

- ``http://`` and ``https://`` names are URLs; git forms (``git://``, ``git@host:``,
  ``ssh://``, ``github.com/...``, or an http(s) URL whose path ends in ``.git``) are git
  repositories, fetched with git by :mod:`lamina.build.git` (syntax: :mod:`lamina.build.gitref`);
- the file name is the last element of the URL path (``path.Base``), or ``__unnamed__`` when
  the path is empty or ``/``; the file is written 0600 and dated by ``Last-Modified`` when the
  server sends one (else it keeps the download time); it is never extracted (unless
  ``ADD --unpack=true``, the caller's decision);
- ``--checksum=<algo>:<hex>`` (sha256, sha384 or sha512) is verified over the bytes received;
  a mismatch raises BuildError and leaves nothing behind.

The body is streamed to disk in 1 MiB pieces (httpx when installed, else urllib); it never sits
in memory. Error messages show the URL without credentials or query string.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import os
import posixpath
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import BuildError

__all__ = ["Fetched", "fetch_url", "is_git_url", "is_url", "url_filename"]

_CHUNK = 1 << 20
_CHECKSUM = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)\Z")
_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


def is_url(name: str) -> bool:
    """Whether an ADD source is an http(s) URL (git URLs included; see :func:`is_git_url`)."""
    return name.startswith(("http://", "https://"))


def is_git_url(name: str) -> bool:
    """Whether an ADD source names a git repository (BuildKit's ``isGitURL`` forms)."""
    if name.startswith(("git://", "git@", "ssh://", "github.com/")):
        return True
    if is_url(name):
        path = urllib.parse.urlsplit(name).path
        return path.endswith(".git") or path.endswith(".git/")
    return False


def url_filename(url: str) -> str:
    """The file name ADD gives a URL: the last path element, or ``__unnamed__``."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rstrip("/")
    base = posixpath.basename(path)
    return base if base not in ("", ".", "..") else "__unnamed__"


def _shown(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


@lazy_dataclass(frozen=True)
class Fetched:
    """A downloaded URL: ``path`` (0600), its ``digest`` (``sha256:…``) and byte ``size``."""

    path: Path
    name: str
    digest: str
    size: int
    mtime_ns: int | None


def _parse_checksum(checksum: str) -> tuple[str, str]:
    match = _CHECKSUM.match(checksum.strip().lower())
    if match is None or len(match.group(2)) != _HEX_LEN[match.group(1)]:
        raise BuildError(
            f"invalid --checksum {checksum!r}", hint="use sha256:<64 hex digits> (or sha384/512)"
        )
    return match.group(1), match.group(2)


@contextlib.contextmanager
def _open_stream(url: str, timeout: float) -> Iterator[tuple[Iterator[bytes], str | None]]:
    """(body chunks, Last-Modified header) for ``url``; raises BuildError on HTTP errors."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is installed in CI
        httpx = None  # type: ignore[assignment]
    if httpx is not None:
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    raise BuildError(f"fetching {_shown(url)}: http status {resp.status_code}")
                yield resp.iter_raw(_CHUNK), resp.headers.get("last-modified")
        except httpx.TransportError as exc:  # no answer: say why (refused, DNS, TLS, timeout)
            from lamina.registry.response import connection_error

            err = connection_error(exc, f"fetching {_shown(url)}", url, peer="server")
            raise BuildError(err.message, hint=err.hint) from exc
        except httpx.HTTPError as exc:
            raise BuildError(f"fetching {_shown(url)}: {type(exc).__name__}") from exc
        return
    try:  # pragma: no cover - urllib fallback
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            yield iter(lambda: resp.read(_CHUNK), b""), resp.headers.get("Last-Modified")
    except OSError as exc:  # pragma: no cover
        raise BuildError(f"fetching {_shown(url)}: {exc}") from exc


def fetch_url(
    url: str, directory: Path, *, checksum: str | None = None, timeout: float = 300.0
) -> Fetched:
    """Download ``url`` into ``directory/<url_filename>`` (see the module docstring).

    Verifies ``checksum`` when given; on any error the partial file is removed. The caller
    owns ``directory`` and removes it.
    """
    if not is_url(url) or is_git_url(url):
        raise BuildError(f"not an http(s) file url: {_shown(url)}")
    expected = _parse_checksum(checksum) if checksum else None
    algo = expected[0] if expected else "sha256"
    hasher = hashlib.new(algo)
    name = url_filename(url)
    path = directory / name
    size = 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out, _open_stream(url, timeout) as (chunks, modified):
            for chunk in chunks:
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if expected is not None and hasher.hexdigest() != expected[1]:
            raise BuildError(
                f"fetching {_shown(url)}: checksum mismatch: expected {algo}:{expected[1]}, "
                f"got {algo}:{hasher.hexdigest()}",
                hint="the file at the URL changed, or --checksum is wrong",
            )
        mtime_ns = _http_time_ns(modified)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return Fetched(path, name, f"{algo}:{hasher.hexdigest()}", size, mtime_ns)


def _http_time_ns(value: str | None) -> int | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return int(when.timestamp()) * 10**9
