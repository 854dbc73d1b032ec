"""The build context, and how ``COPY``/``ADD`` source names are found inside a root.

A :class:`BuildContext` is a directory (used in place), a tar file (plain, gzip, bzip2, xz or
zstd, sniffed by content) or ``-`` (a tar on stdin); archives are extracted safely into a
private temporary directory (:func:`lamina.build.unpack.extract_tar`; devices and FIFOs are
skipped) that :meth:`BuildContext.close` removes. The context is filtered by the ignore file
BuildKit would use (``<Dockerfile>.dockerignore`` beside the Dockerfile, else
``.dockerignore``): excluded paths are invisible to ``COPY``, as if never sent.

Source resolution (:func:`resolve_sources`; also used for ``COPY --from`` roots) follows
BuildKit's file op with ``FollowSymlinks`` and ``AllowWildcard``:

- a name is taken relative to the root: ``/x`` and ``../x`` both mean ``<root>/x``;
- every symlink on the way, *including the last one*, is resolved as if the root were ``/``
  (:func:`lamina._internal.rootpath.resolve_in_root`): a link to ``/etc/passwd`` reads
  ``<root>/etc/passwd``, never the host's; inside copied directories links are kept as links;
- wildcards (``*``, ``?``, ``[...]``, ``\\`` escapes: Go ``filepath.Match``, where ``*`` and
  ``?`` never match ``/``) start at the first component that holds one; the components before
  it are resolved as above and the rest is matched against the paths below, depth for depth,
  in byte order, without following links while walking;
- a name that is missing or excluded raises BuildError("file not found in build context or
  excluded by .dockerignore: NAME"); when *every* name is a wildcard that matched nothing, the
  classic builder's "no source files were specified" is raised, unless
  ``allow_empty_wildcard`` (BuildKit's own behaviour: a silent no-op);
- FIFOs, sockets and device nodes are refused with a clear BuildError before anything is
  opened (nested ones are refused by the copier), so a build never blocks reading them.

Messages carry no instruction prefix: the step executor adds ``Dockerfile:LINE`` context.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.rootpath import resolve_in_root, split_path
from lamina.dockerfile.dockerignore import ContextFilter, find_ignore_file, read_dockerignore
from lamina.errors import BuildError

__all__ = [
    "BuildContext",
    "SourcePath",
    "glob_match",
    "has_wildcard",
    "resolve_sources",
    "special_kind",
]

_SPECIAL = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def special_kind(mode: int) -> str | None:
    """A description of ``mode``'s file type if it must never be copied (FIFO, socket, device)."""
    return _SPECIAL.get(stat.S_IFMT(mode))


@lazy_dataclass(frozen=True)
class SourcePath:
    """One resolved source: ``root``/``path`` is what gets copied.

    ``path`` is clean and relative (``""`` is the root itself), every symlink resolved;
    ``name`` is the matched name before the last link was followed (its base name names the
    destination); ``stat`` is the ``lstat`` of ``root/path``; ``filter`` hides ignored paths
    (relative to ``root``); ``preserve_owner`` is False for the build context (files become
    0:0 unless ``--chown``) and True for ``COPY --from`` roots.
    """

    root: Path
    path: str
    name: str
    stat: os.stat_result
    filter: ContextFilter | None = None
    preserve_owner: bool = False

    @property
    def is_dir(self) -> bool:
        """Whether the resolved source is a directory."""
        return stat.S_ISDIR(self.stat.st_mode)

    @property
    def full_path(self) -> Path:
        """The absolute path of the resolved source."""
        return self.root / self.path if self.path else self.root


# -- Go filepath.Match ---------------------------------------------------------------------
def has_wildcard(component: str) -> bool:
    """Whether ``component`` holds an unescaped ``*``, ``?`` or ``[`` (fsutil's test)."""
    i = 0
    while i < len(component):
        if component[i] == "\\":
            i += 2
            continue
        if component[i] in "*?[":
            return True
        i += 1
    return False


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise BuildError(f"syntax error in pattern {pattern!r}")
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            i = _glob_class(pattern, i, out)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _glob_class(pattern: str, i: int, out: list[str]) -> int:
    """Translate a ``[...]`` class starting after ``[``; return the index after ``]``."""
    negated = i < len(pattern) and pattern[i] == "^"
    i += negated
    parts: list[str] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and parts:
            out.append(f"[{'^/' if negated else ''}{''.join(parts)}]")
            return i + 1
        lo, i = _class_char(pattern, i)
        if i < len(pattern) and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise BuildError(f"syntax error in pattern {pattern!r}")
            parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            parts.append(re.escape(lo))


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise BuildError(f"syntax error in pattern {pattern!r}")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise BuildError(f"syntax error in pattern {pattern!r}")
    return pattern[i], i + 1


