"""Transport references: ``transport:details`` parsing, round trips and errors."""

from __future__ import annotations

import pytest

from lamina import transports
from lamina.errors import InvalidReference
from lamina.transports.dockerarchive import DockerArchiveRef
from lamina.transports.local import LocalRef
from lamina.transports.oci import OciRef
from lamina.transports.ociarchive import OciArchiveRef

ROUND_TRIP = [
    ("oci:/tmp/layout", OciRef("/tmp/layout")),
    ("oci:./out:v1", OciRef("./out", "v1")),
    ("oci:out:example.com/app:1.0", OciRef("out", "example.com/app:1.0")),
    ("oci:out:a--b", OciRef("out", "a--b")),
    ("oci-archive:img.tar", OciArchiveRef("img.tar")),
    ("oci-archive:img.tar:latest", OciArchiveRef("img.tar", "latest")),
    ("docker-archive:d.tar", DockerArchiveRef("d.tar")),
    ("docker-archive:d.tar:@2", DockerArchiveRef("d.tar", index=2)),
    ("busybox", LocalRef("docker.io/library/busybox:latest")),
    ("busybox:1.36", LocalRef("docker.io/library/busybox:1.36")),
    ("localhost:5000/x", LocalRef("localhost:5000/x:latest")),
    ("local:oci:1", LocalRef("docker.io/library/oci:1")),
    ("local:busybox", LocalRef("docker.io/library/busybox:latest")),
]


@pytest.mark.parametrize(("text", "want"), ROUND_TRIP)
def test_parse_and_round_trip(text: str, want: transports.ImageRef) -> None:
    ref = transports.parse(text)
    assert ref == want
    assert transports.parse(str(ref)) == ref


def test_docker_archive_names_are_normalised() -> None:
    ref = transports.parse("docker-archive:/x/d.tar:myreg:5000/team/app:2")
    assert isinstance(ref, DockerArchiveRef)
    assert ref.path == "/x/d.tar"
    assert ref.name is not None and ref.name.familiar() == "myreg:5000/team/app:2"
    assert str(transports.parse("docker-archive:d.tar:busybox")) == (
        "docker-archive:d.tar:docker.io/library/busybox:latest"
    )
    assert transports.parse(str(ref)) == ref


def test_local_ids_are_read_only() -> None:
    ref = transports.parse("local:sha256:" + "ab" * 32)
    assert isinstance(ref, LocalRef) and not ref.is_name
    with pytest.raises(InvalidReference, match="cannot be written"):
        ref.destination()


def test_docker_transport_normalises_names() -> None:
    ref = transports.parse("docker://busybox")
    assert str(ref) == "docker://docker.io/library/busybox:latest"
    assert transports.parse(str(ref)) == ref
    with pytest.raises(InvalidReference):
        transports.parse("docker://Not A Name")


INVALID = [
    ("oci:", "empty path"),
    ("oci::v1", "empty path"),
    ("oci:dir:bad name", "invalid oci image name"),
    ("oci:dir:-x", "invalid oci image name"),
    ("oci:dir:", "invalid oci image name"),
    ("oci-archive:f.tar:a//b", "invalid oci-archive image name"),
    ("docker-archive:", "invalid docker-archive reference"),
    ("docker-archive:f.tar:", "invalid docker-archive reference"),
    ("docker-archive:f.tar:@x", "image index"),
    ("docker-archive:f.tar:Upper", "lowercase"),
    ("docker-archive:f.tar:x@sha256:" + "a" * 64, "digests are not allowed"),
    ("Busybox", "lowercase"),
    ("local:", "empty"),
]


@pytest.mark.parametrize(("text", "needle"), INVALID)
def test_invalid(text: str, needle: str) -> None:
    with pytest.raises(InvalidReference) as info:
        transports.parse(text)
    assert needle in info.value.message


def test_docker_archive_index_cannot_be_written() -> None:
    with pytest.raises(InvalidReference, match="only be read"):
        transports.parse("docker-archive:f.tar:@0").destination()


def test_every_table_row_imports() -> None:
    for name in transports.TRANSPORTS:
        cls = transports.transport_class(name)
        assert cls.transport == name
