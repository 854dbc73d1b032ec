"""Rootless specifics: the shared namespace's pause process, id maps, build, bad input.

lamina runs as the unprivileged CI user (or ``nobody``, who has no sub-id ranges) through
:mod:`lamina.testing.rootless`; the test itself is root and looks at the store's namespace
through its pause process. The seed walkthrough and ``.inside`` run rootless in
``test_cli_container.py``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lamina.runtime import userns
from lamina.testing import rootless
from lamina.testing.rootless import StoreCli, assert_store_clean

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.needs_overlay,
    pytest.mark.needs_runtime,
    pytest.mark.needs_rootless,
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(busybox_tar: Path) -> Iterator[StoreCli]:
    """A store of the CI user with busybox; asserts on exit that nothing is left behind."""
    with rootless.ci_store(busybox_tar) as cli:
        yield cli


def _wait_gone(*pids: int) -> None:
    deadline = time.monotonic() + 10
    for pid in pids:
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.02)


def test_namespace_is_shared_and_maps_sub_ids(store: StoreCli) -> None:
    """One pause process per store; container root is the user, uid 1000 a sub-id."""
    pid = store.view.pause_pid()
    assert pid is not None
    uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
    user = rootless.lookup(rootless.CI_USER)
    assert user is not None and uid_map[:3] == ["0", str(user.uid), "1"]
    assert uid_map[3] == "1" and int(uid_map[5]) >= 65536
    store("images")
    store("ps")
    assert store.view.pause_pid() == pid  # joined, not re-made
    out = store("run", "--rm", "-u", "1000:1000", "busybox", "sh", "-c", "id -u; id -g").out
    assert out == "1000\n1000\n"
    assert store("run", "--rm", "busybox", "id", "-u").out == "0\n"


def test_stale_pause_process(store: StoreCli) -> None:
    """A killed pause: a running container keeps its namespace (adopted); with nothing left
    in it, a new pair is made and ps reports the dead container as Exited (255)."""
    cid = store("run", "-d", "busybox", "sleep", "600").out.strip()
    state_dir = store.root / "userns"
    before = userns.read_record(state_dir)
    assert before is not None
    os.kill(before["pid"], signal.SIGKILL)
    _wait_gone(before["pid"])
    assert store.view.pause_pid() is None
    assert "Up " in store("ps").out
    assert store("exec", cid, "echo", "still here").out == "still here\n"
    adopted = userns.read_record(state_dir)
    assert adopted is not None and adopted["pid"] != before["pid"]
    assert (adopted["userns"], adopted["mntns"]) == (before["userns"], before["mntns"])
    merged = json.loads(store("inspect", cid).out)[0]["GraphDriver"]["Data"]["MergedDir"]
    assert store.view.is_mount(merged)

    state = json.loads((store.root / "containers" / cid / "state.json").read_text())
    for pid in (adopted["pid"], state["MonitorPid"], state["Pid"]):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(adopted["pid"], state["MonitorPid"], state["Pid"])
    assert "Exited (255)" in store("ps", "-a").out
    fresh = userns.read_record(state_dir)
    assert fresh is not None and fresh["pid"] not in (before["pid"], adopted["pid"])
    assert userns.find_survivor(adopted) is None
    assert not store.view.is_mount(merged)
    assert json.loads(store("inspect", cid).out)[0]["State"]["Status"] == "exited"
    store("rm", cid)


def test_rootless_build_keeps_ownership(store: StoreCli) -> None:
    """The seed's Dockerfile (COPY) builds and runs; a RUN's chown lands as a sub-id."""
    seed = store.work / "seed"
    shutil.copytree(REPO / "tests" / "build_corpus" / "seed", seed)
    store("build", "-t", "seed", str(seed))
    assert store("run", "--rm", "seed").out == (seed / "a.txt").read_text()
    ctx = store.work / "owned"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN mkdir /data && echo x > /data/f && chown -R 1000:1000 /data\n"
    )
    store("build", "-t", "owned", str(ctx))
    out = store("run", "--rm", "owned", "stat", "-c", "%u:%g", "/data/f").out
    assert out == "1000:1000\n"
    upper = json.loads(store("inspect", "--type", "image", "owned").out)[0]["GraphDriver"]
    st = os.stat(Path(upper["Data"]["UpperDir"]) / "data" / "f")
    assert (st.st_uid, st.st_gid) == (store.view.host_id(1000), store.view.host_id(1000, "gid"))


def test_imported_layer_owners_become_sub_ids(store: StoreCli) -> None:
    """A layer's uid 1000 file is stored as the sub-id of 1000 and shows as 1000 inside."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("home/u/f")
        info.uid = info.gid = 1000
        info.size = 2
        tar.addfile(info, io.BytesIO(b"u\n"))
    path = store.work / "owned.tar"
    path.write_bytes(buf.getvalue())
    store("import", str(path), "owned")
    data = json.loads(store("inspect", "--type", "image", "owned").out)[0]["GraphDriver"]
    st = os.stat(Path(data["Data"]["UpperDir"]) / "home" / "u" / "f")
    assert st.st_uid == store.view.host_id(1000)


