"""The rootless hook's argument pre-parse, the pause record's staleness rules, spec adapting."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lamina.cli.rootless import enter_user_namespace, parse_global, store_root
from lamina.runtime import userns
from lamina.runtime.procstat import process_starttime
from lamina.runtime.rootless import adapt_config


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["images"], (None, "images")),
        (["--root", "/s", "run", "-d", "busybox"], ("/s", "run")),
        (["--root=/s", "--debug", "ps"], ("/s", "ps")),
        (["--storage-driver", "vfs", "--root", "r", "build", "."], ("r", "build")),
        (["--storage-driver=overlay", "pull", "x"], (None, "pull")),
        (["--help"], (None, None)),
        (["--root", "/s", "--version"], ("/s", None)),
        ([], (None, None)),
        (["--root"], (None, None)),
    ],
)
def test_parse_global(args: list[str], expected: tuple[str | None, str | None]) -> None:
    assert parse_global(args) == expected


def test_store_root_prefers_the_flag_then_the_environment(tmp_path: Path) -> None:
    env = {"LAMINA_ROOT": str(tmp_path / "env"), "HOME": str(tmp_path)}
    assert store_root(str(tmp_path / "flag"), env) == tmp_path / "flag"
    assert store_root(None, env) == tmp_path / "env"
    assert store_root("rel", {}) == Path.cwd() / "rel"


@pytest.mark.needs_root
def test_root_never_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMINA_ROOT", raising=False)
    before = os.stat("/proc/self/ns/user").st_ino
    enter_user_namespace(["run", "busybox"])
    assert os.stat("/proc/self/ns/user").st_ino == before
    assert "LAMINA_ROOT" not in os.environ


def _own_record() -> dict[str, object]:
    pid = os.getpid()
    return {
        "pid": pid,
        "start": process_starttime(pid),
        "boot": userns.boot_id(),
        "userns": os.stat("/proc/self/ns/user").st_ino,
        "mntns": os.stat("/proc/self/ns/mnt").st_ino,
    }


def test_live_pause_rejects_other_boot_start_time_or_namespace() -> None:
    record = _own_record()
    assert userns.live_pause(record) == os.getpid()
    assert userns.live_pause({**record, "boot": "another-boot"}) is None
    assert userns.live_pause({**record, "start": int(str(record["start"])) + 1}) is None
    assert userns.live_pause({**record, "userns": 1}) is None
    assert userns.live_pause(None) is None


def test_read_record_ignores_garbage(tmp_path: Path) -> None:
    assert userns.read_record(tmp_path) is None
    (tmp_path / userns.RECORD).write_text("{not json")
    assert userns.read_record(tmp_path) is None
    (tmp_path / userns.RECORD).write_text(json.dumps({"pid": "1"}))
    assert userns.read_record(tmp_path) is None
    (tmp_path / userns.RECORD).write_text(json.dumps(_own_record()))
    assert userns.read_record(tmp_path) == _own_record()


def test_find_survivor_matches_both_namespaces() -> None:
    record = _own_record()
    pid = userns.find_survivor(record)
    assert pid is not None
    assert os.stat(f"/proc/{pid}/ns/mnt").st_ino == record["mntns"]
    assert userns.find_survivor({**record, "mntns": 1}) is None
    assert userns.find_survivor({**record, "boot": "another-boot"}) is None


def _config(namespaces: list[str]) -> dict[str, Any]:
    return {
        "linux": {"namespaces": [{"type": t} for t in namespaces]},
        "mounts": [
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["newinstance", "gid=5"]},
        ],
    }  # fmt: skip


def test_adapt_config_binds_sys_without_a_network_namespace() -> None:
    config = _config(["pid", "mount"])
    adapt_config(config)
    sys_mount, pts = config["mounts"]
    assert sys_mount["type"] == "none" and sys_mount["source"] == "/sys"
    assert "rbind" in sys_mount["options"] and "ro" in sys_mount["options"]
    assert "gid=5" in pts["options"]  # mapped in this (initial) namespace
    with_net = _config(["pid", "mount", "network"])
    adapt_config(with_net)
    assert with_net["mounts"][0]["type"] == "sysfs"
