"""``lamina cp`` with ``-``: tar streams to stdout and from stdin, as ``docker cp``.

Round trips run as root and rootless (the CI user, :mod:`lamina.testing.rootless`); the safety
tests (a container symlink to the host's /etc, hostile tars on stdin) run as root, where an
escape would do the most harm. Every test checks on exit that the store is clean.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.testing import rootless
from lamina.testing.cli import Result
from lamina.testing.rootless import StoreCli, assert_store_clean

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

BOTH = pytest.mark.parametrize(
    "store", ["root", pytest.param("rootless", marks=pytest.mark.needs_rootless)], indirect=True
)
LONG = "n" * 120  # a name past ustar's 100 bytes: needs a PAX record
TREE = (
    "mkdir -p /d/sub /d/empty && echo hi > /d/sub/f && chown 1000:1000 /d/sub/f"
    " && ln /d/sub/f /d/hard && ln -s /etc /d/etclink && ln -s sub/f /d/rel"
    " && printf '#!/bin/sh\\n' > /d/suid && chmod 4755 /d/suid && chmod 700 /d/empty"
    f" && echo long > /d/sub/{LONG} && touch -d @1600000000 /d/sub/f"
)


@pytest.fixture
def store(
    request: pytest.FixtureRequest, cli: object, busybox_tar: Path, tmp_path: Path
) -> Iterator[StoreCli]:
    """A store with busybox, run as root or rootless; clean on exit."""
    if getattr(request, "param", "root") == "rootless":
        with rootless.ci_store(busybox_tar) as s:
            yield s
        return
    s = StoreCli(cli, root=cli.root, work=tmp_path, rootless=False)  # type: ignore[arg-type, attr-defined]
    s("import", str(busybox_tar), "busybox")
    yield s
    assert_store_clean(s)


def gnu_listing(data: bytes, tmp_path: Path) -> list[str]:
    """``tar -tv --numeric-owner`` of ``data`` (GNU tar accepts it), dates cut off."""
    path = tmp_path / "listing.tar"
    path.write_bytes(data)
    out = subprocess.run(
        ["tar", "-tv", "--numeric-owner", "-f", str(path)], capture_output=True, check=True
    ).stdout.decode()
    # "-rw-r--r-- 1000/1000 3 2026-11-28 00:27 d/hard": drop the date and time
    return [" ".join(f[:3] + f[5:]) for f in (line.split() for line in out.splitlines())]


def members_of(data: bytes) -> list[tarfile.TarInfo]:
    """The members of the tar ``data``."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def one_line_error(res: Result) -> str:
    """The error line of a failed run (exit 1, no traceback, one ``error:`` line)."""
    assert res.code == 1, res
    assert "Traceback" not in res.err
    lines = [ln for ln in res.err.splitlines() if not ln.startswith("hint:")]
    assert len(lines) == 1, res.err
    return lines[0]


