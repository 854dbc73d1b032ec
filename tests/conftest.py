"""Shared pytest setup: capability markers and leak checks.

A test marked ``needs_<x>`` is skipped, with the probe's reason, when the capability is
missing here (probed once per process; see :mod:`lamina.testing.capabilities`). CI has every
capability, so nothing may skip there.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina.image.memory import MemoryImage
from lamina.testing.capabilities import PROBES, mount_points_under
from lamina.testing.images import build_image
from lamina.testing.layers import Entry


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip items whose capability markers are not satisfied."""
    for item in items:
        for name, probe in PROBES.items():
            if item.get_closest_marker(name) is None:
                continue
            reason = probe()
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"{name}: {reason}"))
                break


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging if the test blocks for more than 10 s (e.g. reading a FIFO)."""

    def boom(signum: int, frame: object) -> None:
        raise TimeoutError("blocked for 10 s: was a FIFO read?")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def no_mount_leaks(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, asserting afterwards that no mount is left under it."""
    yield tmp_path
    leftovers = mount_points_under(tmp_path)
    assert leftovers == [], f"mounts leaked: {leftovers}"


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., MemoryImage]:
    """``make_image([[entries...], ...], compression=..., tag=...)`` -> MemoryImage."""
    counter = iter(range(1_000_000))

    def make(layers: list[list[Entry]], **kw: object) -> MemoryImage:
        return build_image(tmp_path / "images" / str(next(counter)), layers, **kw)  # type: ignore[arg-type]

    return make
