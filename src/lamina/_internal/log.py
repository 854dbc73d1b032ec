"""Loggers that load :mod:`logging` only when a record is emitted.

``import logging`` (with ``traceback``, ``string`` and ``textwrap``) is ~7 ms of every start-up,
and configuring it imports the rest; yet most commands never log a thing (``run``, ``images``,
a cached build). lamina's modules take their logger from :func:`get_logger`, and the CLI
registers its configuration with :func:`defer_setup` instead of running it: the first record
at or above the CLI's threshold imports logging, runs the setup once and is emitted there;
records below the threshold are dropped without importing anything — exactly what logging
would have done with that configuration.

A record that cannot load :mod:`logging` at all (a process that dropped its privileges after
start-up and no longer reaches the standard library) is written to stderr as ``lamina: msg``
when it is a warning or worse, never raised: logging must not fail the operation it reports.

Invariants: without :func:`defer_setup` (library use, tests with ``caplog``) every call goes
to the standard logger of the same name, so handlers, levels and capture behave as with
``logging.getLogger``. The setup runs at most once, before the first record it governs is
emitted, also when several threads log at once. Code that logs through :mod:`logging`
directly (third-party loggers' records included) calls :func:`ensure_setup` first.
"""

from __future__ import annotations

import _thread
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40  # logging's own values

#: while a setup is pending, records below this are dropped unlogged (0: forward everything)
_threshold = 0
_setup: Callable[[], None] | None = None
_lock = _thread.allocate_lock()


def defer_setup(threshold: int, setup: Callable[[], None]) -> None:
    """Run ``setup`` (configure logging) before the first record at ``threshold`` or above."""
    global _threshold, _setup
    with _lock:
        _threshold, _setup = threshold, setup


def cancel_setup() -> None:
    """Forget a pending setup: records go to :mod:`logging` as configured (the CLI calls this
    when ``main`` returns, so in-process callers and tests find logging as they left it)."""
    global _setup, _threshold
    with _lock:
        _setup, _threshold = None, 0


def ensure_setup() -> None:
    """Run the deferred setup now, if one is pending (idempotent); from then on every record
    goes to :mod:`logging`, whose levels decide (a caller may change them after this)."""
    global _setup, _threshold
    if _setup is None:
        return
    with _lock:
        setup, _setup = _setup, None
        if setup is not None:
            setup()
            _threshold = 0


class LazyLogger:
    """The subset of :class:`logging.Logger` lamina uses; the real one is made on first use."""

    __slots__ = ("_real", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._real: logging.Logger | None = None

    def _log(self, level: int, msg: str, args: tuple[Any, ...], exc_info: bool) -> None:
        if level < _threshold:
            return
        real = self._real
        if real is None:
            try:
                import logging
            except ImportError:  # the stdlib went out of reach (privileges dropped since start)
                if level >= WARNING:
                    sys.stderr.write(f"lamina: {msg % args if args else msg}\n")
                return
            ensure_setup()
            real = self._real = logging.getLogger(self.name)
        # stacklevel 3: the record names the caller of debug()/warning(), not this module
        real.log(level, msg, *args, exc_info=exc_info, stacklevel=3)

    def debug(self, msg: str, *args: Any) -> None:
        """Log ``msg % args`` at DEBUG."""
        self._log(DEBUG, msg, args, False)

    def info(self, msg: str, *args: Any) -> None:
        """Log ``msg % args`` at INFO."""
        self._log(INFO, msg, args, False)

    def warning(self, msg: str, *args: Any) -> None:
        """Log ``msg % args`` at WARNING."""
        self._log(WARNING, msg, args, False)

    def error(self, msg: str, *args: Any, exc_info: bool = False) -> None:
        """Log ``msg % args`` at ERROR."""
        self._log(ERROR, msg, args, exc_info)


def get_logger(name: str) -> LazyLogger:
    """The lazy logger for ``name`` (a module's ``__name__``)."""
    return LazyLogger(name)
