"""End-to-end container tests: the seed's union-filesystem walkthrough and Jenkins ``.inside``.

The CLI runs as a subprocess over a fresh store (``cli`` fixture); the busybox image is
imported from ``scripts/make-busybox-rootfs.sh``. Every test checks that nothing is left
behind: no mounts under the store, no container processes, no container dirs.

The walkthrough and ``.inside`` run twice (``BOTH``): as root, and rootless — as the
unprivileged CI user (:mod:`lamina.testing.rootless`), whose mounts live in the store's user +
mount namespace, which the test (root, on the host) reads through ``view`` (the pause
process's ``/proc/<pid>/root`` and ``mountinfo``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina.testing import rootless
from lamina.testing.cli import Result
from lamina.testing.rootless import HostView, StoreCli, assert_store_clean

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_runtime]

Cli = Callable[..., Result]
#: run a test as root and rootless (``store`` is parametrized indirectly)
BOTH = pytest.mark.parametrize(
    "store", ["root", pytest.param("rootless", marks=pytest.mark.needs_rootless)], indirect=True
)


def tree_digest(root: Path) -> str:
    """A digest of names, modes, sizes, mtimes and contents under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{p}:{st.st_mode}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                h.update(Path(p).read_bytes())
    return h.hexdigest()


@pytest.fixture
def store(
    request: pytest.FixtureRequest, cli: Cli, busybox_tar: Path, tmp_path: Path
) -> Iterator[StoreCli]:
    """A store with the busybox image; asserts on exit that nothing is left behind.

    Parametrized with "rootless", lamina runs as the CI user (see the module docstring).
    """
    if getattr(request, "param", "root") == "rootless":
        with rootless.ci_store(busybox_tar) as store:
            yield store
        return
    store = StoreCli(cli, root=cli.root, work=tmp_path, rootless=False)  # type: ignore[attr-defined]
    store("import", str(busybox_tar), "busybox")
    yield store
    assert_store_clean(store)


@pytest.fixture
def view(store: StoreCli) -> HostView:
    """How the host sees the store's mounts (through its pause process when rootless)."""
    return store.view


@pytest.fixture
def work(store: StoreCli) -> Path:
    """A scratch dir whose files the store's user can read."""
    return store.work


@BOTH
def test_seed_walkthrough(store: Cli, view: HostView) -> None:
    """run -d; exec touch/echo; UpperDir holds TEST, MergedDir shows it, image dirs intact."""
    image_dirs = json.loads(store("inspect", "--type", "image", "busybox").out)[0]["GraphDriver"][
        "Data"
    ]
    before = tree_digest(Path(image_dirs["UpperDir"]))
    cid = store("run", "-d", "--name", "seed", "busybox", "sleep", "600").out.strip()
    assert len(cid) == 64
    store("exec", "seed", "touch", "/TEST")
    store("exec", "seed", "sh", "-c", 'echo "Hello World" >> /TEST')
    doc = json.loads(store("inspect", "seed").out)[0]
    data = doc["GraphDriver"]["Data"]
    assert doc["GraphDriver"]["Name"] == "overlay2"
    assert set(data) == {"LowerDir", "MergedDir", "UpperDir", "WorkDir"}
    lowers = data["LowerDir"].split(":")
    assert lowers[0].endswith(f"/overlay2/{cid}-init/diff")
    assert lowers[1:] == [image_dirs["UpperDir"]]
    assert data["UpperDir"].endswith(f"/overlay2/{cid}/diff")
    assert (Path(data["UpperDir"]) / "TEST").read_text() == "Hello World\n"
    assert (view.path(data["MergedDir"]) / "TEST").read_text() == "Hello World\n"
    assert "bin" in os.listdir(view.path(data["MergedDir"]))
    assert tree_digest(Path(image_dirs["UpperDir"])) == before
    assert store("diff", "seed").out.splitlines() == ["A /TEST"]
    layer_dir = Path(data["UpperDir"]).parent
    lower_file = (layer_dir / "lower").read_text()
    assert all(item.startswith("l/") and len(item) == 28 for item in lower_file.split(":"))
    assert len(lower_file.split(":")) == 2
    assert doc["State"]["Status"] == "running" and doc["State"]["Running"] is True
    assert doc["Name"] == "/seed" and doc["Path"] == "sleep" and doc["Args"] == ["600"]
    assert doc["Config"]["Image"] == "busybox" and doc["HostConfig"]["AutoRemove"] is False
    init = Path(lowers[0])
    for name in (".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console"):
        assert (init / name).is_file()
    store("stop", "-t", "1", "seed")
    state = json.loads(store("inspect", "seed").out)[0]["State"]
    assert state["Status"] == "exited" and state["Running"] is False
    assert not view.is_mount(data["MergedDir"])
    store("rm", "seed")
    assert not layer_dir.exists() and not Path(lowers[0]).exists()


