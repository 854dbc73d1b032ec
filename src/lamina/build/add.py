"""``ADD``: ``COPY`` plus local archive extraction and remote URLs (BuildKit's semantics).

For each source, in order:

- a local *regular file* that is a tar archive (plain, gzip, bzip2, xz or zstd — detected by
  content, never by name; :func:`lamina.build.unpack.is_archive`) is extracted into the
  destination, which is then always a directory (created like COPY's parents). Extraction
  follows BuildKit's ADD unpacker (:func:`lamina.build.unpack.extract_tar`): tar ownership is
  kept unless ``--chown``, ``--chmod`` does not apply, whiteout names are literal files, and
  nothing is written outside the destination. ``--unpack=false`` copies the archive as is;
- a URL is downloaded (:func:`lamina.build.remote.fetch_url`; ``--checksum`` verified) to a
  private temporary directory and then copied with COPY's rules as a 0600 file named after
  the URL path, dated by ``Last-Modified``; it is extracted only with ``--unpack=true``;
- a git URL (:func:`lamina.build.remote.is_git_url`) is resolved to a commit when the sources
  are resolved (:func:`lamina.build.git.resolve_ref`, so the step's cache key can hold the
  commit id), then fetched and checked out in the private temporary directory
  (:func:`lamina.build.git.fetch_checkout`) and its tree (or ``#ref:subdir``) copied with
  COPY's rules into ``dest`` as a directory: 0:0 unless ``--chown``, symlinks kept as links,
  ``.git`` only with ``--keep-git-dir=true``; ``--checksum`` is the commit id (or a prefix);
- anything else is copied exactly as :func:`lamina.build.copy.copy_into` does.

``--checksum`` with a local source is an error, as in BuildKit; ``ADD git@host:…`` uses the
``default`` ssh agent of the build (``--ssh default``) when one is given. With several sources the
destination must end in ``/`` (or be an existing directory), as for COPY.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, cast

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.rootpath import resolve_in_root
from lamina.build.chown import ModeSpec, Owner
from lamina.build.context import BuildContext, SourcePath, has_wildcard, resolve_sources
from lamina.build.copy import MULTI_SOURCE_ERROR, CopyResult, copy_into, ensure_dir, target_path
from lamina.build.git import Resolved, fetch_checkout, resolve_ref
from lamina.build.gitref import GitSpec, parse_git_url, with_checksum
from lamina.build.remote import fetch_url, is_git_url, is_url
from lamina.build.unpack import extract_tar, is_archive, open_archive
from lamina.errors import BuildError

__all__ = ["GitSource", "RemoteSource", "add_into", "resolve_add_sources"]


@lazy_dataclass(frozen=True)
class RemoteSource:
    """An ``ADD`` source that is an http(s) URL."""

    url: str


@lazy_dataclass(frozen=True)
class GitSource:
    """An ``ADD`` source that is a git repository, with the ref resolved (``git ls-remote``)."""

    spec: GitSpec
    resolved: Resolved

    def key(self) -> list[object]:
        """What this source adds to a cache key: the remote without credentials and the
        resolved object id (a moved branch is a new key, the same commit the same key)."""
        s = self.spec
        return [s.shown, s.subdir, self.resolved.refname, self.resolved.oid, s.checksum,
                s.keep_git_dir, s.submodules]  # fmt: skip


AddSource = SourcePath | RemoteSource | GitSource


def resolve_add_sources(
    context: BuildContext | None,
    names: Sequence[str],
    *,
    ssh_auth_sock: Path | None = None,
    timeout: float = 300.0,
) -> list[AddSource]:
    """Split ADD source ``names`` into URLs, git sources (refs resolved over the network:
    ``ssh_auth_sock`` serves ssh remotes) and local sources resolved in ``context``, in order.

    Raises BuildError for unknown git refs, missing local names, and (as COPY) when every
    local name is a wildcard that matched nothing and there is no URL.
    """
    out: list[AddSource] = []
    only_empty_wildcards = True
    for name in names:
        if is_git_url(name):
            spec = parse_git_url(name)
            out.append(GitSource(spec, resolve_ref(spec, ssh_auth_sock=ssh_auth_sock,
                                                   timeout=timeout)))  # fmt: skip
            only_empty_wildcards = False
            continue
        if is_url(name):
            out.append(RemoteSource(name))
            only_empty_wildcards = False
            continue
        if context is None:
            raise BuildError(f"ADD {name}: local sources need a build context")
        found = context.resolve([name], allow_empty_wildcard=True)
        if found or not any(has_wildcard(p) for p in name.split("/")):
            only_empty_wildcards = False
        out.extend(found)
    if names and only_empty_wildcards:
        raise BuildError("no source files were specified")
    return out


def add_into(
    rootfs: Path,
    sources: Sequence[AddSource],
    dest: str,
    *,
    workdir: str = "/",
    chown: Owner | tuple[int, int] | None = None,
    chmod: ModeSpec | str | int | None = None,
    checksum: str | None = None,
    unpack: bool | None = None,
    excludes: Sequence[str] = (),
    link: bool = False,
    timestamp_ns: int | None = None,
    tmp_dir: Path | None = None,
    http_timeout: float = 300.0,
    keep_git_dir: bool = False,
    ssh_auth_sock: Path | None = None,
) -> CopyResult:
    """Run one ``ADD`` into ``rootfs`` (see the module docstring); returns summed counts.

    Temporary downloads and checkouts live under ``tmp_dir`` (default: the system temp dir)
    and are removed before returning, whatever happens.
    """
    if checksum and any(isinstance(s, SourcePath) for s in sources):
        raise BuildError("checksum can't be specified for non-HTTP(S) sources")
    owner = Owner(*chown) if isinstance(chown, tuple) else chown
    full, names_dir = target_path(dest, workdir)
    if len(sources) > 1 and not names_dir and not _is_dir(rootfs, full):
        raise BuildError(MULTI_SOURCE_ERROR.replace("COPY", "ADD"))
    total = CopyResult()
    scratch = Path(tempfile.mkdtemp(prefix="lamina-add-", dir=tmp_dir))
    try:
        for i, source in enumerate(sources):
            if isinstance(source, GitSource):
                tree = _checkout(source, scratch / f"git-{i}", checksum, keep_git_dir,
                                 ssh_auth_sock, http_timeout)  # fmt: skip
                result = copy_into(
                    rootfs, [tree], full + "/", chown=owner, chmod=chmod, excludes=excludes,
                    timestamp_ns=timestamp_ns,
                )  # fmt: skip
                _add_counts(total, result)
                continue
            if isinstance(source, RemoteSource):
                fetched = fetch_url(
                    source.url, scratch, checksum=checksum or None, timeout=http_timeout
                )
                local = SourcePath(scratch, fetched.name, fetched.name, os.lstat(fetched.path))
                extract = unpack is True
            else:
                local = source
                extract = unpack is not False and not local.is_dir
            if extract and is_archive(local.full_path):
                _extract(rootfs, local, full, owner, timestamp_ns)
                continue
            dest_text = full + "/" if names_dir or len(sources) > 1 else full
            result = copy_into(
                rootfs,
                [local],
                dest_text,
                chown=owner,
                chmod=chmod,
                excludes=excludes,
                link=link,
                timestamp_ns=timestamp_ns,
            )
            _add_counts(total, result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return total


def _checkout(
    source: GitSource, directory: Path, checksum: str | None, keep_git_dir: bool,
    ssh_auth_sock: Path | None, timeout: float,
) -> SourcePath:  # fmt: skip
    """Fetch and check out ``source``; the tree (or its subdirectory) as a copy source."""
    spec = with_checksum(source.spec, checksum) if checksum else source.spec
    keep = spec.keep_git_dir if spec.keep_git_dir is not None else keep_git_dir
    done = fetch_checkout(
        spec, source.resolved, directory, keep_git_dir=keep, ssh_auth_sock=ssh_auth_sock,
        timeout=timeout,
    )  # fmt: skip
    try:
        found = resolve_sources(done.root, [spec.subdir or "."])
    except BuildError as exc:
        raise BuildError(
            f"git repository {spec.shown}: subdirectory {spec.subdir} not found at commit "
            f"{done.commit}"
        ) from exc
    return found[0]


def _is_dir(rootfs: Path, full: str) -> bool:
    try:
        return resolve_in_root(Path(os.path.realpath(rootfs)), full).is_dir()
    except OSError:
        return False


def _extract(
    rootfs: Path, source: SourcePath, full: str, owner: Owner | None, timestamp_ns: int | None
) -> None:
    target = ensure_dir(rootfs, full, chown=owner, timestamp_ns=timestamp_ns)
    what = f"extracting {source.name or source.path}"
    with open(source.full_path, "rb") as raw:
        stream, _kind = open_archive(cast(BinaryIO, raw), what)
        extract_tar(stream, target, owner=owner, what=what)


def _add_counts(total: CopyResult, part: CopyResult) -> None:
    total.files += part.files
    total.dirs += part.dirs
    total.symlinks += part.symlinks
    total.hardlinks += part.hardlinks
    total.bytes += part.bytes
