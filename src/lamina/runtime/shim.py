"""A tiny subreaper that waits for a *detached* runtime process: ``python -m lamina.runtime.shim``.

runc/crun accept ``--console-socket`` (the pty handover) only with ``--detach``, and a detached
process's exit status is then lost: its parent, runc, has exited. Container managers solve
this with a shim (containerd-shim, conmon); this is lamina's: it makes itself a child
subreaper, runs ``RUNTIME ... --detach --pid-file PIDFILE ...``, so the container's process
is re-parented to it, waits for that pid and records the result.

Usage: ``shim RESULT PIDFILE -- RUNTIME-ARGV...``. ``RESULT`` gets one JSON object:
``{"status": N}`` (the process's status, 128+N for signal N) or ``{"runtime_failed": rc}``
when the runtime itself failed. The shim exits 0 unless its usage is wrong. Other orphans
re-parented to it are reaped too. SIGTERM/SIGINT/SIGHUP are forwarded to the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from lamina.runtime import linux


def _write(path: Path, doc: dict[str, int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def main(argv: list[str]) -> NoReturn:
    """Run the shim (see the module docstring)."""
    if len(argv) < 4 or argv[2] != "--":
        os.write(2, b"usage: shim RESULT PIDFILE -- RUNTIME-ARGV...\n")
        os._exit(2)
    result, pidfile, command = Path(argv[0]), Path(argv[1]), argv[3:]
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    rc = subprocess.call(command, stdin=subprocess.DEVNULL)
    if rc != 0:
        _write(result, {"runtime_failed": rc})
        os._exit(0)
    pid = int(pidfile.read_text().strip())

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:  # the process was not re-parented to us (already gone)
            _write(result, {"status": 255})
            os._exit(0)
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            _write(result, {"status": 128 - code if code < 0 else code})
            os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
