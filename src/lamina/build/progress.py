"""Build progress as events: what the CLI renders as BuildKit-like plain, tty or JSON output.

The builder never prints. Every step becomes a *vertex* with a number (``#5``) and a name
(``[2/3] RUN make``); a :class:`Reporter` hands :class:`Event` values to one callback:

- ``start``: the vertex began; ``cached``: it was a cache hit (no ``done`` follows; ``text``
  is ``registry`` for a hit in a ``--cache-from`` registry cache, empty for the local cache);
- ``log``: one line of a RUN's output (``stream`` 1 = stdout, 2 = stderr), ``elapsed`` since start;
- ``done``: it finished (``elapsed`` seconds); ``error``: it failed (``text`` = the message);
- ``warning``: a build-level note (lint findings, unused build-args), vertex 0.

Invariants: vertex numbers are unique and increasing in ``start`` order; each vertex gets
exactly one of ``cached``/``done``/``error``; the callback is called under a lock, so events
from stages building in parallel threads never interleave inside the callback. A reporter
with no callback drops events (and costs nothing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from lamina._internal.lazydataclass import lazy_dataclass

EventKind = Literal["start", "cached", "log", "done", "error", "warning"]


@lazy_dataclass(frozen=True, kw_only=True)
class Event:
    """One progress event (see the module docstring)."""

    kind: EventKind
    vertex: int
    name: str
    elapsed: float = 0.0
    text: str = ""
    stream: int = 0


ProgressFn = Callable[[Event], None]


class Vertex:
    """One running vertex; report lines and its end through it. Ends at most once."""

    def __init__(self, reporter: Reporter, number: int, name: str) -> None:
        self.reporter = reporter
        self.number = number
        self.name = name
        self.started = time.monotonic()
        self.finished = False

    def elapsed(self) -> float:
        """Seconds since the vertex started."""
        return time.monotonic() - self.started

    def log(self, line: str, stream: int = 1) -> None:
        """One output line (without its newline)."""
        self.reporter.emit(
            Event(
                kind="log",
                vertex=self.number,
                name=self.name,
                elapsed=self.elapsed(),
                text=line,
                stream=stream,
            )
        )

    def _end(self, kind: EventKind, text: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        self.reporter.emit(
            Event(kind=kind, vertex=self.number, name=self.name, elapsed=self.elapsed(), text=text)
        )

    def cached(self, source: str = "") -> None:
        """The vertex was a cache hit; ``source`` (the event's text) names a cache other than
        the local one (``registry``)."""
        self._end("cached", source)

    def done(self) -> None:
        """The vertex finished."""
        self._end("done")

    def error(self, message: str) -> None:
        """The vertex failed with ``message``."""
        self._end("error", message)


class Reporter:
    """Numbers vertices and forwards events to ``callback`` (thread-safe)."""

    def __init__(self, callback: ProgressFn | None = None) -> None:
        self.callback = callback
        self._lock = threading.Lock()
        self._next = 1

    def emit(self, event: Event) -> None:
        """Forward one event (serialised)."""
        if self.callback is None:
            return
        with self._lock:
            self.callback(event)

    def start(self, name: str) -> Vertex:
        """Begin a vertex called ``name`` and report its ``start``."""
        with self._lock:
            number = self._next
            self._next += 1
        vertex = Vertex(self, number, name)
        self.emit(Event(kind="start", vertex=number, name=name))
        return vertex

    def warning(self, text: str) -> None:
        """A build-level warning (vertex 0)."""
        self.emit(Event(kind="warning", vertex=0, name="", text=text))


def step_label(stage_name: str | None, index: int, total: int, text: str) -> str:
    """BuildKit's vertex name: ``[stage 2/3] RUN make`` (index right-aligned to total's width)."""
    width = len(str(total))
    prefix = f"{stage_name} " if stage_name else ""
    return f"[{prefix}{index:>{width}}/{total}] {text}"
