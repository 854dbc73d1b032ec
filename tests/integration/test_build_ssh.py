"""``RUN --mount=type=ssh`` with a real ``ssh-agent`` (openssh-client) and a key made by
``ssh-keygen``.

The round trip is real: busybox has no agent client, so the test puts the host's ``ssh-add``
with its shared libraries and dynamic loader into the build context, bind-mounts them into the
RUN (``--mount=type=bind``) and runs ``ssh-add -l`` there through the loader. It asks the
agent behind the mounted socket for its keys, and the fingerprint it prints must be the one
``ssh-keygen -l`` computes on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.build.progress import Event
from lamina.build.ssh import SshAgents, forward_agent, parse_ssh
from lamina.errors import BuildError, UsageError
from lamina.ops.archive import import_rootfs
from lamina.ops.build import build
from lamina.store import Store
from lamina.testing.cli import run_cli

pytest_plugins = ["conftest_runtime"]
pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.needs_overlay,
    pytest.mark.needs_runtime,
    pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="openssh-client missing"),
]

EPOCH = 1700000000
SSH_ADD = "/tools/ld.so --library-path /tools /tools/ssh-add"


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    """A fresh ed25519 key (no passphrase) and its SHA256 fingerprint."""
    path = tmp_path / "keys" / "id_test"
    path.parent.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lamina-test", "-f", str(path)],
        check=True,
    )
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], check=True, capture_output=True)
    return path, out.stdout.decode().split()[1]


@pytest.fixture
def agent(tmp_path: Path, key: tuple[Path, str]) -> Iterator[Path]:
    """An ``ssh-agent`` on a socket in ``tmp_path`` holding ``key``; stopped afterwards."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.01"], check=True)
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run(["ssh-add", "-q", str(key[0])], env=env, check=True)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def store(tmp_path: Path, busybox_tar: Path) -> Store:
    s = Store(tmp_path / "root")
    import_rootfs(s, str(busybox_tar), "busybox", epoch=EPOCH)
    return s


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    """A context with ``tools/``: the host's ssh-add, its libraries and the dynamic loader."""
    ctx = tmp_path / "ctx"
    tools = ctx / "tools"
    tools.mkdir(parents=True)
    out = subprocess.run(["ldd", "/usr/bin/ssh-add"], check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            name = "ld.so" if "ld-linux" in path else os.path.basename(path)
            shutil.copy(path, tools / name)
    shutil.copy("/usr/bin/ssh-add", tools / "ssh-add")
    return ctx


def _file(store: Store, ref: str, path: str) -> bytes | None:
    found = None
    for layer in store.get_image(ref).layers():
        with layer.open_uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for m in tar:
                if m.name == path or m.name.startswith("run/buildkit"):
                    data = tar.extractfile(m)
                    found = data.read() if data else b""
    return found


def test_default_agent_round_trip(
    store: Store, ctx: Path, agent: Path, key: tuple[Path, str], tmp_path: Path
) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh "
        f'echo "$SSH_AUTH_SOCK" > /env && ls -ln "$SSH_AUTH_SOCK" > /sock && {SSH_ADD} -l > /keys\n'
    )
    ssh = [parse_ssh("default", {"SSH_AUTH_SOCK": str(agent)})]
    build(store, ctx, tags=["s"], epoch=EPOCH, ssh=ssh)
    assert _file(store, "s", "env") == b"/run/buildkit/ssh_agent.0\n"
    sock = (_file(store, "s", "sock") or b"").decode().split()
    assert sock[0].startswith("srw-------") and sock[2:4] == ["0", "0"]
    keys = (_file(store, "s", "keys") or b"").decode()
    assert key[1] in keys and "lamina-test" in keys
    assert _file(store, "s", "run/buildkit/ssh_agent.0") is None  # nothing of it in a layer
    assert agent.exists() and oct(os.stat(agent).st_mode & 0o777) == "0o600"  # untouched


def test_key_file_agent_options_and_cache_key(
    store: Store, ctx: Path, key: tuple[Path, str], agent: Path
) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=bind,source=tools,target=/tools "
        "--mount=type=ssh,id=deploy,target=/agent,mode=0660,uid=1000,gid=1001 "
        f"ls -ln /agent > /sock && SSH_AUTH_SOCK=/agent {SSH_ADD} -l > /keys\n"
    )
    events: list[Event] = []
    build(store, ctx, tags=["k"], epoch=EPOCH, ssh=[parse_ssh(f"deploy={key[0]}", {})])
    sock = (_file(store, "k", "sock") or b"").decode().split()
    assert sock[0].startswith("srw-rw----") and sock[2:4] == ["1000", "1001"]
    assert key[1] in (_file(store, "k", "keys") or b"").decode()
    # another agent (another socket path) for the same id: the RUN is a cache hit
    build(
        store, ctx, tags=["k2"], epoch=EPOCH, progress=events.append,
        ssh=[parse_ssh(f"deploy={agent}", {})],
    )  # fmt: skip
    assert any(e.kind == "cached" for e in events)


def test_required_and_optional(store: Store, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN --mount=type=ssh test ! -e /run/buildkit/ssh_agent.0 && touch /ok\n"
    )
    build(store, ctx, tags=["o"], epoch=EPOCH)
    assert _file(store, "o", "ok") == b""
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=ssh,id=nope,required true\n")
    with pytest.raises(BuildError, match="ssh required but no ssh with id nope found") as e:
        build(store, ctx, tags=["r"], epoch=EPOCH)
    assert e.value.line == 2 and e.value.hint and "--ssh nope" in e.value.hint


def test_cli_ssh_default(store: Store, ctx: Path, agent: Path, key: tuple[Path, str]) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        f"RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh {SSH_ADD} -l\n"
    )
    res = run_cli(
        store.root, "build", "--progress", "plain", "--ssh", "default", "-t", "c", str(ctx),
        env={"SSH_AUTH_SOCK": str(agent)},
    )  # fmt: skip
    assert key[1] in res.err
    bad = run_cli(store.root, "build", "--ssh", "default", str(ctx), check=False,
                  env={"SSH_AUTH_SOCK": ""})  # fmt: skip
    assert bad.code != 0 and "SSH_AUTH_SOCK is not set" in bad.err
    assert "Traceback" not in bad.err


def test_parse_ssh_and_agents(tmp_path: Path, key: tuple[Path, str], agent: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        parse_ssh(f"x={tmp_path}/missing", {})
    with pytest.raises(UsageError, match="invalid --ssh"):
        parse_ssh("=x", {})
    source = parse_ssh(f"k={key[0]}", {})
    assert not source.is_socket and parse_ssh(f"a={agent}", {}).is_socket
    agents = SshAgents([source])
    sock = agents.socket_for("k")
    assert sock is not None and sock.exists() and agents.socket_for("other") is None
    long_dir = tmp_path / ("d" * 90)
    long_dir.mkdir()
    env = {"SSH_AUTH_SOCK": "", "PATH": "/usr/bin:/bin"}
    with forward_agent(sock, long_dir / "fwd.sock") as fwd:  # beyond sockaddr_un's 108 bytes
        env["SSH_AUTH_SOCK"] = f"/proc/self/cwd/{fwd.name}"
        out = subprocess.run(["ssh-add", "-l"], env=env, cwd=long_dir, capture_output=True)
        assert key[1] in out.stdout.decode()
    assert not (long_dir / "fwd.sock").exists()
    agents.close()
    assert not sock.exists()
