"""USER resolution against a rootfs's passwd/group, safely; id maps; /etc file contents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.errors import ContainerError
from lamina.runtime import ExecUser, IDMapping, resolve_user, single_id_mappings, subid_mappings
from lamina.runtime.etcfiles import hosts_content, resolv_content, write_etc_files
from lamina.runtime.idmap import (
    SubIDRange,
    read_subid_ranges,
    rootless_mappings,
    validate_mappings,
)
from lamina.runtime.user import resolve_groups

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:App:/home/app:/bin/sh
# comment:x:5:5::/:
broken:x:notanumber:1::/:
nohome:x:1001:1001:::/bin/sh
"""
GROUP = """root:x:0:
wheel:x:10:app,root
app:x:1000:
audio:x:29:daemon,app
dup:x:10:app
staff:x:50:
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.mark.parametrize(
    ("user", "want"),
    [
        ("", ExecUser(uid=0, gid=0, home="/root", name="root", additional_gids=(10,))),
        ("root", ExecUser(uid=0, gid=0, home="/root", name="root", additional_gids=(10,))),
        ("app", ExecUser(uid=1000, gid=1000, home="/home/app", name="app",
                         additional_gids=(10, 29))),
        ("1000", ExecUser(uid=1000, gid=1000, home="/home/app", name="app",
                          additional_gids=(10, 29))),
        ("app:staff", ExecUser(uid=1000, gid=50, home="/home/app", name="app")),
        ("app:50", ExecUser(uid=1000, gid=50, home="/home/app", name="app")),
        ("app:4242", ExecUser(uid=1000, gid=4242, home="/home/app", name="app")),
        ("4242", ExecUser(uid=4242, gid=0, home="/")),
        ("4242:4242", ExecUser(uid=4242, gid=4242, home="/")),
        ("4242:staff", ExecUser(uid=4242, gid=50, home="/")),
        ("nohome", ExecUser(uid=1001, gid=1001, home="/", name="nohome")),
    ],
)  # fmt: skip
def test_resolve_user_forms(rootfs: Path, user: str, want: ExecUser) -> None:
    assert resolve_user(rootfs, user) == want


def test_docker_error_messages(rootfs: Path) -> None:
    with pytest.raises(ContainerError) as info:
        resolve_user(rootfs, "ghost")
    assert info.value.message == "unable to find user ghost: no matching entries in passwd file"
    with pytest.raises(ContainerError) as info:
        resolve_user(rootfs, "app:ghosts")
    assert info.value.message == ("unable to find group ghosts: no matching entries in group file")
    with pytest.raises(ContainerError, match="empty group"):
        resolve_user(rootfs, "app:")


def test_missing_files_allow_numeric_ids_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_user(empty, "") == ExecUser(uid=0, gid=0, home="/")
    assert resolve_user(empty, "12:34") == ExecUser(uid=12, gid=34, home="/")
    with pytest.raises(ContainerError, match="unable to find user nobody"):
        resolve_user(empty, "nobody")


def test_group_add_names_and_numbers(rootfs: Path) -> None:
    assert resolve_groups(rootfs, ("audio", "7", "staff")) == (29, 7, 50)
    assert resolve_groups(rootfs, ()) == ()
    with pytest.raises(ContainerError, match="unable to find group nope"):
        resolve_groups(rootfs, ("nope",))


def test_symlinked_passwd_resolves_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "passwd").write_text("inside:x:77:77::/in:/bin/sh\n")
    # An absolute target must mean /data/passwd *in the rootfs*, never the host's file.
    os.symlink("/data/passwd", root / "etc" / "passwd")
    assert resolve_user(root, "inside").uid == 77
    # A climbing target is clamped at the rootfs: the host's /etc/passwd is never read.
    os.remove(root / "etc" / "passwd")
    os.symlink("../../../../../../../../etc/passwd", root / "etc" / "passwd")
    with pytest.raises(ContainerError):
        resolve_user(root, "root")  # loops onto itself inside the rootfs; host root not found


def test_passwd_that_is_not_a_regular_file(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "passwd")  # must not block
    with pytest.raises(ContainerError, match="not a regular file"):
        resolve_user(root, "x")


def test_id_mappings() -> None:
    uids, gids = single_id_mappings(1000, 100)
    assert uids == (IDMapping(container_id=0, host_id=1000, size=1),)
    assert gids[0].to_spec() == {"containerID": 0, "hostID": 100, "size": 1}
    maps = subid_mappings(1000, [SubIDRange(start=100000, count=65536),
                                 SubIDRange(start=300000, count=10)])  # fmt: skip
    assert [m.to_spec() for m in maps] == [
        {"containerID": 0, "hostID": 1000, "size": 1},
        {"containerID": 1, "hostID": 100000, "size": 65536},
        {"containerID": 65537, "hostID": 300000, "size": 10},
    ]
    assert maps[1].to_host(1) == 100000 and maps[1].to_host(0) is None
    with pytest.raises(ContainerError, match="no ranges"):
        subid_mappings(1000, [])
    with pytest.raises(ContainerError, match="overlap"):
        validate_mappings((IDMapping(container_id=0, host_id=0, size=10),
                           IDMapping(container_id=5, host_id=100, size=1)), "uid")  # fmt: skip
    with pytest.raises(ContainerError, match="overlap on the host side"):
        validate_mappings((IDMapping(container_id=0, host_id=0, size=10),
                           IDMapping(container_id=20, host_id=5, size=1)), "uid")  # fmt: skip
    with pytest.raises(ContainerError):
        IDMapping(container_id=0, host_id=2**32 - 2, size=2)
    with pytest.raises(ContainerError):
        IDMapping(container_id=0, host_id=0, size=0)


def test_read_subid_ranges(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("alice:100000:65536\n# x\nbob:200000:10\n1000:300000:5\nalice:bad:1\nalice:1\n")
    assert read_subid_ranges(f, name="alice", host_id=1000) == [
        SubIDRange(start=100000, count=65536), SubIDRange(start=300000, count=5),
    ]  # fmt: skip
    assert read_subid_ranges(tmp_path / "missing", name="alice", host_id=1) == []


def test_rootless_mappings_prefer_sub_ids(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\n")
    (tmp_path / "subgid").write_text("alice:200000:65536\n")
    uids, gids = rootless_mappings(uid=1000, gid=1000, name="alice", subuid=tmp_path / "subuid",
                                   subgid=tmp_path / "subgid")  # fmt: skip
    assert [m.host_id for m in uids] == [1000, 100000]
    assert [m.host_id for m in gids] == [1000, 200000]
    single = rootless_mappings(uid=1000, gid=1000, name="bob", subuid=tmp_path / "subuid",
                               subgid=tmp_path / "subgid")  # fmt: skip
    assert single == single_id_mappings(1000, 1000)


def test_hosts_content() -> None:
    text = hosts_content(hostname="web", network="none", extra_hosts=[("db", "10.0.0.2")])
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert text.endswith("10.0.0.2\tdb\n127.0.0.1\tweb\n")
    host = hosts_content(hostname="web", network="host", host_hosts="1.2.3.4 h")
    assert host == "1.2.3.4 h\n"


def test_resolv_content_drops_loopback_servers_outside_host_network() -> None:
    host = "# gen\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp\noptions ndots:2\n"
    assert resolv_content(host, network="none") == (
        "# gen\nnameserver 10.1.1.1\nsearch corp\noptions ndots:2\n"
    )
    assert resolv_content("nameserver 127.0.0.1\n", network="none") == (
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    )
    assert resolv_content(host, network="host") == host
    assert resolv_content(host, network="none", dns=["9.9.9.9"], dns_search=["a", "b"],
                          dns_options=["rotate"]) == (
        "# gen\nnameserver 9.9.9.9\nsearch a b\noptions rotate\n"
    )  # fmt: skip


def test_write_etc_files(tmp_path: Path) -> None:
    host_etc = tmp_path / "hostetc"
    host_etc.mkdir()
    (host_etc / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    files = write_etc_files(tmp_path / "c", hostname="box", network="none", host_etc=host_etc)
    assert files.hostname is not None and files.hostname.read_text() == "box\n"
    assert files.resolv_conf is not None
    assert files.resolv_conf.read_text() == "nameserver 192.0.2.1\n"
    assert files.hosts is not None and "127.0.0.1\tbox" in files.hosts.read_text()