@BOTH
def test_tar_round_trip_out_and_in(store: StoreCli, tmp_path: Path) -> None:
    """A tree with links, hard links, a setuid file and a long name: out of a stopped
    container to stdout, into a running one from stdin, out again byte for byte."""
    store("run", "--name", "src", "busybox", "sh", "-c", TREE)
    first = store("cp", "src:/d", "-").raw
    listing = gnu_listing(first, tmp_path)
    assert listing == [
        "drwxr-xr-x 0/0 0 d/",
        "drwx------ 0/0 0 d/empty/",
        "lrwxrwxrwx 0/0 0 d/etclink -> /etc",
        "-rw-r--r-- 1000/1000 3 d/hard",
        "lrwxrwxrwx 0/0 0 d/rel -> sub/f",
        "drwxr-xr-x 0/0 0 d/sub/",
        "hrw-r--r-- 1000/1000 0 d/sub/f link to d/hard",
        f"-rw-r--r-- 0/0 5 d/sub/{LONG}",
        "-rwsr-xr-x 0/0 10 d/suid",
    ]
    assert gnu_listing(store("cp", "src:/d/.", "-").raw, tmp_path)[0] == "drwx------ 0/0 0 empty/"
    store("run", "-d", "--name", "dst", "busybox", "sleep", "600")
    store("exec", "dst", "sh", "-c", "mkdir /in && ln -s /in /inlink")
    assert store("cp", "-", "dst:/inlink", stdin=first).out == ""  # resolved inside: /in
    again = store("cp", "dst:/in/d", "-").raw
    assert again == first  # owners, modes, times, links and names all survived
    shown = store("exec", "dst", "sh", "-c", "cat /in/d/rel; ls -ln /in/d/sub/f; ls -l /in/d/suid")
    assert shown.out.startswith("hi\n-rw-r--r--    2 1000     1000")
    assert "-rwsr-xr-x" in shown.out
    store("stop", "-t", "0", "dst")
    with tarfile.open(fileobj=io.BytesIO(store("cp", "dst:/in/d/sub/f", "-").raw)) as tar:
        (info,) = tar.getmembers()  # a file alone: named after it, a regular file again
        assert (info.name, info.type, info.mode, info.uid, info.gid, info.mtime) == (
            "f",
            tarfile.REGTYPE,
            0o644,
            1000,
            1000,
            1600000000,
        )
        assert tar.extractfile(info).read() == b"hi\n"  # type: ignore[union-attr]


def test_symlink_to_host_etc_is_a_link_never_host_content(store: StoreCli, tmp_path: Path) -> None:
    """A container link to /etc is archived as a link; through it, the container's /etc."""
    store("run", "--name", "c", "busybox", "sh", "-c",
          "ln -s /etc /hostetc && ln -s /etc/passwd /pw && ln -s ../../../../etc /up")  # fmt: skip
    for path, target in (("/hostetc", "/etc"), ("/pw", "/etc/passwd"), ("/up", "../../../../etc")):
        members = members_of(store("cp", f"c:{path}", "-").raw)
        assert [(m.name, m.issym(), m.linkname) for m in members] == [(path[1:], True, target)]
    inside = sorted(store("run", "--rm", "busybox", "ls", "-A", "/etc").out.split())
    for path in ("/hostetc/.", "/up/."):
        names = [m.name for m in members_of(store("cp", f"c:{path}", "-").raw)]
        assert sorted(n for n in names if "/" not in n) == inside
        assert "debian_version" not in names and os.path.exists("/etc/debian_version")
    # a tar sent to the link lands in the container's /etc, not the host's
    assert not os.path.exists("/etc/lamina-cp-probe")
    store("cp", "-", "c:/hostetc", stdin=_tar([("lamina-cp-probe", b"x")]))
    assert not os.path.exists("/etc/lamina-cp-probe")
    names = [m.name for m in members_of(store("cp", "c:/etc/.", "-").raw)]
    assert "lamina-cp-probe" in names


