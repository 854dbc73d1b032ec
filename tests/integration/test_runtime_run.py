"""Foreground runs with real runc and the native runtime on a real busybox rootfs."""

from __future__ import annotations

import itertools
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.errors import CommandNotExecutable, CommandNotFound, ContainerError
from lamina.runtime import (
    BindMount,
    ContainerSpec,
    ProcessSpec,
    Rlimit,
    Runtime,
    TmpfsMount,
    resolve_user,
    write_bundle,
)
from lamina.runtime.defaults import CAPABILITIES, CAPABILITY_NUMBERS
from lamina.runtime.etcfiles import write_etc_files

pytest_plugins = ["conftest_runtime"]
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("no_runtime_leaks")]

ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root")
_ids = itertools.count()


def new_id() -> str:
    return f"t{os.getpid()}-{next(_ids)}"


def run(
    rt: Runtime, rootfs: Path, tmp_path: Path, *args: str, process: ProcessSpec | None = None,
    **kw: object,
) -> tuple[int, str, str]:  # fmt: skip
    """Run ``args`` (or ``process``); returns (status, stdout, stderr)."""
    proc = process or ProcessSpec(args=args, env=ENV)
    spec = ContainerSpec(rootfs=rootfs, process=proc, **kw)  # type: ignore[arg-type]
    cid = new_id()
    bundle = write_bundle(tmp_path / f"bundle-{cid}", spec, container_id=cid)
    out, err = tmp_path / f"{cid}.out", tmp_path / f"{cid}.err"
    with out.open("wb") as o, err.open("wb") as e:
        status = rt.run(bundle, cid, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    assert not rt.exists(cid)
    return status, out.read_bytes().decode(), err.read_bytes().decode()


def test_echo_output_is_captured(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    assert run(rt, rootfs, tmp_path, "echo", "hello world") == (0, "hello world\n", "")


def test_exit_status_passes_through(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    assert run(rt, rootfs, tmp_path, "sh", "-c", "echo oops >&2; exit 7") == (7, "", "oops\n")


def test_missing_command_is_127(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound) as info:
        run(rt, rootfs, tmp_path, "no-such-command")
    assert info.value.exit_code == 127
    assert "executable file not found" in info.value.message
    with pytest.raises(CommandNotFound):
        run(rt, rootfs, tmp_path, "/usr/bin/nothing-here")
    # The shell's own "not found" is the process's status, passed through.
    assert run(rt, rootfs, tmp_path, "sh", "-c", "no-such-command")[0] == 127


def test_non_executable_is_126(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "bin" / "data").write_text("#!/bin/sh\necho no\n")
    os.chmod(rootfs / "bin" / "data", 0o644)
    with pytest.raises(CommandNotExecutable) as info:
        run(rt, rootfs, tmp_path, "/bin/data")
    assert info.value.exit_code == 126
    with pytest.raises(CommandNotExecutable):
        run(rt, rootfs, tmp_path, "/tmp")
    # On PATH, a non-executable file is skipped like execvp does: not found.
    with pytest.raises(CommandNotFound):
        run(rt, rootfs, tmp_path, "data")


def test_env_cwd_and_user(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    user = resolve_user(rootfs, "nobody")
    proc = ProcessSpec(
        args=("sh", "-c", 'id -u; id -g; pwd; echo "$GREETING"; id -G'),
        env=(*ENV, "GREETING=hi there"),
        cwd="/tmp",
        uid=user.uid,
        gid=user.gid,
        additional_gids=(1,),
    )
    status, out, _ = run(rt, rootfs, tmp_path, process=proc)
    assert status == 0
    assert out.split("\n") == ["65534", "65534", "/tmp", "hi there", "65534 1", ""]


def test_capabilities_docker_default_and_dropped_for_non_root(
    rt: Runtime, rootfs: Path, tmp_path: Path
) -> None:
    want = sum(1 << CAPABILITY_NUMBERS[c] for c in CAPABILITIES)
    _, out, _ = run(rt, rootfs, tmp_path, "grep", "^Cap", "/proc/self/status")
    caps = {k: int(v, 16) for k, v in (line.split(":\t") for line in out.splitlines())}
    assert caps == {"CapInh": 0, "CapPrm": want, "CapEff": want, "CapBnd": want, "CapAmb": 0}
    proc = ProcessSpec(args=("grep", "^CapEff", "/proc/self/status"), env=ENV, uid=65534, gid=1)
    assert run(rt, rootfs, tmp_path, process=proc)[1] == "CapEff:\t0000000000000000\n"


def test_hostname(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    assert run(rt, rootfs, tmp_path, "hostname", hostname="box-1")[1] == "box-1\n"


def test_network_none_sees_only_loopback(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    status, out, _ = run(
        rt,
        rootfs,
        tmp_path,
        "sh",
        "-c",
        "ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags",
    )
    assert status == 0
    names, flags = out.split()[:-2], int(out.split()[-1], 16)
    assert names == ["lo"]
    assert flags & 1  # IFF_UP


def test_network_host_sees_host_interfaces(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    status, out, _ = run(rt, rootfs, tmp_path, "ls", "/sys/class/net", network="host")
    assert status == 0
    assert sorted(out.split()) == sorted(os.listdir("/sys/class/net"))


def test_special_files_inside_and_rootfs_untouched(
    rt: Runtime, rootfs: Path, tmp_path: Path, tree_snapshot: Callable[[Path], object]
) -> None:
    etc = write_etc_files(tmp_path / "etc", hostname="web", network="none")
    before = tree_snapshot(rootfs)
    script = (
        "test -r /proc/self/status && test -c /dev/null && test -d /dev/shm && "
        "echo x > /dev/shm/f && test -e /dev/pts/ptmx && test -d /sys/class && "
        "cat /etc/hosts /etc/hostname && grep -q nameserver /etc/resolv.conf && "
        "mount | grep -c ' /proc/keys '"
    )
    status, out, err = run(rt, rootfs, tmp_path, "sh", "-c", script, etc_files=etc, hostname="web")
    assert status == 0, err
    assert "127.0.0.1\tlocalhost" in out and "127.0.0.1\tweb" in out and "web\n" in out
    assert out.endswith("1\n")  # /proc/keys is masked
    assert tree_snapshot(rootfs) == before
    assert not (rootfs / "etc" / "hosts").exists()


def test_bind_mounts_read_only_and_read_write(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "file").write_text("from host\n")
    binds = (
        BindMount(source=ro, destination="/mnt/ro", readonly=True),
        BindMount(source=rw, destination="/mnt/rw"),
    )
    script = "cat /mnt/ro/file; echo new > /mnt/ro/x || echo denied; echo yes > /mnt/rw/y"
    status, out, _ = run(rt, rootfs, tmp_path, "sh", "-c", script, binds=binds)
    assert status == 0
    assert out == "from host\ndenied\n"
    assert not (ro / "x").exists()
    assert (rw / "y").read_text() == "yes\n"
    assert not (rootfs / "mnt").exists()  # the mount points made for the binds are gone


def test_readonly_rootfs_and_tmpfs(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    script = "touch /x 2>/dev/null || echo ro; touch /scratch/x && echo tmpfs-ok"
    status, out, _ = run(
        rt, rootfs, tmp_path, "sh", "-c", script, readonly_rootfs=True,
        tmpfs=(TmpfsMount(destination="/scratch"),),
    )  # fmt: skip
    assert status == 0
    assert out == "ro\ntmpfs-ok\n"
    assert not (rootfs / "scratch").exists()


def test_rlimits_are_clamped_to_the_hard_limit(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    proc = ProcessSpec(
        args=("sh", "-c", "ulimit -n; ulimit -Hn"),
        env=ENV,
        rlimits=(Rlimit(type="nofile", soft=hard * 4, hard=hard * 4),),
    )
    status, out, _ = run(rt, rootfs, tmp_path, process=proc)
    assert status == 0
    assert out.split() == [str(hard), str(hard)]
    proc = ProcessSpec(args=("sh", "-c", "ulimit -n"), env=ENV,
                       rlimits=(Rlimit(type="RLIMIT_NOFILE", soft=64, hard=128),))  # fmt: skip
    assert run(rt, rootfs, tmp_path, process=proc)[1] == "64\n"


def test_processes_die_with_the_container(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    # A background child outliving sh must not survive the container (pid namespace).
    status, out, _ = run(rt, rootfs, tmp_path, "sh", "-c", "sleep 300 & echo $!")
    assert status == 0
    assert out.strip().isdigit()


def test_setup_failure_is_a_container_error_not_a_status(
    rt: Runtime, rootfs: Path, tmp_path: Path
) -> None:
    missing = BindMount(source=tmp_path / "absent", destination="/mnt/x")
    with pytest.raises(ContainerError) as info:
        run(rt, rootfs, tmp_path, "true", binds=(missing,))
    assert type(info.value) is ContainerError
    if rt.name == "native":
        assert "mounting /mnt/x" in info.value.message
    assert not (rootfs / "mnt").exists()


def test_terminal_is_a_pty_of_the_container(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    proc = ProcessSpec(args=("sh", "-c", "tty; stty size; echo $TERM"), env=(*ENV, "TERM=xterm"),
                       terminal=True)  # fmt: skip
    status, out, err = run(rt, rootfs, tmp_path, process=proc)
    assert (status, out, err) == (0, "/dev/pts/0\r\n24 80\r\nxterm\r\n", "")


def test_terminal_carries_stdin_and_exit_status(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    spec = ContainerSpec(rootfs=rootfs, process=ProcessSpec(
        args=("sh", "-c", "read x; echo got $x; exit 4"), env=ENV, terminal=True))  # fmt: skip
    cid = new_id()
    bundle = write_bundle(tmp_path / "bundle", spec, container_id=cid)
    (tmp_path / "in").write_text("hello\n")
    with (tmp_path / "in").open("rb") as i, (tmp_path / "out").open("wb") as o:
        assert rt.run(bundle, cid, stdin=i, stdout=o, stderr=subprocess.DEVNULL) == 4
    assert "got hello\r\n" in (tmp_path / "out").read_bytes().decode()
    assert not rt.exists(cid)


def test_mount_points_through_image_symlinks_stay_in_the_rootfs(
    rt: Runtime, rootfs: Path, tmp_path: Path, tree_snapshot: Callable[[Path], object]
) -> None:
    # /data -> /etc: read naively on the host this is the host's /etc
    os.symlink("/etc", rootfs / "data")
    host_etc = sorted(os.listdir("/etc"))
    before = tree_snapshot(rootfs)
    src = tmp_path / "src"
    src.mkdir()
    (src / "marker").write_text("m\n")
    script = "cat /etc/lamina-bind/marker; mount | grep -c ' /etc/lamina-tmpfs type tmpfs'"
    status, out, err = run(
        rt, rootfs, tmp_path, "sh", "-c", script,
        binds=(BindMount(source=src, destination="/data/lamina-bind"),),
        tmpfs=(TmpfsMount(destination="/data/lamina-tmpfs"),),
    )  # fmt: skip
    assert (status, out) == (0, "m\n1\n"), err
    assert sorted(os.listdir("/etc")) == host_etc
    assert tree_snapshot(rootfs) == before
