"""Build-time ssh agents: ``--ssh`` for ``RUN --mount=type=ssh`` and ``ADD git@host:…``.

``--ssh`` follows ``docker buildx build --ssh``: ``ID`` alone (``default``) means the agent of
``$SSH_AUTH_SOCK`` (the caller passes its environment in; library code reads none);
``ID=SOCKET`` an agent socket; ``ID=KEY[,KEY…]`` private key files, for which this module
starts a private ``ssh-agent -a SOCK`` (openssh-client) on first use and loads the keys with
``ssh-add``; it is stopped by :meth:`SshAgents.close` at the end of the build.

A RUN never sees the agent's own socket: :func:`forward_agent` listens on a new socket in the
step's private scratch directory, with the mount's ``uid``/``gid``/``mode`` (default 0:0,
0600), and relays each connection to the agent, for exactly as long as the RUN. The agent
protocol is passed through unread; key material never leaves the agent, and neither socket
path nor keys enter a cache key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import BuildError, UsageError

if TYPE_CHECKING:  # imported where an agent is started or forwarded: most builds have no --ssh
    import socket
    import subprocess

__all__ = ["SshAgents", "SshSource", "forward_agent", "parse_ssh"]

_AGENT_START_TIMEOUT = 10.0
_CHUNK = 65536


@lazy_dataclass(frozen=True)
class SshSource:
    """One ``--ssh`` value: an ``id`` and either one agent socket or key files (``paths``)."""

    id: str
    paths: tuple[Path, ...]

    @property
    def is_socket(self) -> bool:
        """Whether ``paths`` is a single agent socket (else key files)."""
        return len(self.paths) == 1 and _is_socket(self.paths[0])


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def parse_ssh(spec: str, environ: Mapping[str, str]) -> SshSource:
    """Parse one ``--ssh`` value (see the module docstring); UsageError when it is unusable."""
    ident, eq, rest = spec.partition("=")
    ident = ident.strip()
    if not ident or any(c in ident for c in ",/ "):
        raise UsageError(f"invalid --ssh {spec!r}: expected ID or ID=SOCKET|KEY[,KEY]")
    if not eq:
        sock = environ.get("SSH_AUTH_SOCK", "")
        if not sock:
            raise UsageError(
                f"--ssh {ident}: SSH_AUTH_SOCK is not set",
                hint=f"start ssh-agent, or pass --ssh {ident}=/path/to/agent.sock or KEYFILE",
            )
        paths: tuple[Path, ...] = (Path(sock),)
    else:
        paths = tuple(Path(p).absolute() for p in rest.split(",") if p)
    if not paths:
        raise UsageError(f"invalid --ssh {spec!r}: no socket or key path after '='")
    for path in paths:
        if not path.exists():
            raise UsageError(f"--ssh {ident}: {path} not found")
    if len(paths) > 1 and any(_is_socket(p) for p in paths):
        raise UsageError(f"--ssh {ident}: give one agent socket, or key files only")
    return SshSource(ident, paths)


class SshAgents:
    """The ssh agents of one build, by id (thread-safe). Close it when the build ends."""

    def __init__(self, sources: Sequence[SshSource] = (), *, tmp_dir: Path | None = None):
        self._by_id = {s.id: s for s in sources}
        self._tmp_dir = tmp_dir
        self._lock = threading.Lock()
        self._sockets: dict[str, Path] = {}
        self._agents: list[subprocess.Popen[bytes]] = []
        self._dirs: list[Path] = []

    def ids(self) -> list[str]:
        """The ids given, sorted."""
        return sorted(self._by_id)

    def socket_for(self, ident: str) -> Path | None:
        """The agent socket of ``ident`` (an agent is started for key files on first use),
        or None when no such ``--ssh`` was given. BuildError when keys cannot be loaded."""
        source = self._by_id.get(ident)
        if source is None:
            return None
        if source.is_socket:
            return source.paths[0]
        with self._lock:
            if ident not in self._sockets:
                self._sockets[ident] = self._start_agent(source)
            return self._sockets[ident]

    def _start_agent(self, source: SshSource) -> Path:
        if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
            raise BuildError(
                f"--ssh {source.id}: ssh-agent is needed for key files",
                hint="install openssh-client, or pass an agent socket",
            )
        # ssh-agent binds its socket by path: keep the path short (sockaddr_un holds 108 bytes)
        base = self._tmp_dir if self._tmp_dir and len(str(self._tmp_dir)) < 60 else None
        directory = Path(tempfile.mkdtemp(prefix="lamina-ssh-", dir=base))
        self._dirs.append(directory)
        sock = directory / "agent.sock"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(directory)}
        import subprocess

        agent = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(sock)], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._agents.append(agent)
        deadline = time.monotonic() + _AGENT_START_TIMEOUT
        while not _is_socket(sock):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise BuildError(f"--ssh {source.id}: ssh-agent did not start")
            time.sleep(0.02)
        for key in source.paths:
            done = subprocess.run(
                ["ssh-add", "-q", "--", str(key)], env={**env, "SSH_AUTH_SOCK": str(sock)},
                stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=30,
            )  # fmt: skip
            if done.returncode != 0:
                raise BuildError(
                    f"--ssh {source.id}: cannot load key {key}",
                    hint="passphrase-protected keys: add them to your agent and pass "
                    f"--ssh {source.id}=$SSH_AUTH_SOCK",
                )
        return sock

    def close(self) -> None:
        """Stop the agents this object started and remove their directories (idempotent)."""
        with self._lock:
            agents, self._agents = self._agents, []
            dirs, self._dirs = self._dirs, []
            self._sockets.clear()
        for agent in agents:
            _stop(agent)
        for directory in dirs:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> SshAgents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(agent: subprocess.Popen[bytes]) -> None:
    """Terminate ``agent``; kill it if it has not exited within 5 s."""
    import subprocess

    agent.terminate()
    try:
        agent.wait(timeout=5)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


@contextlib.contextmanager
def forward_agent(
    upstream: Path, path: Path, *, mode: int = 0o600, uid: int = 0, gid: int = 0
) -> Iterator[Path]:
    """Listen on ``path`` (new; ``mode``, ``uid``:``gid``) and relay every connection to the
    agent at ``upstream`` until the context exits (then all relays are closed)."""
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        with _short(path) as short:
            listener.bind(short)
        os.chmod(path, mode)
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
        listener.listen(16)
        listener.settimeout(0.1)

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except (TimeoutError, OSError):
                    continue
                relay = threading.Thread(target=_relay, args=(conn, upstream, stop), daemon=True)
                relay.start()
                threads.append(relay)

        acceptor = threading.Thread(target=serve, name="ssh-forward", daemon=True)
        acceptor.start()
        threads.append(acceptor)
        yield path
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        listener.close()
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def _short(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits ``sockaddr_un`` (108 bytes): the path itself, or
    ``/proc/self/fd/N/NAME`` through a descriptor of its directory while the context lasts."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _relay(conn: socket.socket, upstream: Path, stop: threading.Event) -> None:
    """Copy bytes both ways between ``conn`` and a new connection to ``upstream``."""
    import selectors
    import socket

    with conn, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as agent:
        try:
            with _short(upstream) as short:
                agent.connect(short)
        except OSError:
            return
        peer = {conn: agent, agent: conn}
        with selectors.DefaultSelector() as sel:
            sel.register(conn, selectors.EVENT_READ)
            sel.register(agent, selectors.EVENT_READ)
            while not stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    src = key.fileobj
                    assert isinstance(src, socket.socket)
                    try:
                        data = src.recv(_CHUNK)
                        if not data:
                            return
                        peer[src].sendall(data)
                    except OSError:
                        return
