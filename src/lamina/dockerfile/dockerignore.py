"""``.dockerignore`` files: reading them, finding the right one, and applying them.

This is the entry point for build-context filtering; it re-exports the matcher
(``patternmatch``) and the filtered walk (``contextwalk``) so callers need one import::

    ignore = find_ignore_file(context_dir, "Dockerfile")
    excludes = read_dockerignore(ignore.read_bytes()) if ignore else []
    for entry in walk_context(context_dir, excludes=excludes):
        ...

Reading follows moby's ``ignorefile.ReadAll``: a UTF-8 BOM is dropped; a line whose first
character is ``#`` is a comment (`` #x`` is the pattern ``#x``); lines are trimmed and blank ones
skipped; after ``!`` the rest is trimmed again; each pattern is ``filepath.Clean``-ed and one
leading ``/`` removed, so every pattern is anchored at the context root (unlike ``.gitignore``).
A lone ``!`` is kept here and rejected when the matcher is built.

Which file BuildKit uses: ``<Dockerfile>.dockerignore`` next to the Dockerfile if it exists
(``Dockerfile2.dockerignore`` for ``-f Dockerfile2``), instead of ``.dockerignore`` at the
context root. The Dockerfile and the ignore file may exclude themselves; that only affects what
``COPY`` sees, not the build.
"""

from __future__ import annotations

from pathlib import Path

from lamina.dockerfile.contextwalk import ContextEntry, ContextFilter, walk_context
from lamina.dockerfile.patternmatch import MatchInfo, Pattern, PatternMatcher, go_clean
from lamina.errors import DockerfileError

__all__ = [
    "IGNORE_FILE_NAME",
    "MAX_LINE_BYTES",
    "ContextEntry",
    "ContextFilter",
    "MatchInfo",
    "Pattern",
    "PatternMatcher",
    "find_ignore_file",
    "read_dockerignore",
    "walk_context",
]

IGNORE_FILE_NAME = ".dockerignore"
MAX_LINE_BYTES = 64 * 1024
"""Longest line Go's ``bufio.Scanner`` (and so BuildKit) accepts in an ignore file."""

_BOM = "\ufeff"
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)


def read_dockerignore(data: bytes | str, *, source: str = IGNORE_FILE_NAME) -> list[str]:
    """Turn the contents of an ignore file into its pattern list, in file order.

    Bytes are decoded as UTF-8 with ``surrogateescape``, so undecodable bytes survive and
    still compare equal to the same bytes in file names from ``os.scandir``. Raises
    DockerfileError (``path=source``) for a line longer than ``MAX_LINE_BYTES``.
    """
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    if text.startswith(_BOM):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    patterns: list[str] = []
    for number, line in enumerate(lines, start=1):
        if len(line.encode("utf-8", "surrogateescape")) >= MAX_LINE_BYTES:
            raise DockerfileError(
                f"error reading {source}: line too long", path=source, line=number
            )
        if line.endswith("\r"):
            line = line[:-1]
        if line.startswith("#"):
            continue
        pattern = line.strip(_GO_SPACE)
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip(_GO_SPACE)
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def find_ignore_file(
    context_dir: Path | str, dockerfile_name: Path | str = "Dockerfile"
) -> Path | None:
    """The ignore file BuildKit would use for this Dockerfile, or None if there is none.

    ``dockerfile_name`` is relative to ``context_dir`` unless absolute. ``<name>.dockerignore``
    beside the Dockerfile wins over ``<context>/.dockerignore``. Only regular files (after
    following symlinks) count. Reads nothing but directory metadata.
    """
    context = Path(context_dir)
    dockerfile = Path(dockerfile_name)
    if not dockerfile.is_absolute():
        dockerfile = context / dockerfile
    candidates = (
        dockerfile.with_name(dockerfile.name + IGNORE_FILE_NAME),
        context / IGNORE_FILE_NAME,
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
