"""The native runtime's helper process: ``python -m lamina.runtime.nsinit MODE ...``.

Run as a separate, single-threaded process (never forked from the caller, whose threads and
locks would make fork unsafe, and because ``setns`` into a mount namespace needs one thread).

``run BUNDLE STATE_DIR CHANNEL_FD DETACH``
    unshare the pid namespace, fork the container's pid 1, which unshares mount/uts/ipc (and
    net when the config asks; never in the helper, whose root pivot_root would move), builds
    its mounts (:mod:`lamina.runtime.mounts`), sets hostname, loopback, credentials and
    capabilities, and execs the process. The helper stays as the reaper: it
    forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to the container, writes
    ``STATE_DIR/exit.json`` when it exits and exits with its status (128+N for signal N).
    With DETACH=1 it first double-forks into a new session so the caller need not wait.
``exec PID STARTTIME PROCESS_JSON CHANNEL_FD``
    setns into PID's ipc/uts/net/pid/mnt namespaces, fork, apply the process's credentials and
    exec; exit with its status.

The channel is a pipe of JSON lines to the caller: ``{"pid", "starttime", "helper",
"helper_starttime"}`` from the helper (exec mode sends only ``pid``), and
``{"error": "...", "errno": E}`` from the child if setup or exec fails. It is close-on-exec
in the child, so EOF with no error line means the exec happened.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import termios
from pathlib import Path
from typing import Any, NoReturn

from lamina.runtime import linux
from lamina.runtime.defaults import CAPABILITY_NUMBERS
from lamina.runtime.mounts import setup_rootfs
from lamina.runtime.procstat import process_starttime

#: the status a child reports when setup fails before exec (Docker's "runtime failed" 125)
SETUP_FAILED = 125

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2)  # fmt: skip
_NAMESPACES = (("ipc", linux.CLONE_NEWIPC), ("uts", linux.CLONE_NEWUTS),
               ("net", linux.CLONE_NEWNET), ("pid", linux.CLONE_NEWPID),
               ("mnt", linux.CLONE_NEWNS))  # fmt: skip


def _send(channel: int, doc: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(channel, json.dumps(doc).encode() + b"\n")


def _mask(names: list[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITY_NUMBERS[name]
    return mask


def apply_process(proc: dict[str, Any]) -> None:
    """rlimits, bounding set, groups/gid/uid, capabilities, no_new_privs, cwd — in that order."""
    for rl in proc.get("rlimits", []):
        resource.setrlimit(getattr(resource, rl["type"]), (int(rl["soft"]), int(rl["hard"])))
    caps = proc.get("capabilities", {})
    bounding = _mask(caps.get("bounding", []))
    for cap in range(linux.last_capability() + 1):
        if not bounding & (1 << cap):
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
    user = proc.get("user", {})
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    cwd = str(proc.get("cwd", "/"))
    os.makedirs(cwd, mode=0o755, exist_ok=True)  # as runc: a missing cwd is created
    os.setgroups([int(g) for g in user.get("additionalGids", [])])
    os.setgid(gid)
    os.setuid(uid)  # for uid != 0 the kernel clears the permitted and effective sets
    if uid == 0:
        linux.capset(_mask(caps.get("effective", [])), _mask(caps.get("permitted", [])), 0)
    if proc.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    os.chdir(cwd)


def _exec(proc: dict[str, Any], lifeline: int, channel: int) -> NoReturn:
    """Arm the parent-death signal (credential changes reset it), then exec.

    ``lifeline`` is the read end of a pipe whose write end only the parent holds: if it reads
    as hung up, the parent died before the signal was armed, and we must not run on.
    """
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    poller = select.poll()
    poller.register(lifeline, select.POLLIN)
    if poller.poll(0):
        os._exit(SETUP_FAILED)
    env = dict(str(e).partition("=")[::2] for e in proc.get("env", []))
    args = [str(a) for a in proc["args"]]
    os.set_inheritable(channel, False)
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(args[0], args, env)
    except OSError as exc:
        _send(channel, {"error": f"exec: {args[0]}: {exc.strerror}", "errno": exc.errno})
        os._exit(127 if exc.errno == errno.ENOENT else 126)


def _attach_terminal(console: socket.socket | None) -> None:
    """Open a pty on the container's devpts, hand its master over ``console`` (already
    connected, before any namespace change) and make its slave our controlling terminal and
    stdio. No-op without a console."""
    if console is None:
        return
    master, slave = os.openpty()  # /dev/ptmx -> pts/ptmx: the container's own devpts
    # 24x80 until the caller copies its own size (which raises SIGWINCH, as a resize does).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    socket.send_fds(console, [b"console"], [master])
    os.close(master)
    console.close()
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _container_child(
    config: dict[str, Any], lifeline: int, channel: int, console: socket.socket | None
) -> NoReturn:
    try:
        # Unshared here, not in the helper: pivot_root moves the root of *every* process in
        # the mount namespace, and the helper must keep the host's view to write exit.json.
        flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
        if any(ns.get("type") == "network" for ns in config["linux"]["namespaces"]):
            flags |= linux.CLONE_NEWNET
        linux.unshare(flags)
        setup_rootfs(config)
        _attach_terminal(console)
        if config.get("hostname"):
            socket.sethostname(str(config["hostname"]))
        if any(ns.get("type") == "network" for ns in config["linux"]["namespaces"]):
            linux.loopback_up()
        apply_process(config["process"])
    except BaseException as exc:  # report anything; never return into the caller
        _send(channel, {"error": str(exc), "errno": getattr(exc, "errno", None)})
        os._exit(SETUP_FAILED)
    _exec(config["process"], lifeline, channel)


def _reap(child: int, channel: int, state_dir: Path | None) -> NoReturn:
    """Forward signals to ``child``, wait for it, record and exit with its status.

    Without ``state_dir`` (exec mode) /proc is the container's, so no start time is sent.
    """
    info: dict[str, Any] = {"pid": child}
    if state_dir is not None:
        info["starttime"] = process_starttime(child)
        info["helper"] = os.getpid()
        info["helper_starttime"] = process_starttime(os.getpid())
    _send(channel, info)
    os.close(channel)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    if state_dir is not None:
        tmp = state_dir / ".exit.json.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"status": code}))
            os.replace(tmp, state_dir / "exit.json")
    os._exit(code)


def run(
    bundle: Path, state_dir: Path, channel: int, *, detach: bool, console: socket.socket | None
) -> NoReturn:
    """The ``run`` mode (see the module docstring)."""
    try:
        config = json.loads((bundle / "config.json").read_bytes())
        if detach:
            if os.fork():
                os._exit(0)
            os.setsid()
        linux.unshare(linux.CLONE_NEWPID)  # the helper itself stays in the host's namespaces
    except (OSError, ValueError, KeyError) as exc:
        _send(channel, {"error": f"creating namespaces: {exc}", "errno": None})
        os._exit(SETUP_FAILED)
    lifeline, keep = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(keep)
        _container_child(config, lifeline, channel, console)
    os.close(lifeline)
    if console is not None:
        console.close()
    _reap(child, channel, state_dir)


def exec_in(
    pid: int, starttime: int, process_file: Path, channel: int, console: socket.socket | None
) -> NoReturn:
    """The ``exec`` mode (see the module docstring)."""
    try:
        proc = json.loads(process_file.read_bytes())
        fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY), flag) for name, flag in _NAMESPACES]
        if process_starttime(pid) != starttime:
            raise OSError(errno.ESRCH, "the container's process is gone")
        for fd, flag in fds:
            linux.setns(fd, flag)
            os.close(fd)
    except (OSError, ValueError, KeyError) as exc:
        _send(channel, {"error": f"entering namespaces of {pid}: {exc}", "errno": None})
        os._exit(SETUP_FAILED)
    lifeline, keep = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(keep)
        try:
            _attach_terminal(console)
            apply_process(proc)
        except BaseException as exc:  # report anything; never return into the caller
            _send(channel, {"error": str(exc), "errno": getattr(exc, "errno", None)})
            os._exit(SETUP_FAILED)
        _exec(proc, lifeline, channel)
    os.close(lifeline)
    if console is not None:
        console.close()
    _reap(child, channel, None)


def _connect(path: str | None) -> socket.socket | None:
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def main(argv: list[str]) -> NoReturn:
    """Dispatch on the mode word; a trailing CONSOLE_SOCKET asks for a terminal; bad usage
    exits 125."""
    console_path = argv[5] if len(argv) == 6 else None
    if len(argv) in (5, 6) and argv[0] == "run":
        console = _connect(console_path)
        run(Path(argv[1]), Path(argv[2]), int(argv[3]), detach=argv[4] == "1", console=console)
    if len(argv) in (5, 6) and argv[0] == "exec":
        console = _connect(console_path)
        exec_in(int(argv[1]), int(argv[2]), Path(argv[3]), int(argv[4]), console)
    os.write(2, b"usage: nsinit run BUNDLE STATE CHANNEL DETACH [CONSOLE] | ")
    os.write(2, b"exec PID START PROC CHANNEL [CONSOLE]\n")
    os._exit(SETUP_FAILED)


if __name__ == "__main__":
    main(sys.argv[1:])
