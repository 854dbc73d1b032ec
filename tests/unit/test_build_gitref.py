"""``ADD <git url>`` syntax: fragments, queries, checksums and hostile input (no I/O)."""

from __future__ import annotations

import pytest

from lamina.build.gitref import GitSpec, parse_git_url, redact, with_checksum
from lamina.build.remote import is_git_url
from lamina.errors import BuildError

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://h/o/r.git", GitSpec(remote="https://h/o/r.git")),
        ("https://h/o/r.git#v1.2", GitSpec(remote="https://h/o/r.git", ref="v1.2")),
        (
            "https://h/r.git#main:docs/x",
            GitSpec(remote="https://h/r.git", ref="main", subdir="docs/x"),
        ),
        ("https://h/r.git#:./docs/", GitSpec(remote="https://h/r.git", subdir="docs")),
        ("git@github.com:o/r.git#dev", GitSpec(remote="git@github.com:o/r.git", ref="dev")),
        ("github.com/o/r", GitSpec(remote="https://github.com/o/r")),
        ("ssh://git@h:2222/r.git", GitSpec(remote="ssh://git@h:2222/r.git")),
        (
            "https://h/r.git?branch=b&subdir=s",
            GitSpec(remote="https://h/r.git", ref="refs/heads/b", subdir="s"),
        ),
        ("https://h/r.git?tag=v1", GitSpec(remote="https://h/r.git", ref="refs/tags/v1")),
        ("https://h/r.git?ref=pull/1/head", GitSpec(remote="https://h/r.git", ref="pull/1/head")),
        (f"https://h/r.git?commit={SHA}", GitSpec(remote="https://h/r.git", checksum=SHA)),
        (
            "https://h/r.git?keep-git-dir=true&submodules=false",
            GitSpec(remote="https://h/r.git", keep_git_dir=True, submodules=False),
        ),
    ],
)
def test_parse(text: str, expected: GitSpec) -> None:
    assert is_git_url(text)
    assert parse_git_url(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://h/r.git#-uploadpack=x", "invalid git ref"),
        ("https://h/r.git#a..b", "invalid git ref"),
        ("https://h/r.git#a b", "invalid git ref"),
        ("https://h/r.git#main:../../etc", "invalid git subdirectory"),
        ("https://h/r.git#main:-x", "invalid git subdirectory"),
        ("https://h/r.git?nope=1", "unknown query parameter nope"),
        ("https://h/r.git?branch=a&tag=b", "only one of"),
        ("https://h/r.git?ref=a#b", "both a #fragment and "),
        ("https://h/r.git?checksum=xyz", "invalid checksum"),
        ("https://h/r.git?submodules=maybe", "expected true or false"),
        ("ext::sh -c x", "not a git url"),
        ("fd::3", "not a git url"),
        ("file:///srv/r.git", "not a git url"),
        ("/srv/r.git", "not a git url"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(BuildError, match=message) as exc:
        parse_git_url(text)
    assert "\n" not in exc.value.message


def test_credentials_are_never_shown() -> None:
    spec = parse_git_url("https://user:hunter2@h/r.git#nope")
    assert spec.remote == "https://user:hunter2@h/r.git"
    assert spec.shown == "https://h/r.git"
    assert redact("fatal: unable to access 'https://u:p@h/x/': 403") == (
        "fatal: unable to access 'https://h/x/': 403"
    )
    with pytest.raises(BuildError) as exc:
        parse_git_url("https://user:hunter2@h/r.git#a..b")
    assert "hunter2" not in exc.value.message


def test_checksum_flag() -> None:
    spec = parse_git_url("https://h/r.git#v1")
    assert with_checksum(spec, SHA[:8].upper()).checksum == SHA[:8]
    assert with_checksum(with_checksum(spec, SHA[:8]), SHA).checksum == SHA
    with pytest.raises(BuildError, match="differs"):
        with_checksum(parse_git_url(f"https://h/r.git?checksum={SHA}"), "ff")
    with pytest.raises(BuildError, match="invalid checksum"):
        with_checksum(spec, "sha256:" + "0" * 64)
