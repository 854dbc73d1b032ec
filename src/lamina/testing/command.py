"""Run a program for a test: output captured, a failure reported with the program's stderr.

Every helper in :mod:`lamina.testing` that starts a short-lived program (lamina itself, git,
openssl, buildah, tar, ...) goes through :func:`run_command`, so they all capture the same way
and fail with the same kind of message. Long-running servers (the registry) use ``Popen``
themselves. Never imported by the lamina package itself.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from lamina._internal.lazydataclass import lazy_dataclass


@lazy_dataclass
class Result:
    """A finished run: exit ``code``, decoded ``out`` and ``err`` (undecodable bytes replaced),
    and ``raw``, stdout as bytes (for binary output such as tar streams)."""

    code: int
    out: str
    err: str
    raw: bytes = b""


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float | None = 300,
    name: str | None = None,
) -> Result:
    """Run ``argv`` to completion with stdout and stderr captured; returns its :class:`Result`.

    ``env`` replaces the whole environment when given (callers merge ``os.environ`` themselves
    if they want it), else the child inherits this process's; ``stdin`` bytes are fed in full,
    else the child inherits this process's stdin. With ``check`` a non-zero exit raises
    ``AssertionError`` naming the command (``name``, default the quoted ``argv``) and quoting
    its stderr; a ``timeout`` (seconds) kills the child and raises ``subprocess.TimeoutExpired``.
    """
    proc = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    res = Result(
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
        proc.stdout,
    )
    if check and res.code != 0:
        raise AssertionError(f"{name or shlex.join(argv)} exited {res.code}: {res.err}")
    return res