@BOTH
def test_jenkins_inside_sequence(store: Cli, view: HostView, work: Path) -> None:
    """docker-workflow's ``.inside``: -v; inspect; run -t -d -u ... cat; exec; top;
    stop --time=1; rm -f --volumes (DockerClient's exact arguments)."""
    # DockerClient.version(): `docker -v` parsed with ^(\D+)(\d+)\.(\d+)\.(\d+)(.*)
    assert re.match(r"^(\D+)(\d+)\.(\d+)\.(\d+)(.*)", store("-v").out.strip())
    ctr = store("create", "busybox", "true").out.strip()
    src = work / "a.txt"
    src.write_text("This is a simple file.")
    store("cp", str(src), f"{ctr}:/a.txt")
    store("commit", "-c", 'CMD ["cat", "/a.txt"]', ctr, "simple-jenkins-image")
    store("rm", ctr)
    ws = work / "workspace" / "job"
    (ws.parent / "job@tmp").mkdir(parents=True)
    ws.mkdir()
    # the agent's workspace belongs to the jenkins user (uid 1000 in the container)
    os.chown(ws, view.host_id(1000), view.host_id(1000, "gid"))
    out = store(
        "run", "-t", "-d", "-u", "1000:1000", "-w", str(ws), "-v", f"{ws}:{ws}:rw,z",
        "-v", f"{ws}@tmp:{ws}@tmp:rw,z", "-e", "JENKINS_HOME=/var/jenkins_home",
        "-e", "BUILD_ID=1", "simple-jenkins-image", "cat",
    ).out.strip()  # fmt: skip
    # DockerClient.getVolumes(): the bind mounts' destinations, one per line
    volumes = store("inspect", "-f", "{{range.Mounts}}{{.Destination}}\\n{{end}}", out).out
    assert sorted(volumes.split()) == [str(ws), f"{ws}@tmp"]
    created = json.loads(store("inspect", "-f", "{{json .Created}}", out).out)
    assert created[:4].isdigit() and created[10] == "T"  # getCreatedDate's format
    top = store("top", out, "-eo", "pid,comm").out.splitlines()
    assert top[0].split() == ["PID", "COMMAND"]
    assert [line.split()[1] for line in top[1:]] == ["cat"]
    res = store("exec", out, "sh", "-c", "cat /a.txt; echo; id -u; pwd; echo $BUILD_ID")
    assert res.out.splitlines() == ["This is a simple file.", "1000", str(ws), "1"]
    store("exec", out, "sh", "-c", "echo built > out.txt")
    assert (ws / "out.txt").read_text() == "built\n"
    assert "Up " in store("ps").out
    store("stop", "--time=1", out)
    assert store("rm", "-f", "--volumes", out).out.strip() == out
    assert store("ps", "-aq").out == ""


