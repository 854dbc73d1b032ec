"""``ADD <git url>``: resolve a :class:`~lamina.build.gitref.GitSpec`'s commit, fetch it and
check it out (the syntax is :mod:`lamina.build.gitref`).

Resolution (:func:`resolve_ref`) runs ``git ls-remote`` like BuildKit, so a moved branch gives
a new commit id (a cache miss) and the same commit a hit; a full commit id needs no network.
Names are looked up as ``refs/NAME``, ``refs/tags/NAME`` (peeled), ``refs/heads/NAME``, in
git's order. :func:`fetch_checkout` then fetches exactly that ref with ``--depth=1`` (falling
back to a full fetch where the server cannot do shallow fetches, e.g. dumb HTTP), checks the
fetched id against the resolved one, checks out with ``core.symlinks=true`` and, like
BuildKit, updates submodules recursively (``submodules=false`` turns that off).

The checkout is made deterministic: directories 0755, files 0644 or 0755 (git records only the
executable bit), every entry dated by the commit time (BuildKit's ``mtime=commit``). Without
``--keep-git-dir`` every ``.git`` entry is removed; with it ``.git`` stays (its index holds
stat data, so such a layer is not bit-reproducible — as in BuildKit), with the remote URL
written without credentials.

Security: git runs with a clean environment (no user or system config, no terminal prompts,
no hooks, ``GIT_ALLOW_PROTOCOL=http:https:ssh:git`` — so no ``ext::``/``fd::``/``file``
transports, also not for submodules), every argument after ``--``, refs and paths starting
with ``-`` refused. Error messages and the kept ``.git/config`` never show ``user:password@``.
ssh remotes authenticate only through the build's ``default`` agent (``--ssh default``); as in
BuildKit without configured known hosts, their host keys are not checked.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.build.gitref import GitSpec, redact
from lamina.errors import BuildError

__all__ = ["Checkout", "Resolved", "fetch_checkout", "git_env", "normalize_tree", "resolve_ref"]

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")
_OPTS = (
    "-c", "core.symlinks=true", "-c", "core.autocrlf=false", "-c", "core.fileMode=true",
    "-c", "core.hooksPath=/dev/null", "-c", "core.logAllRefUpdates=false",
    "-c", "core.fsmonitor=false", "-c", "protocol.file.allow=never",
    "-c", "fetch.recurseSubmodules=false", "-c", "advice.detachedHead=false",
    "-c", "init.defaultBranch=main", "-c", "http.followRedirects=initial",
)  # fmt: skip


@lazy_dataclass(frozen=True)
class Resolved:
    """What a ref named when it was resolved: the full ref name (``""`` for a commit id) and
    the object id (a commit, or for a tag the peeled commit when the server sent it)."""

    refname: str
    oid: str


@lazy_dataclass(frozen=True)
class Checkout:
    """A checked-out tree at ``root`` (its subdirectory not applied), of ``commit``."""

    root: Path
    commit: str
    commit_time: int


# -- running git ---------------------------------------------------------------------------
def git_env(home: Path, ssh_auth_sock: Path | None) -> dict[str, str]:
    """The whole environment git runs with (nothing inherited from the caller)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ALLOW_PROTOCOL": "http:https:ssh:git",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_SSH_COMMAND": "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
    }
    if ssh_auth_sock is not None:
        env["SSH_AUTH_SOCK"] = str(ssh_auth_sock)
    return env


@lazy_dataclass(frozen=True)
class _Git:
    env: dict[str, str]
    timeout: float
    shown: str

    def run(self, *args: str, cwd: Path | None = None, what: str = "fetching") -> str:
        """``git args`` in ``cwd``; BuildError with git's last ``fatal:`` line (redacted)."""
        try:
            done = subprocess.run(
                ["git", *_OPTS, *args], cwd=cwd, env=self.env, capture_output=True,
                text=True, errors="replace", timeout=self.timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"{what} git repository {self.shown}: timed out") from exc
        except OSError as exc:
            raise BuildError(
                f"{what} git repository {self.shown}: cannot run git ({exc.strerror})",
                hint="install git (apt-get install git)",
            ) from exc
        if done.returncode != 0:
            raise BuildError(f"{what} git repository {self.shown}: {_reason(done.stderr)}")
        return done.stdout

    def ok(self, *args: str, cwd: Path) -> bool:
        try:
            self.run(*args, cwd=cwd)
        except BuildError:
            return False
        return True


