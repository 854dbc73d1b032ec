"""Bundles: mount points made and unmade safely, and argv[0] resolved inside the rootfs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import CommandNotExecutable, CommandNotFound, ContainerError
from lamina.runtime import BindMount, ContainerSpec, EtcFiles, ProcessSpec, write_bundle
from lamina.runtime.bundle import (
    MOUNTPOINTS,
    open_bundle,
    prepare_mountpoints,
    remove_mountpoints,
    resolve_command,
    resolve_partial,
)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for d in ("bin", "usr/bin", "etc", "proc", "tmp", "opt/tool"):
        (root / d).mkdir(parents=True)
    for name, mode in (("bin/sh", 0o755), ("usr/bin/env", 0o755), ("bin/data", 0o644),
                       ("opt/tool/run", 0o700), ("opt/tool/grp", 0o710)):  # fmt: skip
        (root / name).write_text("#!/bin/sh\n")
        os.chmod(root / name, mode)
    os.symlink("/usr/bin/env", root / "bin" / "env")
    os.symlink("../../../../../usr/bin/env", root / "bin" / "climb")
    return root


def proc(
    *args: str, uid: int = 0, gid: int = 0, env: tuple[str, ...] = (), cwd: str = "/"
) -> dict[str, Any]:
    return {"args": list(args), "env": list(env), "cwd": cwd, "user": {"uid": uid, "gid": gid}}


def test_resolve_on_path_and_by_path(rootfs: Path) -> None:
    assert resolve_command(rootfs, proc("sh")) == "/bin/sh"
    assert resolve_command(rootfs, proc("sh", env=("PATH=/usr/bin:/bin",))) == "/bin/sh"
    assert resolve_command(rootfs, proc("env", env=("PATH=/bin",))) == "/bin/env"
    assert resolve_command(rootfs, proc("/bin/climb")) == "/bin/climb"  # clamped inside
    assert resolve_command(rootfs, proc("./sh", cwd="/bin")) == "/bin/./sh"
    # default PATH when the process sets none
    assert resolve_command(rootfs, proc("env")) == "/usr/bin/env"


def test_not_found_and_not_executable(rootfs: Path) -> None:
    with pytest.raises(CommandNotFound, match="executable file not found in"):
        resolve_command(rootfs, proc("nope"))
    with pytest.raises(CommandNotFound, match="no such file"):
        resolve_command(rootfs, proc("/bin/nope"))
    with pytest.raises(CommandNotFound):
        resolve_command(rootfs, proc("data", env=("PATH=/bin",)))  # skipped like execvp
    with pytest.raises(CommandNotExecutable, match="permission denied"):
        resolve_command(rootfs, proc("/bin/data"))
    with pytest.raises(CommandNotExecutable, match="is a directory"):
        resolve_command(rootfs, proc("/tmp"))
    # owner-only and group-only execute bits are checked against the process's ids
    st = os.stat(rootfs / "opt/tool/grp")
    other = st.st_uid + 12345
    assert resolve_command(rootfs, proc("/opt/tool/run"))
    assert resolve_command(rootfs, proc("/opt/tool/run", uid=st.st_uid, gid=st.st_gid + 1))
    with pytest.raises(CommandNotExecutable):
        resolve_command(rootfs, proc("/opt/tool/run", uid=other, gid=st.st_gid))
    with pytest.raises(CommandNotExecutable):
        resolve_command(rootfs, proc("/opt/tool/grp", uid=other, gid=st.st_gid + 1))
    assert resolve_command(rootfs, proc("/opt/tool/grp", uid=other, gid=st.st_gid))


def test_commands_on_mounts(rootfs: Path, tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "t").write_text("")
    os.chmod(tools / "t", 0o755)
    mounts = [
        {"destination": "/mnt/tools", "type": "bind", "source": str(tools)},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
    ]
    assert resolve_command(rootfs, proc("/mnt/tools/t"), mounts) == "/mnt/tools/t"
    assert resolve_command(rootfs, proc("t", env=("PATH=/mnt/tools",)), mounts) == "/mnt/tools/t"
    with pytest.raises(CommandNotFound):
        resolve_command(rootfs, proc("/mnt/tools/x"), mounts)
    assert resolve_command(rootfs, proc("/dev/shm/x"), mounts) is None  # cannot be checked
    # a dot directory is not confused with a mount (/.mnt is not /mnt)
    (rootfs / ".mnt" / "tools").mkdir(parents=True)
    with pytest.raises(CommandNotFound):
        resolve_command(rootfs, proc("/.mnt/tools/t"), mounts)


def spec_with_mounts(rootfs: Path, tmp_path: Path) -> ContainerSpec:
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return ContainerSpec(
        rootfs=rootfs,
        process=ProcessSpec(args=("sh",)),
        etc_files=EtcFiles(hosts=tmp_path / "hosts"),
        binds=(BindMount(source=data, destination="/srv/a/b"),),
    )


def test_mountpoints_created_then_removed_with_times_restored(rootfs: Path, tmp_path: Path) -> None:
    os.utime(rootfs / "etc", ns=(1_000_000_000, 2_000_000_000))
    os.utime(rootfs, ns=(3_000_000_000, 4_000_000_000))
    bundle = write_bundle(tmp_path / "b", spec_with_mounts(rootfs, tmp_path), container_id="x")
    created = prepare_mountpoints(bundle)
    assert created == ["dev/", "sys/", "etc/hosts", "srv/", "srv/a/", "srv/a/b/"]
    assert (rootfs / "etc" / "hosts").is_file() and (rootfs / "srv/a/b").is_dir()
    record = json.loads((bundle.path / MOUNTPOINTS).read_text())
    assert record["created"] == created
    remove_mountpoints(bundle)
    for name in ("dev", "sys", "etc/hosts", "srv"):
        assert not (rootfs / name).exists()
    assert os.stat(rootfs / "etc").st_mtime_ns == 2_000_000_000
    assert os.stat(rootfs).st_mtime_ns == 4_000_000_000
    assert not (bundle.path / MOUNTPOINTS).exists()
    remove_mountpoints(bundle)  # idempotent


def test_mountpoints_that_gained_content_are_kept(rootfs: Path, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", spec_with_mounts(rootfs, tmp_path), container_id="x")
    prepare_mountpoints(bundle)
    (rootfs / "etc" / "hosts").write_text("mine\n")
    (rootfs / "srv" / "keep").write_text("")
    remove_mountpoints(bundle)
    assert (rootfs / "etc" / "hosts").read_text() == "mine\n"
    assert (rootfs / "srv" / "keep").exists() and not (rootfs / "srv" / "a").exists()


def test_mountpoints_never_escape_through_symlinks(rootfs: Path, tmp_path: Path) -> None:
    os.rmdir(rootfs / "etc")
    os.symlink("/opt/tool", rootfs / "etc")  # absolute: /opt/tool *in the rootfs*
    os.symlink("../../../../..", rootfs / "srv")  # climbs: clamped at the rootfs
    bundle = write_bundle(tmp_path / "b", spec_with_mounts(rootfs, tmp_path), container_id="x")
    prepare_mountpoints(bundle)
    assert (rootfs / "opt" / "tool" / "hosts").is_file()
    assert (rootfs / "a" / "b").is_dir()
    assert not (tmp_path / "a").exists() and not Path("/a").exists()
    remove_mountpoints(bundle)
    assert not (rootfs / "a").exists() and not (rootfs / "opt" / "tool" / "hosts").exists()


def test_mountpoint_through_a_link_into_nowhere_is_refused(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rmdir(rootfs / "etc")
    os.symlink(str(outside), rootfs / "etc")  # a host path: missing inside the rootfs
    bundle = write_bundle(tmp_path / "b", spec_with_mounts(rootfs, tmp_path), container_id="x")
    with pytest.raises(ContainerError, match="preparing mount point /etc/hosts"):
        prepare_mountpoints(bundle)
    assert list(outside.iterdir()) == []
    remove_mountpoints(bundle)  # what was made before the refusal goes away
    assert not (rootfs / "dev").exists()


def test_resolve_partial_and_open_bundle(rootfs: Path, tmp_path: Path) -> None:
    os.symlink("/opt", rootfs / "o")
    assert resolve_partial(rootfs, "/o/tool/new/x") == rootfs / "opt" / "tool" / "new" / "x"
    assert resolve_partial(rootfs, "/missing/a") == rootfs / "missing" / "a"
    bundle = write_bundle(tmp_path / "b", spec_with_mounts(rootfs, tmp_path), container_id="x")
    assert open_bundle(bundle.path) == bundle
