"""``ADD <git url>`` sources: the syntax, parsed into a :class:`GitSpec` (no I/O).

Syntax (BuildKit's Dockerfile frontend):

- remotes: ``https://host/path.git``, ``http://…``, ``git://…``, ``ssh://…``, scp-like
  ``user@host:path``, and ``github.com/owner/repo`` (taken as ``https://``). ``file://`` and
  local paths are refused: a Dockerfile must not read host repositories outside its context;
- ``#ref:subdir`` fragment, or the query form ``?ref=|branch=|tag=|subdir=|checksum=|commit=|
  keep-git-dir=|submodules=`` (not both). No ref means the remote's default branch (``HEAD``);
- ``--checksum`` (or ``checksum=``) is a commit id or a prefix of one (BuildKit >= 1.16),
  checked against the commit actually fetched before anything is copied.

Untrusted input: a ref or subdirectory starting with ``-`` (option injection), a ref git
would refuse (``check-ref-format`` rules: ``..``, control characters, ``~^:?*[\\``, ...), a
subdirectory with ``..`` and a remote with whitespace are errors. :func:`redact` removes
``user:password@`` from anything shown.
"""

from __future__ import annotations

import re
import urllib.parse

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import BuildError

__all__ = ["GitSpec", "parse_git_url", "redact", "with_checksum"]

_SCP = re.compile(r"[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:")
_SCHEMES = ("http://", "https://", "git://", "ssh://")
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|^-|^/|/$|\.lock$|//")
_CREDS = re.compile(r"(?<=://)[^/@\s]+@")


@lazy_dataclass(frozen=True, kw_only=True)
class GitSpec:
    """A parsed git source. ``remote`` keeps credentials (it is what git is given); show
    :attr:`shown` instead. ``ref`` is ``""`` for the default branch, ``subdir`` ``""`` for the
    root; ``keep_git_dir`` is None when the URL does not say."""

    remote: str
    ref: str = ""
    subdir: str = ""
    checksum: str = ""
    keep_git_dir: bool | None = None
    submodules: bool = True

    @property
    def shown(self) -> str:
        """The remote without ``user:password@`` (safe for messages and logs)."""
        return redact(self.remote)


def redact(text: str) -> str:
    """``text`` with every ``scheme://user[:password]@`` reduced to ``scheme://``."""
    return _CREDS.sub("", text)


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("", "1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise BuildError(f"invalid git url query {key}={value!r}: expected true or false")


def _query(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key in out:
            raise BuildError(f"invalid git url: {key}= given twice")
        out[key] = value
    return out


def parse_git_url(text: str) -> GitSpec:
    """Parse an ``ADD`` git source (see the module docstring); BuildError when malformed."""
    remote, _, fragment = text.partition("#")
    query = ""
    if remote.startswith(_SCHEMES):
        remote, _, query = remote.partition("?")
    elif remote.startswith("github.com/"):
        remote = "https://" + remote
    elif not _SCP.match(remote):
        raise BuildError(f"not a git url: {redact(text)}", hint="use https://, ssh:// or git@")
    ref, _, subdir = fragment.partition(":")
    spec: dict[str, object] = dict(ref=ref, subdir=subdir, checksum="", keep=None)
    spec["submodules"] = True
    if query:
        if fragment:
            raise BuildError("invalid git url: both a #fragment and ?query were given")
        spec.update(_from_query(_query(query)))
    return _checked(remote, spec)


def _from_query(q: dict[str, str]) -> dict[str, object]:
    unknown = set(q) - {"ref", "branch", "tag", "subdir", "checksum", "commit", "keep-git-dir",
                        "submodules"}  # fmt: skip
    if unknown:
        raise BuildError(f"invalid git url: unknown query parameter {sorted(unknown)[0]}")
    refs = [f"refs/heads/{q['branch']}"] if "branch" in q else []
    refs += [f"refs/tags/{q['tag']}"] if "tag" in q else []
    refs += [q["ref"]] if "ref" in q else []
    if len(refs) > 1:
        raise BuildError("invalid git url: give only one of ref=, branch= and tag=")
    if "checksum" in q and "commit" in q and q["checksum"] != q["commit"]:
        raise BuildError("invalid git url: checksum= and commit= differ")
    return dict(
        ref=refs[0] if refs else "",
        subdir=q.get("subdir", ""),
        checksum=q.get("checksum") or q.get("commit") or "",
        keep=_bool("keep-git-dir", q["keep-git-dir"]) if "keep-git-dir" in q else None,
        submodules=_bool("submodules", q.get("submodules", "true")),
    )


def _checked(remote: str, spec: dict[str, object]) -> GitSpec:
    ref, subdir, checksum = str(spec["ref"]), str(spec["subdir"]), str(spec["checksum"]).lower()
    if not remote or remote.startswith("-") or any(c in remote for c in "\x00\n\r\t "):
        raise BuildError(f"invalid git url {redact(remote)!r}")
    if ref and _BAD_REF.search(ref):
        raise BuildError(f"invalid git ref {ref!r} in {redact(remote)}")
    parts = [p for p in subdir.split("/") if p not in ("", ".")]
    if ".." in parts or subdir.startswith("-"):
        raise BuildError(f"invalid git subdirectory {subdir!r}: it must stay inside the repository")
    if checksum and not re.fullmatch(r"[0-9a-f]{1,64}", checksum):
        raise BuildError(
            f"invalid checksum {checksum!r} for git source {redact(remote)}",
            hint="for git sources --checksum is the commit id (or a prefix of it)",
        )
    keep = spec["keep"]
    return GitSpec(
        remote=remote, ref=ref, subdir="/".join(parts), checksum=checksum,
        keep_git_dir=keep if isinstance(keep, bool) else None,
        submodules=bool(spec["submodules"]),
    )  # fmt: skip


def with_checksum(spec: GitSpec, checksum: str) -> GitSpec:
    """``spec`` with ``ADD --checksum`` applied (a commit id or prefix; BuildError otherwise,
    or when the URL already names a different checksum)."""
    value = checksum.strip().lower()
    if spec.checksum and not (value.startswith(spec.checksum) or spec.checksum.startswith(value)):
        raise BuildError(f"git source {spec.shown}: --checksum differs from the URL's checksum=")
    return _checked(
        spec.remote,
        dict(ref=spec.ref, subdir=spec.subdir, checksum=max(value, spec.checksum, key=len),
             keep=spec.keep_git_dir, submodules=spec.submodules),
    )  # fmt: skip