def _reason(stderr: str) -> str:
    lines = [redact(line.strip()) for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    text = (fatal or lines or ["git failed"])[-1]
    return text.removeprefix("fatal: ").removeprefix("error: ")[:300]


# -- resolve -------------------------------------------------------------------------------
def resolve_ref(
    spec: GitSpec, *, ssh_auth_sock: Path | None = None, timeout: float = 300.0
) -> Resolved:
    """The ref's full name and object id, from ``git ls-remote`` (a full commit id needs no
    network). BuildError naming the ref when the remote does not have it."""
    if _SHA.match(spec.ref):
        return Resolved("", spec.ref)
    with tempfile.TemporaryDirectory(prefix="lamina-git-") as home:
        return _ls_remote(_Git(git_env(Path(home), ssh_auth_sock), timeout, spec.shown), spec)


def _ls_remote(git: _Git, spec: GitSpec) -> Resolved:
    if not spec.ref:
        out = git.run("ls-remote", "--symref", "--", spec.remote, "HEAD", what="reading")
        name, oid = "HEAD", ""
        for line in out.splitlines():
            left, _, right = line.partition("\t")
            if left.startswith("ref: ") and right == "HEAD":
                name = left[5:]
            elif right == "HEAD":
                oid = left
        if not oid:
            raise BuildError(f"git repository {spec.shown}: it has no default branch (HEAD)")
        return Resolved(name, oid)
    names = [spec.ref] if spec.ref.startswith("refs/") else [
        f"refs/{spec.ref}", f"refs/tags/{spec.ref}", f"refs/heads/{spec.ref}"
    ]  # fmt: skip
    patterns = [p for n in names for p in (n, n + "^{}")]
    out = git.run("ls-remote", "--", spec.remote, *patterns, what="reading")
    found: dict[str, str] = {}
    for line in out.splitlines():
        oid, _, name = line.partition("\t")
        found[name] = oid
    for name in names:
        if name in found:
            return Resolved(name, found.get(name + "^{}", found[name]))
    raise BuildError(
        f"git repository {spec.shown}: ref {spec.ref} not found",
        hint="check the branch, tag or commit after '#' (or ref=/branch=/tag=) in the URL",
    )


# -- fetch and check out -------------------------------------------------------------------
def fetch_checkout(
    spec: GitSpec,
    resolved: Resolved,
    directory: Path,
    *,
    keep_git_dir: bool = False,
    ssh_auth_sock: Path | None = None,
    timeout: float = 300.0,
) -> Checkout:
    """Fetch ``resolved`` from ``spec.remote`` and check it out in ``directory/tree``.

    ``directory`` (the caller's private scratch, removed by the caller) also holds git's
    ``HOME``. Raises BuildError when the fetched id is not the resolved one (the ref moved
    meanwhile), when ``spec.checksum`` does not match the commit, or when git fails.
    """
    home = directory / "home"
    home.mkdir(parents=True, exist_ok=True)
    work = directory / "tree"
    git = _Git(git_env(home, ssh_auth_sock), timeout, spec.shown)
    git.run("init", "-q", "--template=", "--", str(work), what="preparing")
    target = _fetch(git, spec, resolved, work)
    commit = git.run("rev-parse", "--verify", "--end-of-options", target + "^{commit}", cwd=work)
    commit = commit.strip()
    fetched = git.run("rev-parse", "--verify", "--end-of-options", target, cwd=work).strip()
    if resolved.oid not in (commit, fetched):
        raise BuildError(
            f"git repository {spec.shown}: {spec.ref or 'HEAD'} moved while it was fetched",
            hint="run the build again",
        )
    if spec.checksum and not commit.startswith(spec.checksum):
        raise BuildError(
            f"git repository {spec.shown}: commit {commit} does not match checksum {spec.checksum}",
            hint="the ref now names another commit, or --checksum is wrong",
        )
    git.run("checkout", "-q", "--detach", commit, "--", cwd=work, what="checking out")
    if spec.submodules and (work / ".gitmodules").is_file():
        _submodules(git, spec, work)
    when = int(git.run("show", "-s", "--format=%ct", commit, "--", cwd=work).strip() or 0)
    if keep_git_dir:
        _tidy_git_dir(git, spec, work)
    else:
        _remove_git_dirs(work)
    normalize_tree(work, when)
    return Checkout(work, commit, when)


def _fetch(git: _Git, spec: GitSpec, resolved: Resolved, work: Path) -> str:
    """Fetch the resolved ref (shallow first, then in full); returns what to rev-parse."""
    base = ("fetch", "-q", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules")
    if resolved.refname:
        refspec, target = f"+{resolved.refname}:refs/lamina/source", "refs/lamina/source"
    else:
        refspec, target = resolved.oid, resolved.oid
    if git.ok(*base, "--depth=1", "--", spec.remote, refspec, cwd=work):
        return target
    if resolved.refname:
        git.run(*base, "--", spec.remote, refspec, cwd=work)
        return target
    # a commit id the server will not hand out by id (dumb HTTP, older servers): fetch all
    git.run(*base, "--", spec.remote, "+refs/heads/*:refs/lamina/heads/*",
            "+refs/tags/*:refs/lamina/tags/*", cwd=work)  # fmt: skip
    if not git.ok("cat-file", "-e", "--end-of-options", resolved.oid + "^{commit}", cwd=work):
        raise BuildError(f"git repository {spec.shown}: commit {resolved.oid} not found")
    return target


def _submodules(git: _Git, spec: GitSpec, work: Path) -> None:
    """``git submodule update --init --recursive`` (shallow first). Relative submodule URLs
    are resolved against ``remote.origin.url``; :func:`_tidy_git_dir` redacts it again."""
    git.run("config", "--", "remote.origin.url", spec.remote, cwd=work, what="preparing")
    update = ("submodule", "--quiet", "update", "--init", "--recursive")
    if not git.ok(*update, "--depth=1", cwd=work):
        git.run(*update, cwd=work, what="fetching submodules of")


def _tidy_git_dir(git: _Git, spec: GitSpec, work: Path) -> None:
    """Leave ``.git`` as a plain clone would, minus credentials and our temporary refs."""
    for ref in git.run("for-each-ref", "--format=%(refname)", "refs/lamina/", cwd=work).split():
        git.run("update-ref", "-d", ref, cwd=work)
    git.run("config", "--", "remote.origin.url", spec.shown, cwd=work)
    for config in [work / ".git" / "config", *(work / ".git" / "modules").rglob("config")]:
        if not config.is_file():
            continue
        found = subprocess.run(
            ["git", "config", "--file", str(config), "--get-regexp", r"\.url$"],
            env=git.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        for line in found.stdout.splitlines():
            key, _, value = line.partition(" ")
            if redact(value) != value:
                git.run("config", "--file", str(config), "--", key, redact(value), cwd=work)


def _remove_git_dirs(work: Path) -> None:
    """Remove every ``.git`` entry (git never tracks that name, so all are git's own)."""
    for top, dirs, files in os.walk(work):
        for name in (*dirs, *files):
            if name == ".git":
                path = Path(top, name)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        if ".git" in dirs:
            dirs.remove(".git")


def normalize_tree(root: Path, when: int) -> None:
    """Directories 0755, files 0755 or 0644 (by their owner-execute bit), every entry's
    atime/mtime ``when`` (symlinks not followed); ``root`` itself included."""
    stamp = (when * 10**9, when * 10**9)
    for top, dirs, files in os.walk(root, topdown=False):
        for name in (*files, *dirs):
            path = os.path.join(top, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(path, 0o755)
            elif not stat.S_ISLNK(mode):
                os.chmod(path, 0o755 if mode & 0o100 else 0o644)
            os.utime(path, ns=stamp, follow_symlinks=False)
    os.chmod(root, 0o755)
    os.utime(root, ns=stamp)
