"""Image reference parsing: the distribution/reference grammar with Docker's normalisation."""

from __future__ import annotations

import pytest

from lamina import reference
from lamina.errors import InvalidReference
from lamina.oci import Digest

D = "sha256:" + "ab" * 32

# (input, canonical str(), familiar())
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/me/app:v1", "docker.io/me/app:v1", "me/app:v1"),
    ("me/app", "docker.io/me/app:latest", "me/app:latest"),
    ("a/b/c/d", "docker.io/a/b/c/d:latest", "a/b/c/d:latest"),
    ("myreg:5000/x/y:tag", "myreg:5000/x/y:tag", "myreg:5000/x/y:tag"),
    ("myreg:5000/x", "myreg:5000/x:latest", "myreg:5000/x:latest"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    ("example.com/a.b/c_d/e__f/g-h/i--j", "example.com/a.b/c_d/e__f/g-h/i--j:latest", None),
    ("Example.COM/x", "Example.COM/x:latest", "Example.COM/x:latest"),
    ("[::1]:5000/x:1", "[::1]:5000/x:1", "[::1]:5000/x:1"),
    ("[fe80::1]/x", "[fe80::1]/x:latest", None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", None),
    ("x:A_b.c-d", "docker.io/library/x:A_b.c-d", "x:A_b.c-d"),
    ("x:_", "docker.io/library/x:_", "x:_"),
    ("x:" + "a" * 128, "docker.io/library/x:" + "a" * 128, None),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
    (f"r.io:443/a/b:t@{D}", f"r.io:443/a/b:t@{D}", f"r.io:443/a/b:t@{D}"),
    ("a" * 20 + "/" + "b" * 20, f"docker.io/{'a' * 20}/{'b' * 20}:latest", None),
]

# (input, substring expected in the message)
INVALID = [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("docker.io/Me/app", "lowercase"),
    ("myreg:5000/Upper", "lowercase"),
    ("x:", "invalid tag"),
    ("x:.tag", "invalid tag"),
    ("x:-tag", "invalid tag"),
    ("x:" + "a" * 129, "invalid tag"),
    ("x:t@g", "digest"),
    ("x@sha256:abc", "digest"),
    ("x@sha256:" + "AB" * 32, "invalid sha256 digest"),
    ("x@md5:" + "ab" * 16, "unsupported digest algorithm"),
    ("x@", "digest"),
    ("a" * 64, "hexadecimal"),
    ("-x", "format"),
    ("x-", "format"),
    ("x..y", "format"),
    ("x___y", "format"),
    ("x//y", "format"),
    ("/x", "format"),
    ("x/", "format"),
    ("r.io/", "format"),
    ("-r.io/x", "format"),
    ("r.io:port/x", "format"),
    ("r.io:5000:6000/x", "format"),
    ("a b", "format"),
    ("x:tag:tag", "format"),
    ("docker.io/" + "a" * 250, "255"),
    ("r.io/" + "/".join(["abcdefghij"] * 23) + "/abcd", "255"),
]


@pytest.mark.parametrize(("text", "full", "familiar"), VALID)
def test_valid(text: str, full: str, familiar: str | None) -> None:
    ref = reference.parse(text)
    assert str(ref) == full
    if familiar is not None:
        assert ref.familiar() == familiar
    assert reference.parse(str(ref)) == ref
    assert reference.parse(ref.familiar()) == ref


@pytest.mark.parametrize(("text", "needle"), INVALID)
def test_invalid(text: str, needle: str) -> None:
    with pytest.raises(InvalidReference) as info:
        reference.parse(text)
    assert needle in info.value.message
    assert info.value.message == info.value.message.lower() or text in info.value.message


def test_fields_and_defaults() -> None:
    ref = reference.parse("myreg:5000/team/app")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("myreg:5000", "team/app", "latest", None)
    assert ref.name == "myreg:5000/team/app"
    pinned = reference.parse(f"app@{D}")
    assert pinned.tag is None and pinned.digest == Digest.parse(D)
    assert reference.parse("app", default_tag=False).tag is None


def test_with_tag_and_digest() -> None:
    ref = reference.parse(f"app:1@{D}")
    assert str(ref.with_tag("2")) == "docker.io/library/app:2"
    assert (
        str(reference.parse("app").with_digest(Digest.parse(D)))
        == f"docker.io/library/app:latest@{D}"
    )
    with pytest.raises(InvalidReference):
        ref.with_tag("-bad")
    assert reference.is_valid_tag("v1.0") and not reference.is_valid_tag(".v1")


def test_name_length_limit_exact() -> None:
    assert len(reference.parse("r.io/" + "a" * 250).name) == reference.NAME_MAX
    with pytest.raises(InvalidReference):
        reference.parse("r.io/" + "a" * 251)
    # library/ is added before the limit is checked, as Docker does.
    with pytest.raises(InvalidReference):
        reference.parse("a" * 240)


def test_hints_present() -> None:
    with pytest.raises(InvalidReference) as info:
        reference.parse("Foo/Bar")
    # An upper-case first component is a domain by Docker's rule; the path is still checked.
    assert info.value.hint == "try 'foo/bar'"
    with pytest.raises(InvalidReference) as info:
        reference.parse("MyImg:V1")  # tags may be upper-case: only the name is lowered
    assert info.value.hint == "try 'myimg:V1'"
    with pytest.raises(InvalidReference) as info:
        reference.parse("Bad:Name:x")  # lowering alone would not help: no "try" hint
    assert info.value.hint and info.value.hint.startswith("use [registry")
    with pytest.raises(InvalidReference) as info:
        reference.parse("a b")
    assert info.value.hint and "registry" in info.value.hint
