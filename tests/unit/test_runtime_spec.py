"""The generated OCI runtime-spec config: Docker's defaults, options, validation."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from lamina.errors import ContainerError
from lamina.runtime import (
    BindMount,
    ContainerSpec,
    EtcFiles,
    IDMapping,
    ProcessSpec,
    Rlimit,
    TmpfsMount,
    build_config,
    single_id_mappings,
    write_bundle,
)
from lamina.runtime.spec import mount_destinations, process_config

ROOT = Path("/var/lib/lamina/x/merged")
DOCKER_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip


def spec(**kw: object) -> ContainerSpec:
    proc = kw.pop("process", ProcessSpec(args=("sh",)))
    return ContainerSpec(rootfs=ROOT, process=proc, **kw)  # type: ignore[arg-type]


def test_defaults_match_docker() -> None:
    c = build_config(spec(hostname="abc"))
    assert c["ociVersion"] == "1.0.2"
    assert c["root"] == {"path": str(ROOT), "readonly": False}
    assert c["hostname"] == "abc"
    p = c["process"]
    assert p["capabilities"] == {"bounding": DOCKER_CAPS, "effective": DOCKER_CAPS,
                                 "permitted": DOCKER_CAPS}  # fmt: skip
    assert p["noNewPrivileges"] is False
    assert p["user"] == {"uid": 0, "gid": 0}
    assert "rlimits" not in p  # inherit, as Docker does without --ulimit
    lx = c["linux"]
    assert [n["type"] for n in lx["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]
    assert "/proc/kcore" in lx["maskedPaths"] and "/sys/firmware" in lx["maskedPaths"]
    assert lx["readonlyPaths"] == [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    ]  # fmt: skip
    assert [d["path"] for d in lx["devices"]] == [
        "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
    ]  # fmt: skip
    assert lx["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "uidMappings" not in lx and "cgroupsPath" not in lx
    mounts = {m["destination"]: m for m in c["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup",
                            "/dev/mqueue", "/dev/shm"]  # fmt: skip
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert mounts["/dev/shm"]["options"][-2:] == ["mode=1777", "size=65536k"]
    json.dumps(c)  # plain JSON data


def test_defaults_are_not_shared_between_configs() -> None:
    a = build_config(spec())
    a["mounts"][0]["options"].append("changed")
    a["linux"]["devices"][0]["major"] = 99
    b = build_config(spec())
    assert "changed" not in b["mounts"][0]["options"]
    assert b["linux"]["devices"][0]["major"] == 1


def test_non_root_user_has_no_effective_capabilities() -> None:
    proc = ProcessSpec(args=("id",), uid=1000, gid=1000, additional_gids=(10, 20))
    p = process_config(proc)
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}
    assert p["capabilities"]["bounding"] == DOCKER_CAPS
    assert p["capabilities"]["effective"] == [] == p["capabilities"]["permitted"]


def test_process_fields() -> None:
    proc = ProcessSpec(args=("a", "b c"), env=("A=1", "A=2", "B"), cwd="/w", terminal=True,
                       no_new_privileges=True)  # fmt: skip
    p = process_config(proc)
    assert (p["args"], p["env"], p["cwd"], p["terminal"], p["noNewPrivileges"]) == (
        ["a", "b c"], ["A=1", "A=2", "B"], "/w", True, True,
    )  # fmt: skip
    assert proc.env_value("A") == "2" and proc.env_value("B") is None


def test_host_network_has_no_network_namespace() -> None:
    lx = build_config(spec(network="host"))["linux"]
    assert "network" not in [n["type"] for n in lx["namespaces"]]


def test_rlimits_are_clamped_to_current_hard_limits() -> None:
    _soft, hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard_now != resource.RLIM_INFINITY  # true on every machine we run on
    proc = ProcessSpec(args=("x",), rlimits=(
        Rlimit(type="nofile", soft=hard_now + 10, hard=hard_now + 100),
        Rlimit(type="RLIMIT_NPROC", soft=5, hard=10),
        Rlimit(type="core", soft=50, hard=10),
    ))  # fmt: skip
    got = process_config(proc)["rlimits"]
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    assert got[0] == {"type": "RLIMIT_NOFILE", "hard": hard_now, "soft": hard_now}
    assert got[1] == {"type": "RLIMIT_NPROC", "hard": min(10, nproc_hard),
                      "soft": min(5, nproc_hard)}  # fmt: skip
    assert got[2]["soft"] <= got[2]["hard"]
    with pytest.raises(ContainerError, match="unknown resource"):
        process_config(ProcessSpec(args=("x",), rlimits=(Rlimit(type="bogus", soft=1, hard=1),)))


def test_user_namespace_mappings_and_devpts_gid() -> None:
    uids, gids = single_id_mappings(1000, 1000)
    c = build_config(spec(uid_mappings=uids, gid_mappings=gids))
    lx = c["linux"]
    assert lx["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert lx["gidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert "user" in [n["type"] for n in lx["namespaces"]]
    assert lx["devices"] == []
    devpts = next(m for m in c["mounts"] if m["type"] == "devpts")
    assert "gid=5" not in devpts["options"]
    wide = (IDMapping(container_id=0, host_id=100000, size=65536),)
    devpts = next(m for m in build_config(spec(uid_mappings=wide, gid_mappings=wide))["mounts"]
                  if m["type"] == "devpts")  # fmt: skip
    assert "gid=5" in devpts["options"]
    host = build_config(spec(uid_mappings=uids, gid_mappings=gids, network="host"))
    sys_mount = next(m for m in host["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == "bind" and "ro" in sys_mount["options"]


def test_extra_mounts_etc_files_and_readonly_root(tmp_path: Path) -> None:
    etc = EtcFiles(hosts=tmp_path / "hosts", resolv_conf=tmp_path / "resolv", readonly=True)
    c = build_config(spec(
        readonly_rootfs=True,
        binds=(BindMount(source=tmp_path, destination="/data", readonly=True),),
        tmpfs=(TmpfsMount(destination="/run", options=("size=1m",)),),
        etc_files=etc,
    ))  # fmt: skip
    assert c["root"]["readonly"] is True
    extra = c["mounts"][7:]
    assert extra == [
        {"destination": "/etc/resolv.conf", "type": "bind", "source": str(tmp_path / "resolv"),
         "options": ["bind", "rprivate", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": str(tmp_path / "hosts"),
         "options": ["bind", "rprivate", "ro"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "size=1m"]},
        {"destination": "/data", "type": "bind", "source": str(tmp_path),
         "options": ["rbind", "rprivate", "ro"]},
    ]  # fmt: skip


def test_mount_destinations_skip_paths_on_other_mounts(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    c = build_config(spec(
        binds=(BindMount(source=tmp_path / "f", destination="/etc/hosts"),
               BindMount(source=tmp_path, destination="/data"),
               BindMount(source=tmp_path, destination="/data/sub")),
    ))  # fmt: skip
    assert mount_destinations(c) == [
        ("/proc", True), ("/dev", True), ("/sys", True), ("/etc/hosts", False), ("/data", True),
    ]  # fmt: skip


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ContainerError, match="no command"):
        ProcessSpec(args=())
    with pytest.raises(ContainerError, match="not absolute"):
        ProcessSpec(args=("x",), cwd="rel")
    with pytest.raises(ContainerError, match="not absolute"):
        ContainerSpec(rootfs=Path("rel"), process=ProcessSpec(args=("x",)))
    with pytest.raises(ContainerError, match="not absolute"):
        spec(tmpfs=(TmpfsMount(destination="run"),))
    uids, _ = single_id_mappings(1, 1)
    with pytest.raises(ContainerError, match="together"):
        spec(uid_mappings=uids)


def test_write_bundle_sets_a_lamina_cgroup(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", spec(), container_id="abc")
    config = bundle.read_config()
    assert config["linux"]["cgroupsPath"] == "/lamina/abc"
    assert bundle.rootfs == ROOT
    explicit = write_bundle(tmp_path / "c", spec(cgroups_path="/mine/x"), container_id="abc")
    assert explicit.read_config()["linux"]["cgroupsPath"] == "/mine/x"
