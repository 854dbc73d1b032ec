"""Kaniko's git build contexts: ``--context git://HOST/PATH.git[#REF[#COMMIT]]``.

As in Kaniko, ``git://`` names the repository, not the protocol: it is fetched over
``https://`` (``GIT_PULL_METHOD=http`` for plain HTTP); ``REF`` is a full ref name
(``refs/heads/main``, ``refs/tags/v1``, ``refs/pull/7/head``) or a branch name, and a second
``#COMMIT`` pins (and checks) the commit. Kaniko's ``--git`` options apply: ``branch=NAME``
(when the URL has no ref), ``recurse-submodules=false``; ``single-branch`` and
``insecure-skip-tls`` are accepted (a single ref is always fetched). ``GIT_USERNAME`` and
``GIT_PASSWORD`` (or ``GIT_TOKEN``) authenticate over HTTP(S); they never appear in messages.

The checkout is made by :mod:`lamina.build.git` (shallow fetch of exactly that ref, clean git
environment, no hooks, every ``.git`` removed, times set to the commit time) into a private
directory under the store's ``tmp``, removed when the build is done.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path

from lamina.build.git import fetch_checkout, resolve_ref
from lamina.build.gitref import GitSpec
from lamina.errors import UsageError
from lamina.store import Store

GIT_OPTIONS = ("branch", "single-branch", "recurse-submodules", "insecure-skip-tls")


def parse_git_options(values: Mapping[str, str]) -> dict[str, str]:
    """Check Kaniko's ``--git`` keys (``branch``, ``single-branch``, ``recurse-submodules``,
    ``insecure-skip-tls``); UsageError for others."""
    for key in values:
        if key not in GIT_OPTIONS:
            raise UsageError(f"invalid --git option {key!r}", hint="use " + ", ".join(GIT_OPTIONS))
    return dict(values)


def git_spec(
    context: str,
    *,
    options: Mapping[str, str] | None = None,
    pull_method: str = "https",
    credentials: tuple[str, str] | None = None,
) -> GitSpec:
    """The :class:`GitSpec` of a ``git://`` context (see the module docstring)."""
    if pull_method not in ("https", "http"):
        raise UsageError(f"GIT_PULL_METHOD={pull_method!r}: use https or http")
    rest = context.removeprefix("git://")
    location, _, fragment = rest.partition("#")
    ref, _, commit = fragment.partition("#")
    opts = dict(options or {})
    if not ref and opts.get("branch"):
        ref = "refs/heads/" + opts["branch"]
    if not location or "/" not in location:
        raise UsageError(f"--context {context}: expected git://HOST/PATH[#REF[#COMMIT]]")
    auth = ""
    if credentials is not None:
        user, secret = (urllib.parse.quote(c, safe="") for c in credentials)
        auth = f"{user}:{secret}@"
    return GitSpec(
        remote=f"{pull_method}://{auth}{location}",
        ref=ref,
        checksum=commit.lower(),
        submodules=opts.get("recurse-submodules", "true").lower() != "false",
    )


@contextlib.contextmanager
def open_git_context(store: Store, spec: GitSpec, sub_path: str = "") -> Iterator[Path]:
    """A checkout of ``spec`` (its ``sub_path``), removed on exit. BuildError (naming the
    repository without credentials) when it cannot be fetched."""
    if any(part == ".." for part in Path(sub_path).parts) or Path(sub_path).is_absolute():
        raise UsageError(f"--context-sub-path {sub_path}: must stay inside the repository")
    tmp = store.root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="git-context-", dir=tmp))
    try:
        checkout = fetch_checkout(spec, resolve_ref(spec), scratch)
        root = checkout.root / sub_path if sub_path else checkout.root
        if not root.is_dir():
            raise UsageError(f"--context-sub-path {sub_path}: not a directory in the repository")
        yield root
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_GIT_SUFFIX = r"\.git(?:#.+)?$"


def is_git_url(context: str) -> bool:
    """The docker CLI's rule for a ``build`` context that is a repository: ``git://``,
    ``git@``, ``github.com/`` prefixes, or an ``http(s)://`` URL ending in ``.git[#…]`` (a local
    directory of that name wins, as in Docker: the caller checks that first)."""
    import re

    if context.startswith(("http://", "https://")):
        return re.search(_GIT_SUFFIX, context) is not None
    return context.startswith(("git://", "git@", "github.com/"))


@contextlib.contextmanager
def git_url_context(store: Store, url: str) -> Iterator[Path]:
    """``lamina build https://host/repo.git#REF:SUBDIR``: BuildKit's git context syntax (the
    one ``ADD`` takes, :mod:`lamina.build.gitref`); the checkout's SUBDIR, removed on exit."""
    from lamina.build.gitref import parse_git_url

    spec = parse_git_url(url)
    with open_git_context(store, spec, spec.subdir) as root:
        yield root


__all__ = [
    "GIT_OPTIONS",
    "git_spec",
    "git_url_context",
    "is_git_url",
    "open_git_context",
    "parse_git_options",
]