@BOTH
@pytest.mark.needs_tools
def test_init_is_pid_1_forwards_signals_and_keeps_diff_clean(store: Cli) -> None:
    """--init: tini runs as PID 1 (``/dev/init -- CMD``), the exit status passes through,
    SIGTERM reaches a command that would ignore it as PID 1, and nothing lands in the upper."""
    res = store("run", "--rm", "--init", "busybox", "sh", "-c",
                "tr '\\0' ' ' < /proc/1/cmdline; exit 7", check=False)  # fmt: skip
    assert res.code == 7 and res.out.startswith("/dev/init -- sh -c "), (res.out, res.err)
    store("run", "-d", "--init", "--name", "tini", "busybox", "sleep", "600")
    store("stop", "-t", "30", "tini")  # sleep as PID 1 ignores SIGTERM: only tini makes it quick
    [info] = json.loads(store("inspect", "tini").out)
    assert info["State"]["ExitCode"] == 143 and info["HostConfig"]["Init"] is True
    assert (info["Path"], info["Args"]) == ("sleep", ["600"])  # as Docker: the command as given
    assert store("diff", "tini").out == ""
    store("rm", "tini")


@BOTH
def test_pass_through_run_flags(store: Cli, work: Path) -> None:
    """The flags CI jobs hand to `.inside(...)`: hosts, DNS, /dev/shm size, capabilities
    (also in exec), groups, stop signal/timeout and --cidfile, as Docker applies them."""
    writable = work / "cids"  # the store's user (rootless: the CI user) writes it
    writable.mkdir(mode=0o777)
    writable.chmod(0o777)
    cidfile = writable / "cid"
    res = store(
        "run", "--rm", "--cidfile", str(cidfile), "--add-host", "db:10.0.0.5", "--dns",
        "9.9.9.9", "--dns-search", "example.com", "--shm-size", "256m", "--cap-add",
        "sys_ptrace", "--cap-drop", "NET_RAW", "--group-add", "123", "busybox", "sh", "-c",
        "awk '$2 == \"db\"' /etc/hosts; grep -E 'nameserver|search' /etc/resolv.conf;"
        " df -k /dev/shm | tail -1; grep CapEff /proc/self/status; id -G",
    ).out.split("\n")  # fmt: skip
    assert res[0].split() == ["10.0.0.5", "db"]
    assert res[1:3] == ["nameserver 9.9.9.9", "search example.com"]
    assert res[3].split()[1] == str(256 * 1024)
    # Docker's default set 0xa80425fb, + SYS_PTRACE (bit 19), - NET_RAW (bit 13)
    assert res[4].split() == ["CapEff:", f"{0xA80425FB + (1 << 19) - (1 << 13):016x}"]
    assert res[5].split() == ["0", "123"]
    assert len(cidfile.read_text()) == 64
    res = store("run", "--rm", "--cidfile", str(cidfile), "busybox", "true", check=False)
    assert res.code == 125 and "container ID file found" in res.err
    ctr = store("run", "-d", "--stop-timeout", "1", "--cap-add", "NET_ADMIN", "busybox",
                "sleep", "600").out.strip()  # fmt: skip
    assert f"{0xa80425FB + (1 << 12):016x}" in store("exec", ctr, "grep", "CapEff",
                                                       "/proc/self/status").out  # fmt: skip
    started = time.monotonic()
    store("stop", ctr)  # sleep ignores SIGTERM as PID 1: the 1 s timeout, then SIGKILL
    assert time.monotonic() - started < 8
    assert json.loads(store("inspect", ctr).out)[0]["State"]["ExitCode"] == 137
    store("rm", ctr)
    ctr = store("run", "-d", "busybox", "sleep", "600").out.strip()
    (writable / "x.env").write_text("FROM_FILE=yes\n")
    assert store("exec", "--env-file", str(writable / "x.env"), ctr, "sh", "-c",
                 "echo $FROM_FILE").out == "yes\n"  # fmt: skip
    store("stop", "--signal", "KILL", "--timeout", "30", ctr)  # docker stop -s / --timeout
    assert json.loads(store("inspect", ctr).out)[0]["State"]["ExitCode"] == 137
    store("rm", ctr)
    # a negative timeout never SIGKILLs, but the stop signal is still sent (here it ends sh)
    ctr = store("run", "-d", "--stop-timeout", "-1", "busybox", "sh", "-c",
                "trap 'exit 7' TERM; while :; do sleep 0.1; done").out.strip()  # fmt: skip
    time.sleep(0.5)  # the trap is set
    store("stop", ctr)
    assert json.loads(store("inspect", ctr).out)[0]["State"]["ExitCode"] == 7
    store("rm", ctr)
    for flags, message in ((["--cap-add", "BOGUS"], "unknown capability"),
                           (["--shm-size", "lots"], "invalid --shm-size"),
                           (["--add-host", "db"], "invalid --add-host"),
                           (["-p", "8080:80"], "ports are not mapped"),
                           (["--privileged"], "--privileged is not supported")):  # fmt: skip
        res = store("run", "--rm", *flags, "busybox", "true", check=False)
        assert res.code == 125 and message in res.err