def _tar(entries: list[tuple[str, bytes | str | None]], *, link: str | None = None) -> bytes:
    """A tar of files (bytes), symlinks (str: the target) and dirs (None), in order; with
    ``link``, a final hard link ``x`` -> ``link``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("x")
            info.type, info.linkname = tarfile.LNKTYPE, link
            tar.addfile(info)
    return out.getvalue()


def test_hostile_tar_on_stdin_is_refused_in_one_line(store: StoreCli, tmp_path: Path) -> None:
    """``..``, links out, a file through a symlink, a hard link to a host path, a corrupt
    header: one line each, nothing outside the container; ``/abs`` and ``.wh.`` names are
    ordinary names inside the destination (nothing is deleted)."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("host")
    store("run", "-d", "--name", "c", "busybox", "sleep", "600")
    store("exec", "c", "mkdir", "-p", "/dst/inner")
    hostile = {
        "climbs": _tar([("../escaped", b"x")]),
        "deep climb": _tar([("a/../../../../../../" + str(host / "escaped"), b"x")]),
        "via symlink": _tar([("l", str(host)), ("l/escaped", b"x")]),
        "via relative symlink": _tar(
            [("r", "../../../../../../../../" + str(host)), ("r/escaped", b"x")]
        ),
        "hard link out": _tar([], link=str(host / "keep")),
        "hard link to /etc": _tar([], link="/etc/passwd"),
        "dir over file": _tar([("inner", b"file over a directory")]),
    }
    good = _tar([("ok", b"1"), ("more", b"2")])
    corrupt = bytearray(good)
    corrupt[512 + 512 + 148 : 512 + 512 + 156] = b"0000000\0"  # the 2nd header's checksum
    hostile["corrupt header"] = bytes(corrupt)
    for what, data in hostile.items():
        line = one_line_error(store("cp", "-", "c:/dst", stdin=data, check=False))
        assert line.startswith("lamina: error: cp - c:/dst: "), (what, line)
    assert sorted(os.listdir(host)) == ["keep"] and (host / "keep").read_text() == "host"
    store("exec", "c", "sh", "-c", "test -d /dst/inner && test ! -e /escaped")
    store("cp", "-", "c:/dst", stdin=_tar([("/abs", b"a\n"), (".wh.inner", b""),
                                          ("inner/.wh..wh..opq", b"")]))  # fmt: skip
    assert not os.path.exists("/abs")
    res = store("exec", "c", "sh", "-c", "cat /dst/abs; ls -A /dst; ls -A /dst/inner")
    # members before a refusal stay, as with Docker: the links l and r (inside), "ok"
    assert res.out.split() == ["a", ".wh.inner", "abs", "inner", "l", "ok", "r", ".wh..wh..opq"]


def test_tar_into_a_non_directory_is_one_line(store: StoreCli) -> None:
    """As Docker: the destination of a tar stream must be an existing directory."""
    store("create", "--name", "c", "busybox", "true")
    data = _tar([("f", b"x")])
    assert "c:/bin/busybox is not a directory" in one_line_error(
        store("cp", "-", "c:/bin/busybox", stdin=data, check=False)
    )
    assert "no such directory in the container: c:/nowhere" in one_line_error(
        store("cp", "-", "c:/nowhere", stdin=data, check=False)
    )
    assert "no such file or directory in the container" in one_line_error(
        store("cp", "c:/nowhere", "-", check=False)
    )
    assert "exactly one of SRC and DEST" in one_line_error(store("cp", "-", "-", check=False))


def test_destination_rules_of_docker_cp(store: StoreCli, tmp_path: Path) -> None:
    """A DEST ending in ``/`` must be an existing directory for a file; a directory never
    replaces a file; a missing DEST without ``/`` is the new name (both directions)."""
    store("run", "--name", "c", "busybox", "sh", "-c", "mkdir -p /d && echo 1 > /d/a")
    out = tmp_path / "out"
    out.mkdir()
    (out / "file").write_text("keep\n")
    assert "destination directory" in one_line_error(
        store("cp", "c:/d/a", f"{out}/newdir/", check=False)
    )
    assert not (out / "newdir").exists()
    assert "is not a directory" in one_line_error(
        store("cp", "c:/d/a", f"{out}/file/", check=False)
    )
    for src in ("c:/d", "c:/d/."):
        assert "cannot overwrite non-directory" in one_line_error(
            store("cp", src, f"{out}/file", check=False)
        )
    assert (out / "file").read_text() == "keep\n"
    store("cp", "c:/d/a", f"{out}/renamed")
    assert (out / "renamed").read_text() == "1\n"
    assert "does not exist in the container" in one_line_error(
        store("cp", str(out / "file"), "c:/nowhere/", check=False)
    )
    store("cp", str(out / "file"), "c:/d/new")
    store("cp", "c:/d/new", f"{out}/back")
    assert (out / "back").read_text() == "keep\n"


