"""/proc facts about processes, kept apart from :mod:`lamina.runtime.linux` (which loads ctypes
and libc, ~3 ms) so that ``ps``, ``run`` and the state bookkeeping can read them cheaply."""

from __future__ import annotations

from pathlib import Path


def process_starttime(pid: int) -> int:
    """Field 22 of /proc/PID/stat (start time in clock ticks): tells a pid's reuse apart.

    Raises :class:`OSError` when the process is gone. The command name (field 2) may hold
    spaces and parentheses, so fields are counted from the last ``)``.
    """
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rindex(b")") + 2 :].split()[19])