def test_volumes_from(store: Cli, work: Path) -> None:
    """--volumes-from CTR[:ro|:rw] copies CTR's mounts (the Jenkins plugin's form when its
    agent runs in a container); -v wins for the same destination."""
    ws, other = work / "ws", work / "other"
    ws.mkdir()
    other.mkdir()
    (ws / "f").write_text("from the agent\n")
    agent = store("run", "-d", "-v", f"{ws}:/ws", "busybox", "sleep", "600").out.strip()
    res = store("run", "--rm", "--volumes-from", agent, "busybox", "sh", "-c",
                "cat /ws/f && echo out > /ws/g")  # fmt: skip
    assert res.out == "from the agent\n" and (ws / "g").read_text() == "out\n"
    res = store("run", "--rm", "--volumes-from", f"{agent}:ro", "busybox", "touch", "/ws/h",
                check=False)  # fmt: skip
    assert res.code != 0 and "Read-only file system" in res.err and not (ws / "h").exists()
    res = store("run", "--rm", "-v", f"{other}:/ws", "--volumes-from", agent, "busybox",
                "ls", "/ws")  # fmt: skip
    assert res.out == ""  # -v's empty dir, not the agent's
    ctr = store("create", "--volumes-from", agent, "busybox", "true").out.strip()
    [info] = json.loads(store("inspect", ctr).out)
    assert info["HostConfig"]["VolumesFrom"] == [agent]
    assert [m["Destination"] for m in info["Mounts"]] == ["/ws"]
    res = store("run", "--rm", "--volumes-from", "nosuch", "busybox", "true", check=False)
    assert res.code == 125 and "no such container: nosuch" in res.err
    store("rm", ctr)
    store("rm", "-f", agent)


def test_rmi_of_an_image_a_container_uses(store: Cli) -> None:
    """As Docker: untagging one of several names is fine; deleting the image a container was
    made from needs -f, and is refused even with -f while that container runs."""
    store("tag", "busybox", "second")
    ctr = store("create", "second", "true").out.strip()
    assert store("rmi", "second").out.strip() == "Untagged: second:latest"  # busybox remains
    res = store("rmi", "busybox", check=False)
    assert res.code == 1 and "(must force)" in res.err and ctr[:12] in res.err
    assert "hint: remove the container first" in res.err
    running = store("run", "-d", "busybox", "sleep", "600").out.strip()
    res = store("rmi", "-f", "busybox", check=False)
    assert res.code == 1 and "(cannot be forced)" in res.err and running[:12] in res.err
    store("rm", "-f", running)
    assert "Deleted: sha256:" in store("rmi", "-f", "busybox").out
    assert store("start", "-a", ctr).code == 0  # its layers are held by the container
    store("rm", ctr)
    assert store("system", "check").code == 0