def test_user_without_sub_ids_gets_single_id_map(busybox_tar: Path) -> None:
    """nobody has no /etc/subuid range: one warning when the namespace is made, uid 0 only."""
    user = rootless.lookup("nobody")
    assert user is not None
    with rootless.rootless_store(user) as cli:
        # four first commands at once make one namespace pair: one of them warns
        with ThreadPoolExecutor(4) as pool:
            errs = [r.err for r in pool.map(lambda _: cli("images"), range(4))]
        warning = [ln for err in errs for ln in err.splitlines() if "warning" in ln]
        assert len(warning) == 1 and "single-id" in warning[0] and "/etc/subuid" in warning[0]
        shutil.copy(busybox_tar, cli.work / "bb.tar")
        assert "warning" not in cli("import", str(cli.work / "bb.tar"), "busybox").err
        pid = cli.view.pause_pid()
        assert pid is not None
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(user.uid), "1"]
        res = cli("run", "--rm", "busybox", "id", "-u")
        assert res.out == "0\n" and "warning" not in res.err
        res = cli("run", "--rm", "-u", "1000", "busybox", "true", check=False)
        assert res.code == 125 and "uid 1000 is not mapped" in res.err
        assert len(res.err.strip().splitlines()) == 2
        assert_store_clean(cli)


def test_missing_newuidmap_is_one_clear_line(busybox_tar: Path) -> None:
    """A user with ranges but no newuidmap on PATH: one error line, a hint, nothing made."""
    user = rootless.lookup(rootless.CI_USER)
    assert user is not None
    with rootless.rootless_store(user) as cli:
        res = cli("images", env={"PATH": "/nonexistent"}, check=False)
        assert res.code == 125
        lines = res.err.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("lamina: error: ")
        assert "newuidmap" in lines[0] and "apt-get install uidmap" in lines[1]
        assert "Traceback" not in res.err
        assert userns.read_record(cli.root / "userns") is None
        assert cli.view.pause_pid() is None


def test_default_store_is_the_users_data_dir(busybox_tar: Path) -> None:
    """Without --root the store is $XDG_DATA_HOME/lamina, also inside the namespace (where
    the process is uid 0, whose default would be /var/lib/lamina)."""
    user = rootless.lookup(rootless.CI_USER)
    assert user is not None
    with rootless.base_dir(user) as base:
        home = base / "home"
        home.mkdir()
        os.chown(home, user.uid, user.gid)
        xdg = {"XDG_DATA_HOME": str(home / "data")}
        rootless.run_as(user, None, "images", home=home, env=xdg)
        root = home / "data" / "lamina"
        assert userns.live_pause(userns.read_record(root / "userns")) is not None
        assert root.stat().st_uid == user.uid and (root / "userns" / "lock").exists()
        assert not Path("/var/lib/lamina/userns").exists()
