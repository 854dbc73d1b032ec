"""PidFileWatch: the pid is reported once, whenever the file appears, and the status returned.

Real processes (``sh``) write the pid file the way runc does (temp file, then rename) or
in place; no runtime or root is needed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lamina.runtime.pidwatch import PidFileWatch


def watch_sh(tmp_path: Path, script: str) -> tuple[int, list[int], int]:
    """Run ``sh -c script`` (``$F`` = the pid file) under a watch: (status, reported, pid)."""
    pidfile = tmp_path / "pid"
    reported: list[int] = []
    with PidFileWatch(pidfile) as watch:
        proc = subprocess.Popen(["sh", "-c", script], env={"F": str(pidfile)})
        status = watch.wait(proc, reported.append)
    return status, reported, proc.pid


def test_renamed_pid_file_is_reported(tmp_path: Path) -> None:
    script = 'echo $$ > "$F.tmp"; mv "$F.tmp" "$F"; sleep 0.3; exit 5'
    status, reported, pid = watch_sh(tmp_path, script)
    assert (status, reported) == (5, [pid])


def test_pid_written_just_before_exit_is_still_reported(tmp_path: Path) -> None:
    status, reported, pid = watch_sh(tmp_path, 'echo $$ > "$F"; exit 0')
    assert (status, reported) == (0, [pid])


def test_no_pid_file_means_no_report(tmp_path: Path) -> None:
    status, reported, _ = watch_sh(tmp_path, "exit 3")
    assert (status, reported) == (3, [])


def test_empty_then_complete_file_reports_the_complete_pid(tmp_path: Path) -> None:
    script = ': > "$F"; sleep 0.1; echo $$ > "$F"; sleep 0.1'
    status, reported, pid = watch_sh(tmp_path, script)
    assert (status, reported) == (0, [pid])


def test_signal_death_is_a_negative_return_code(tmp_path: Path) -> None:
    status, reported, pid = watch_sh(tmp_path, 'echo $$ > "$F"; kill -KILL $$')
    assert (status, reported) == (-9, [pid])


def test_report_seen_before_exit(tmp_path: Path) -> None:
    """on_pid runs while the process still lives (it can be signalled from the callback)."""
    pidfile = tmp_path / "pid"
    with PidFileWatch(pidfile) as watch:
        proc = subprocess.Popen(
            ["sh", "-c", 'echo $$ > "$F"; exec sleep 30'], env={"F": str(pidfile)}
        )

        def stop(pid: int) -> None:
            assert proc.poll() is None
            subprocess.run(["kill", "-TERM", str(pid)], check=True)

        assert watch.wait(proc, stop) == -15


def test_a_failing_callback_propagates(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    def boom(_pid: int) -> None:
        raise RuntimeError("state write failed")

    with PidFileWatch(pidfile) as watch:
        proc = subprocess.Popen(["sh", "-c", 'echo $$ > "$F"; sleep 5'], env={"F": str(pidfile)})
        try:
            with pytest.raises(RuntimeError, match="state write failed"):
                watch.wait(proc, boom)
        finally:
            proc.kill()
            proc.wait()


def test_without_inotify_the_pid_is_still_reported(tmp_path: Path) -> None:
    """With no inotify fd (closed here, as when inotify_init1 fails) the watch polls."""
    pidfile = tmp_path / "pid"
    reported: list[int] = []
    with PidFileWatch(pidfile) as watch:
        watch.close()
        proc = subprocess.Popen(
            ["sh", "-c", 'sleep 0.1; echo $$ > "$F"; sleep 0.1; exit 2'], env={"F": str(pidfile)}
        )
        assert watch.wait(proc, reported.append) == 2
    assert reported == [proc.pid]