def test_prune_containers_and_images(store: Cli) -> None:
    """container prune removes stopped containers only; image prune keeps images in use;
    system prune does both, as Docker's."""
    running = store("run", "-d", "busybox", "sleep", "600").out.strip()
    stopped = store("run", "-d", "busybox", "sh", "-c", "echo x > /f").out.strip()
    store("wait", stopped)
    # Docker's filters: a status filter lists stopped containers without -a
    assert store("ps", "-q", "--filter", "status=exited").out.split() == [stopped[:12]]
    assert store("ps", "-q", "-f", "status=running").out.split() == [running[:12]]
    assert store("ps", "-aq", "-f", "ancestor=busybox", "-f", "exited=0").out.split() == [
        stopped[:12]
    ]
    assert store("ps", "-q", "-l").out.split() == [stopped[:12]]
    res = store("container", "prune", "-f")
    assert res.out.startswith(f"Deleted Containers:\n{stopped}\n") and running not in res.out
    assert "Total reclaimed space:" in res.out
    assert store("ps", "-aq").out.split() == [running[:12]]
    busybox_id = json.loads(store("image", "inspect", "busybox").out)[0]["Id"]
    store("tag", "busybox", "spare")
    store("rmi", "busybox")  # `spare` still names it, and a running container uses it
    res = store("image", "prune", "-a", "-f")
    assert "Deleted Images" not in res.out  # in use: kept
    store("rm", "-f", running)
    stopped = store("run", "-d", "spare", "true").out.strip()
    store("wait", stopped)
    res = store("system", "prune", "-f")
    assert f"Deleted Containers:\n{stopped}" in res.out and "Deleted Images" not in res.out
    res = store("system", "prune", "-a", "-f", "--volumes")  # docker system prune -af --volumes
    assert f"deleted: {busybox_id}" in res.out
    assert store("images", "-q").out == "" and store("system", "check").code == 0


def test_run_exit_codes_and_bad_input(store: Cli, tmp_path: Path) -> None:
    """Docker's exit codes and one clear line for each kind of bad input."""
    assert store("run", "--rm", "busybox", "sh", "-c", "exit 7", check=False).code == 7
    res = store("run", "--rm", "busybox", "nosuchcmd", check=False)
    assert res.code == 127 and "nosuchcmd" in res.err
    res = store("run", "--rm", "busybox", "/etc/passwd", check=False)
    assert res.code == 126 and "permission denied" in res.err
    res = store("run", "--rm", "--pull=never", "nosuchimage", "true", check=False)
    assert res.code == 125 and "nosuchimage" in res.err
    res = store("run", "--rm", "-v", f"{tmp_path}/missing:/x", "busybox", "true", check=False)
    assert res.code == 125 and "bind source path does not exist" in res.err
    res = store("run", "--rm", "-u", "nosuchuser", "busybox", "true", check=False)
    assert res.code == 125 and "unable to find user nosuchuser" in res.err
    store("run", "-d", "--name", "busy", "busybox", "sleep", "600")
    res = store("run", "-d", "--name", "busy", "busybox", "true", check=False)
    assert res.code == 125 and "already in use" in res.err
    res = store("rm", "busy", check=False)
    assert res.code != 0 and "container is running" in res.err
    assert "hint: stop the container before removing or force remove" in res.err
    res = store("exec", "nosuch", "true", check=False)
    assert res.code == 125 and "no such container" in res.err
    store("rm", "-f", "busy")
    for line in store("ps", "-a").out.splitlines()[1:]:
        assert "busy" not in line
    assert all(len(r.err.strip().splitlines()) <= 2 for r in [res])


