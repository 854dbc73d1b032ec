"""Run the lamina CLI as an unprivileged user, and look at what it did from the host as root.

CI (``make test``, as root) creates the user :data:`CI_USER` with ``/etc/subuid`` and
``/etc/subgid`` ranges; tests run ``setpriv --reuid U --regid G --init-groups env ... python -m
lamina`` against a store in a directory that user owns, under a world-traversable base dir in
``/tmp`` (pytest's own temp dirs are 0700 root, which no user namespace can enter).

The interpreter is the test's own when the user can run it, else the system ``python3.X``
of the same minor version with ``PYTHONPATH`` set to lamina's ``src`` and the venv's
site-packages (a venv whose base interpreter lives under ``/root`` is not reachable).

Mounts made rootless live in the store's namespace (:mod:`lamina.runtime.userns`), so the host
sees them through the pause process: :class:`HostView` maps paths and lists mounts and
processes there. Never imported by lamina itself.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lamina
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.runtime import userns
from lamina.testing.capabilities import mount_points_under
from lamina.testing.cli import EPOCH
from lamina.testing.command import Result, run_command

#: the unprivileged user CI creates (Makefile, target ``rootless-user``)
CI_USER = "lamina-ci"
SRC = Path(lamina.__file__).resolve().parents[1]


@lazy_dataclass(frozen=True, kw_only=True)
class User:
    """A host user to run lamina as."""

    name: str
    uid: int
    gid: int


def lookup(name: str) -> User | None:
    """The user ``name``, or None when it does not exist."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return User(name=name, uid=pw.pw_uid, gid=pw.pw_gid)


def _setpriv(user: User) -> list[str]:
    return [
        shutil.which("setpriv") or "/usr/bin/setpriv",
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--init-groups",
    ]


@functools.cache
def interpreter(user: User) -> tuple[str, ...] | None:
    """A command prefix that runs a python with lamina importable, as ``user``; None if none."""
    site = sysconfig.get_paths()["purelib"]
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    # Each through env(1): setpriv itself manages to exec an interpreter its user cannot reach.
    env = shutil.which("env") or "/usr/bin/env"
    candidates: list[tuple[str, ...]] = [
        (env, sys.executable),
        (env, f"PYTHONPATH={SRC}:{site}", f"/usr/bin/{minor}"),
        (env, f"PYTHONPATH={SRC}:{site}", f"/usr/local/bin/{minor}"),
    ]
    for prefix in candidates:
        probe = run_command(
            [*_setpriv(user), *prefix, "-c", "import lamina.cli.main, isal, zstandard"],
            check=False,
        )
        if probe.code == 0:
            return prefix
    return None


def missing_rootless() -> str | None:
    """None when :data:`CI_USER` exists, has sub-id ranges and can run lamina."""
    user = lookup(CI_USER)
    if user is None:
        return f"no user {CI_USER} (make rootless-user creates it)"
    if os.geteuid() != 0:
        return "needs root to switch to the rootless user"
    for path in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError):
            if any(line.startswith(f"{CI_USER}:") for line in Path(path).read_text().split()):
                continue
        return f"{CI_USER} has no range in {path}"
    if interpreter(user) is None:
        return f"{CI_USER} cannot run a python with lamina (is the checkout traversable?)"
    return None


@contextlib.contextmanager
def base_dir(user: User) -> Iterator[Path]:
    """A fresh 0755 dir under /tmp owned by ``user``. On exit every process left in the
    namespaces of the stores below it is killed, their pause processes too, and the tree is
    removed (as root: layer files belong to sub-ids)."""
    base = Path(tempfile.mkdtemp(prefix="lamina-rootless-", dir="/tmp"))
    try:
        base.chmod(0o755)
        os.chown(base, user.uid, user.gid)
        yield base
    finally:
        for state in [*base.glob("*/userns"), *base.glob("*/*/*/userns")]:
            root = HostView(state.parent, rootless=True)
            for pid in root.namespace_processes():  # left running by a failed test
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            userns.stop_pause(state)
        shutil.rmtree(base, ignore_errors=True)


def run_as(
    user: User, root: Path | None, *args: str, home: Path, env: dict[str, str] | None = None,
    stdin: bytes | None = None, check: bool = True, timeout: float = 300,
) -> Result:  # fmt: skip
    """``python -m lamina --root ROOT ARGS`` as ``user`` (HOME=``home``); like run_cli.

    ``root=None`` passes no ``--root`` (the user's default store)."""
    prefix = interpreter(user)
    assert prefix is not None, f"{user.name} cannot run lamina"
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
    full_env = {**keep, "HOME": str(home), "USER": user.name, "SOURCE_DATE_EPOCH": EPOCH,
                **(env or {})}  # fmt: skip
    store = ("--root", str(root)) if root is not None else ()
    return run_command(
        [*_setpriv(user), *prefix, "-m", "lamina", *store, *args],
        env=full_env, stdin=stdin, cwd=home, check=check, timeout=timeout,
        name=f"lamina {' '.join(args)} (as {user.name})",
    )  # fmt: skip


