"""Real git repositories served on 127.0.0.1 for tests (``ADD <git url>``).

:func:`serve_git` serves every bare repository below a directory over HTTP:

- ``smart=True``: Git's own smart-HTTP server, ``git http-backend``, run as a CGI program
  for each request by a tiny ``http.server`` in a thread (protocol v0 and v2, shallow
  fetches, fetch by commit id);
- ``smart=False``: the *dumb* protocol — plain static files (``git update-server-info`` is
  run first), which cannot do shallow fetches.

:class:`Repo` makes a working repository with fixed author/committer identity and dates, so
commit ids are the same on every run. Invariants: loopback only; the server thread is
stopped when the context exits, even on error; git runs without the user's configuration.
Never imported by the lamina package itself.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from lamina.testing.command import run_command

GIT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Lamina Test",
    "GIT_AUTHOR_EMAIL": "test@lamina.invalid",
    "GIT_COMMITTER_NAME": "Lamina Test",
    "GIT_COMMITTER_EMAIL": "test@lamina.invalid",
    "LC_ALL": "C",
}


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run ``git args`` with :data:`GIT_ENV` (plus ``env``); returns stdout, raises on error."""
    return run_command(["git", *args], cwd=cwd, env={**GIT_ENV, **(env or {})}).out


class Repo:
    """A working repository at ``path`` whose commits are dated ``date`` + one second each."""

    def __init__(self, path: Path, *, branch: str = "main", date: int = 1_600_000_000) -> None:
        self.path = path
        self.date = date
        path.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "-b", branch, str(path))

    def write(self, name: str, data: str | bytes, *, mode: int = 0o644) -> None:
        """Write a file (parents created) with ``mode``; ``git add`` it."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)
        git("add", "--", name, cwd=self.path)

    def symlink(self, name: str, points_to: str) -> None:
        """Add a symlink ``name`` -> ``points_to``."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(points_to)
        git("add", "--", name, cwd=self.path)

    def commit(self, message: str) -> str:
        """Commit what was added; returns the commit id."""
        self.date += 1
        stamp = f"@{self.date} +0000"
        git(
            "commit", "-q", "-m", message, cwd=self.path,
            env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )  # fmt: skip
        return self.head()

    def head(self) -> str:
        """The id of the commit HEAD points to."""
        return git("rev-parse", "HEAD", cwd=self.path).strip()

    def publish(self, bare: Path) -> None:
        """Mirror every branch and tag into the bare repository ``bare`` (created if needed)."""
        if not bare.exists():
            git("init", "-q", "--bare", str(bare))
        git("push", "-q", "--force", "--mirror", str(bare), cwd=self.path)
        git("update-server-info", cwd=bare)
        head = git("symbolic-ref", "HEAD", cwd=self.path).strip()
        git("symbolic-ref", "HEAD", head, cwd=bare)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Runs ``git http-backend`` (CGI) for each request below ``root``."""

    def __init__(self, *args: object, root: Path, **kw: object) -> None:
        self.root = root
        super().__init__(*args, **kw)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type") or "",
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol") or "",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding") or "",
        }
        done = run_command(["git", "http-backend"], stdin=body, env=env, check=False)
        head, _, payload = done.raw.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Static(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def serve_git(root: Path, *, smart: bool = True) -> Iterator[str]:
    """Serve the bare repositories below ``root``; yields ``http://127.0.0.1:PORT``.

    A repository ``root/app.git`` is then ``<url>/app.git``. Stopped on exit.
    """
    handler: object
    if smart:
        handler = partial(_Handler, root=root)
    else:
        for bare in root.glob("*.git"):
            git("update-server-info", cwd=bare)
        handler = partial(_Static, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def available() -> bool:
    """Whether git (with ``http-backend``) is installed."""
    return shutil.which("git") is not None and os.access(
        "/usr/lib/git-core/git-http-backend", os.X_OK
    )


__all__ = ["GIT_ENV", "Repo", "available", "git", "serve_git"]
