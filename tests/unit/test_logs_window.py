"""``logs --since/--until``: Docker's time forms, made comparable with log entry times."""

from __future__ import annotations

import pytest

from lamina.errors import UsageError


def test_log_times_take_dockers_forms() -> None:
    from lamina.ops.container_exec import _fixed_width, log_time

    now = 1_764_385_200.25  # 2025-11-29T03:00:00.25Z
    assert log_time("1764385200") == "2025-11-29T03:00:00.000000000Z"
    assert log_time("10m", now=now) == "2025-11-29T02:50:00.250000000Z"
    assert log_time("1h30m", now=now) == "2025-11-29T01:30:00.250000000Z"
    assert log_time("2025-11-29T04:00:00+01:00") == "2025-11-29T03:00:00.000000000Z"
    assert log_time("2025-11-29") == "2025-11-29T00:00:00.000000000Z"
    assert _fixed_width("2025-11-29T03:00:00.5Z") == "2025-11-29T03:00:00.500000000Z"
    with pytest.raises(UsageError, match="invalid time"):
        log_time("soon")