def test_follow_link_out_resolves_inside_the_container(store: StoreCli, tmp_path: Path) -> None:
    """``cp -L CTR:LINK`` copies what LINK points to *in the container* (absolute, relative and
    climbing targets alike) under LINK's name, to a directory and as a tar; links below it stay
    links; a loop or a dangling link is one line."""
    store("run", "--name", "c", "busybox", "sh", "-c",
          "mkdir -p /data/sub && echo inside > /data/f && ln -s ../f /data/sub/up"
          " && ln -s /data /dlink && ln -s data/f /flink && ln -s ../../../../etc/passwd /pw"
          " && ln -s /etc /hostetc && ln -s /l2 /l1 && ln -s /l1 /l2"
          " && ln -s /gone /dangling")  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    store("cp", "c:/flink", str(out / "plain"))
    assert os.readlink(out / "plain") == "data/f"  # without -L: the link itself
    for src in ("flink", "dlink", "pw", "hostetc"):
        store("cp", "-L", f"c:/{src}", str(out))
    assert not (out / "flink").is_symlink() and (out / "flink").read_text() == "inside\n"
    assert (out / "dlink" / "f").read_text() == "inside\n"
    assert os.readlink(out / "dlink" / "sub" / "up") == "../f"  # only SRC is followed
    store("cp", "c:/etc/passwd", str(out / "container-passwd"))
    assert (out / "pw").read_bytes() == (out / "container-passwd").read_bytes()
    assert (out / "pw").read_bytes() != Path("/etc/passwd").read_bytes()
    assert not (out / "hostetc" / "debian_version").exists()
    assert os.path.exists("/etc/debian_version") and (out / "hostetc" / "passwd").is_file()
    [member] = members_of(store("cp", "--follow-link", "c:/flink", "-").raw)
    assert (member.name, member.isreg(), member.size) == ("flink", True, len("inside\n"))
    names = [m.name for m in members_of(store("cp", "-L", "c:/hostetc", "-").raw)]
    assert names[0] == "hostetc" and "hostetc/passwd" in names
    assert "hostetc/debian_version" not in names
    assert [m.name for m in members_of(store("cp", "-L", "c:/dlink/.", "-").raw)] == [
        "f", "sub", "sub/up",
    ]  # fmt: skip
    for src, text in (("l1", "following /l1 in the container"), ("dangling", "no such file")):
        assert text in one_line_error(store("cp", "-L", f"c:/{src}", str(out), check=False))
        assert text in one_line_error(store("cp", "-L", f"c:/{src}", "-", check=False))
    assert not (out / "l1").exists() and not (out / "dangling").exists()


def test_follow_link_in_copies_the_host_target_under_the_link_name(
    store: StoreCli, tmp_path: Path
) -> None:
    """``cp -L HOSTLINK CTR:DIR``: the host link's target, named after the link; links inside
    it stay links; without -L the link itself is copied."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("host file\n")
    (real / "inner").symlink_to("f")
    (tmp_path / "dirlink").symlink_to(real)
    (tmp_path / "filelink").symlink_to(real / "f")
    store("run", "--name", "c", "busybox", "mkdir", "/in")
    store("cp", "-L", str(tmp_path / "dirlink"), "c:/in/")
    store("cp", "-L", str(tmp_path / "filelink"), "c:/in/")
    store("cp", str(tmp_path / "dirlink"), "c:/in/nolink")
    store("cp", "-L", f"{tmp_path / 'dirlink'}/.", "c:/in/")  # the contents, into /in
    tree = {
        m.name: (m.type, m.linkname)
        for m in members_of(store("cp", "c:/in", "-").raw)
        if not m.isdir()
    }
    assert tree == {
        "in/dirlink/f": (tarfile.REGTYPE, ""),
        "in/dirlink/inner": (tarfile.SYMTYPE, "f"),
        "in/f": (tarfile.REGTYPE, ""),
        "in/filelink": (tarfile.REGTYPE, ""),
        "in/inner": (tarfile.SYMTYPE, "f"),
        "in/nolink": (tarfile.SYMTYPE, str(real)),
    }
    [member] = members_of(store("cp", "c:/in/filelink", "-").raw)
    assert member.size == len("host file\n")
    res = store("cp", "-L", str(tmp_path / "missing"), "c:/in/", check=False)
    assert "no such file or directory" in one_line_error(res)