def glob_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match(pattern, name)`` on Unix; BuildError for a malformed pattern."""
    return _glob_regex(pattern).fullmatch(name) is not None


# -- resolution ----------------------------------------------------------------------------
def _not_found(name: str) -> BuildError:
    return BuildError(
        f"file not found in build context or excluded by .dockerignore: {name}",
        hint="check the path is inside the build context and not matched by .dockerignore",
    )


def _visible(flt: ContextFilter | None, path: str) -> bool:
    return flt is None or not path or flt.is_included(path)


def _resolve_one(root: Path, name: str, flt: ContextFilter | None, shown: str) -> str:
    """The clean relative path ``name`` denotes in ``root`` (all links followed) or raise."""
    lexical = "/".join(split_path(name))
    if not _visible(flt, lexical):
        raise _not_found(shown)
    try:
        resolved = resolve_in_root(root, lexical)
    except OSError as exc:
        raise _not_found(shown) from exc
    rel = resolved.relative_to(root).as_posix()
    rel = "" if rel == "." else rel
    if not _visible(flt, rel) or not os.path.lexists(resolved):
        raise _not_found(shown)
    return rel


def _walk_matches(
    root: Path, base: str, pattern: list[str], flt: ContextFilter | None
) -> Iterator[str]:
    """Paths below ``base`` (relative to root) matching ``pattern`` component-wise, sorted."""
    regexes = [_glob_regex(p) for p in pattern]

    def walk(rel: str, depth: int) -> Iterator[str]:
        try:
            with os.scandir(root / rel if rel else root) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except (NotADirectoryError, FileNotFoundError):
            return
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            if regexes[depth].fullmatch(entry.name) is None or not _visible(flt, child):
                continue
            if depth + 1 == len(regexes):
                yield child
            elif entry.is_dir(follow_symlinks=False):
                yield from walk(child, depth + 1)

    yield from walk(base, 0)


def _make_source(
    root: Path, rel: str, name: str, flt: ContextFilter | None, owner: bool
) -> SourcePath:
    st = os.lstat(root / rel if rel else root)
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise BuildError(
            f"cannot copy {name}: it is {kind}",
            hint="only regular files, directories and symlinks can be copied",
        )
    return SourcePath(root, rel, name, st, flt, owner)


def resolve_sources(
    root: Path,
    names: Sequence[str],
    *,
    ignore: ContextFilter | None = None,
    preserve_owner: bool = False,
    allow_empty_wildcard: bool = False,
) -> list[SourcePath]:
    """Resolve COPY/ADD source ``names`` inside ``root``, in order (see the module docstring).

    Wildcard matches come in byte order of their paths. Reads only metadata.
    """
    root = Path(os.path.realpath(root))
    found: list[SourcePath] = []
    all_empty_wildcards = bool(names)
    for name in names:
        parts = split_path(name)
        cut = next((i for i, p in enumerate(parts) if has_wildcard(p)), None)
        if cut is None:
            all_empty_wildcards = False
            rel = _resolve_one(root, name, ignore, name)
            found.append(_make_source(root, rel, "/".join(parts), ignore, preserve_owner))
            continue
        try:
            base = _resolve_one(root, "/".join(parts[:cut]), ignore, name) if cut else ""
        except BuildError:
            continue
        for match in _walk_matches(root, base, parts[cut:], ignore):
            all_empty_wildcards = False
            rel = _resolve_one(root, match, ignore, match)
            found.append(_make_source(root, rel, match, ignore, preserve_owner))
    if all_empty_wildcards and not allow_empty_wildcard:
        raise BuildError(
            "no source files were specified",
            hint="the wildcard matched nothing in the build context (check .dockerignore)",
        )
    return found


# -- the context ---------------------------------------------------------------------------
class BuildContext:
    """A build context root with its ignore filter. Close it (or use ``with``) when done.

    ``root`` is a real directory path; for archive contexts it is a private temporary
    directory removed by :meth:`close` (idempotent). Directory contexts are used in place and
    never modified.
    """

    def __init__(
        self, root: Path, *, excludes: list[str], ignore_file: Path | None, temporary: bool
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.excludes = excludes
        self.ignore_file = ignore_file
        self.filter = ContextFilter(excludes=excludes)
        self._temporary = temporary

    @classmethod
    def open(
        cls,
        spec: str | Path,
        *,
        dockerfile: str | Path = "Dockerfile",
        stdin: BinaryIO | None = None,
        tmp_dir: Path | None = None,
    ) -> BuildContext:
        """Open a directory, a tar file or ``-`` (``stdin``, default sys.stdin: a tar, or else the
        Dockerfile with an empty context, :mod:`lamina.build.stdinctx`).

        ``dockerfile`` (relative to the context unless absolute; for archives, a path inside
        the archive) selects ``<Dockerfile>.dockerignore``. Raises BuildError when the context
        does not exist or is neither a directory nor a tar archive.
        """
        if str(spec) == "-":
            stream = stdin if stdin is not None else cast(BinaryIO, sys.stdin.buffer)
            from lamina.build import stdinctx
            from lamina.dockerfile.parser import MAX_DOCKERFILE

            head = stdinctx.read_head(stream, 1024)
            if not stdinctx.is_archive_head(head):  # `docker build - < Dockerfile`: no context
                data = head + stream.read(MAX_DOCKERFILE + 1 - len(head))
                return cls._dockerfile_only(data, tmp_dir)
            prefixed = cast(BinaryIO, stdinctx.Prefixed(head, stream))
            return cls._from_archive(prefixed, "stdin", dockerfile, tmp_dir)
        path = Path(spec)
        if path.is_dir():
            return cls._with_ignore(path, dockerfile, temporary=False)
        if not path.is_file():
            raise BuildError(f"unable to prepare context: path {str(spec)!r} not found")
        with path.open("rb") as f:
            return cls._from_archive(cast(BinaryIO, f), str(path), dockerfile, tmp_dir)

    @classmethod
    def _dockerfile_only(cls, data: bytes, tmp_dir: Path | None) -> BuildContext:
        """As the docker CLI: stdin that is not an archive is the Dockerfile, and the context
        is empty (COPY then finds nothing)."""
        from lamina.dockerfile.parser import MAX_DOCKERFILE

        if len(data) > MAX_DOCKERFILE:
            raise BuildError(f"the Dockerfile on stdin is over {MAX_DOCKERFILE} bytes")
        root = Path(tempfile.mkdtemp(prefix="lamina-context-", dir=tmp_dir))
        (root / "Dockerfile").write_bytes(data)
        return cls(root, excludes=[], ignore_file=None, temporary=True)

    @classmethod
    def _with_ignore(cls, root: Path, dockerfile: str | Path, *, temporary: bool) -> BuildContext:
        ignore = find_ignore_file(root, dockerfile)
        excludes = read_dockerignore(ignore.read_bytes(), source=ignore.name) if ignore else []
        return cls(root, excludes=excludes, ignore_file=ignore, temporary=temporary)

    @classmethod
    def _from_archive(
        cls, stream: BinaryIO, what: str, dockerfile: str | Path, tmp_dir: Path | None
    ) -> BuildContext:
        # the extractor (tarfile, the layer applier) is loaded only for archive contexts
        from lamina.build.unpack import extract_tar, open_archive

        root = Path(tempfile.mkdtemp(prefix="lamina-context-", dir=tmp_dir))
        try:
            data, _kind = open_archive(stream, f"reading build context {what}")
            extract_tar(data, root, special="skip", what=f"extracting build context {what}")
            name = Path(dockerfile)
            name = Path(*split_path(str(name))) if name.is_absolute() else name
            return cls._with_ignore(root, name, temporary=True)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    @property
    def is_temporary(self) -> bool:
        """Whether ``root`` is a private extraction (an archive context), removed on close."""
        return self._temporary

    def resolve(
        self, names: Sequence[str], *, allow_empty_wildcard: bool = False
    ) -> list[SourcePath]:
        """Resolve COPY/ADD source names in this context (see :func:`resolve_sources`)."""
        return resolve_sources(
            self.root, names, ignore=self.filter, allow_empty_wildcard=allow_empty_wildcard
        )

    def close(self) -> None:
        """Remove the extracted tree of an archive context; idempotent."""
        if self._temporary:
            self._temporary = False
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