class HostView:
    """What the host (root) sees of a store: directly, or through its rootless pause process."""

    def __init__(self, root: Path, *, rootless: bool) -> None:
        self.root = root
        self.rootless = rootless

    def pause_pid(self) -> int | None:
        """The live pause process of the store (rootless), else None."""
        if not self.rootless:
            return None
        return userns.live_pause(userns.read_record(self.root / "userns"))

    def _proc_root(self) -> str:
        pid = self.pause_pid()
        return "" if pid is None else f"/proc/{pid}/root"

    def path(self, path: str | Path) -> Path:
        """``path`` as the store's processes see it (mounts included)."""
        return Path(self._proc_root() + str(path))

    def mounts(self) -> list[str]:
        """Mount points in the store's mount namespace (the host's when not rootless)."""
        pid = self.pause_pid()
        source = f"/proc/{pid}/mountinfo" if pid is not None else "/proc/self/mountinfo"
        with open(source) as f:
            return [_unescape(line.split()[4]) for line in f if line.strip()]

    def mounts_under(self, path: Path) -> list[str]:
        """Mount points at or below ``path``, in the store's mount namespace."""
        prefix = str(path)
        return sorted(m for m in self.mounts() if m == prefix or m.startswith(prefix + "/"))

    def is_mount(self, path: str | Path) -> bool:
        """True when ``path`` is a mount point in the store's mount namespace."""
        return str(path) in self.mounts()

    def namespace_processes(self) -> list[int]:
        """Live (not zombie) pids in the store's user namespace other than its pause process
        (rootless only)."""
        pid = self.pause_pid()
        if pid is None:
            return []
        ns = os.stat(f"/proc/{pid}/ns/user").st_ino
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != pid:
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{entry}/ns/user").st_ino == ns and not _zombie(entry):
                        out.append(int(entry))
        return sorted(out)

    def wait_namespace_idle(self, timeout: float = 10.0) -> list[int]:
        """:meth:`namespace_processes` once it is empty or ``timeout`` passed (a monitor may
        still be exiting right after the command that stopped its container returned)."""
        deadline = time.monotonic() + timeout
        while (left := self.namespace_processes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def host_id(self, container_id: int, kind: str = "uid") -> int:
        """The host uid (gid) of ``container_id`` in the store's user namespace."""
        pid = self.pause_pid()
        if pid is None:
            return container_id
        with open(f"/proc/{pid}/{kind}_map") as f:
            for line in f:
                inside, outside, size = map(int, line.split())
                if inside <= container_id < inside + size:
                    return outside + container_id - inside
        raise LookupError(f"{kind} {container_id} is not mapped")


def _zombie(pid: str) -> bool:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2 :].startswith(b"Z")


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (space, tab, newline, backslash)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


class StoreCli:
    """The CLI over one store, as root or rootless, with the host's view of that store.

    ``cli(*args, check=True, ...)`` runs lamina; ``root`` is the store root, ``view`` a
    :class:`HostView` of it, ``work`` a scratch dir whose files the store's user can read.
    """

    def __init__(
        self, call: Callable[..., Result], *, root: Path, work: Path, rootless: bool
    ) -> None:
        self._call = call
        self.root = root
        self.work = work
        self.view = HostView(root, rootless=rootless)

    def __call__(self, *args: str, **kw: object) -> Result:
        return self._call(*args, **kw)


@contextlib.contextmanager
def rootless_store(user: User, image_tar: Path | None = None) -> Iterator[StoreCli]:
    """A fresh store run by ``user`` (HOME and the store in a :func:`base_dir`); the rootfs
    tarball ``image_tar``, when given, imported as ``busybox``."""
    with base_dir(user) as base:
        home, work, root = base / "home", base / "work", base / "root"
        home.mkdir()
        os.chown(home, user.uid, user.gid)
        work.mkdir(mode=0o755)

        def call(*args: str, **kw: object) -> Result:
            return run_as(user, root, *args, home=home, **kw)  # type: ignore[arg-type]

        cli = StoreCli(call, root=root, work=work, rootless=True)
        if image_tar is not None:
            shutil.copy(image_tar, work / "image.tar")
            cli("import", str(work / "image.tar"), "busybox")
        yield cli


def container_processes(root: Path) -> list[int]:
    """Pids whose root dir lies inside the store ``root``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/root").startswith(str(root)):
                    out.append(int(entry))
    return out


def assert_store_clean(cli: StoreCli) -> None:
    """``rm -f`` every container, then assert nothing is left: no mount under the store (on
    the host and in its namespace), no container process, no process in its namespace but
    the pause process, no container dir, no init layer."""
    for cid in cli("ps", "-aq", "--no-trunc").out.split():
        cli("rm", "-f", cid)
    assert mount_points_under(cli.root) == []
    assert cli.view.mounts_under(cli.root) == []
    assert container_processes(cli.root) == []
    assert cli.view.wait_namespace_idle() == []
    if (cli.root / "containers").exists():
        assert [e for e in os.listdir(cli.root / "containers") if e != "names"] == []
    assert [e for e in os.listdir(cli.root / "overlay2") if e.endswith("-init")] == []


@contextlib.contextmanager
def ci_store(image_tar: Path | None = None) -> Iterator[StoreCli]:
    """:func:`rootless_store` of the CI user (:data:`CI_USER`, which ``make rootless-user``
    creates), asserting on exit that nothing is left behind (:func:`assert_store_clean`)."""
    user = lookup(CI_USER)
    assert user is not None, f"no user {CI_USER}: run `make rootless-user`"
    with rootless_store(user, image_tar) as cli:
        yield cli
        assert_store_clean(cli)