def test_logs_wait_kill_rename_export(store: Cli, tmp_path: Path) -> None:
    """Output is logged as JSON lines; wait returns the status; rename and export work."""
    cid = store("run", "-d", "--name", "talk", "busybox", "sh", "-c",
                "echo out; echo err >&2; exit 3").out.strip()  # fmt: skip
    assert store("wait", "talk").out.strip() == "3"
    res = store("logs", "talk")
    assert res.out == "out\n" and res.err == "err\n"
    assert store("logs", "--tail", "-1", "talk").out == "out\n"  # negative: all, as Docker
    assert store("logs", "--since", "0", "talk").out == "out\n"  # Unix seconds
    assert store("logs", "--until", "2000-01-01T00:00:00Z", "talk").out == ""
    assert store("logs", "--since", "2999-01-01", "talk").out == ""
    res = store("logs", "--since", "1h", "--tail", "1", "talk")  # the last of two entries
    assert res.out + res.err in ("out\n", "err\n")  # (the streams' order is the monitor's)
    res = store("logs", "--since", "yesterday", "talk", check=False)
    assert res.code != 0 and "invalid time 'yesterday'" in res.err
    res = store("logs", "--tail", "abc", "talk", check=False)
    assert res.code == 2 and res.err.startswith("lamina: error: invalid --tail value 'abc'")
    assert "Traceback" not in res.err
    log = Path(json.loads(store("inspect", "talk").out)[0]["LogPath"])
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["stream"] for e in entries} == {"stdout", "stderr"}
    assert all(set(e) == {"log", "stream", "time"} for e in entries)
    res = store("rename", "talk", "talk", check=False)
    assert res.code == 125 and "same name as its current name" in res.err
    store("rename", "talk", "quiet")
    assert json.loads(store("inspect", "quiet").out)[0]["Id"] == cid
    assert store("inspect", "talk", check=False).code != 0
    out = tmp_path / "fs.tar"
    store("container", "export", "quiet", "-o", str(out))
    assert out.stat().st_size > 1_000_000
    top = tmp_path / "fs2.tar"  # `export` as docker export: a container (else an image)
    store("export", "quiet", "-o", str(top))
    assert top.read_bytes() == out.read_bytes()
    # Docker's management-command forms
    assert cid[:12] in store("container", "ls", "-a").out
    assert json.loads(store("container", "inspect", "quiet").out)[0]["Id"] == cid
    res = store("image", "inspect", "quiet", check=False)  # a container is not an image
    assert res.code == 1 and "no such image: quiet" in res.err
    assert "busybox" in store("image", "ls").out
    store("run", "-d", "--name", "victim", "busybox", "sleep", "600")
    store("kill", "victim")
    assert store("wait", "victim").out.strip() == "137"
    res = store("kill", "victim", check=False)
    assert res.code != 0 and "not running" in res.err


def test_stale_state_after_monitor_kill(store: Cli) -> None:
    """kill -9 of the monitor and of the container: ps reports Exited, nothing leaks."""
    cid = store("run", "-d", "busybox", "sleep", "600").out.strip()
    root: Path = store.root  # type: ignore[attr-defined]
    state = json.loads((root / "containers" / cid / "state.json").read_text())
    os.kill(state["MonitorPid"], 9)
    os.kill(state["Pid"], 9)
    out = store("ps", "-a").out
    assert "Exited (255)" in out
    doc = json.loads(store("inspect", cid).out)[0]
    assert doc["State"]["Status"] == "exited"
    assert not os.path.ismount(doc["GraphDriver"]["Data"]["MergedDir"])


def test_commit_changes_and_cp_both_ways(store: Cli, tmp_path: Path) -> None:
    """commit --change/-m gives a runnable image; cp round-trips files."""
    store("run", "--name", "maker", "busybox", "sh", "-c",
          "mkdir /data && echo payload > /data/f && rm /bin/vi")  # fmt: skip
    assert store("diff", "maker").out.splitlines() == [
        "C /bin", "D /bin/vi", "A /data", "A /data/f",
    ]  # fmt: skip
    store("commit", "-m", "made", "-a", "me", "-c", "ENV MODE=test",
          "-c", 'CMD ["cat", "/data/f"]', "maker", "made:1")  # fmt: skip
    assert store("run", "--rm", "made:1").out == "payload\n"
    assert store("run", "--rm", "made:1", "sh", "-c", "echo $MODE").out == "test\n"
    history = json.loads(store("history", "--format", "json", "made:1").out.splitlines()[0])
    assert "made" in json.dumps(history)
    store("cp", "maker:/data", str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "f").read_text() == "payload\n"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "g").write_text("host\n")
    store("cp", str(tmp_path / "in"), "maker:/data/")
    store("commit", "maker", "made:2")
    assert store("run", "--rm", "made:2", "cat", "/data/in/g").out == "host\n"
