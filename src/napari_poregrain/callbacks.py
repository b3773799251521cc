"""Progress and cancellation hooks shared by long-running engine functions."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int, int], None]
"""Called with (done, total) steps."""
StopFn = Callable[[], bool]
"""Returns True when the caller wants the work to stop."""


class Cancelled(Exception):
    """Raised inside long work when ``should_stop()`` returned True."""


def check_stop(should_stop: StopFn | None) -> None:
    """Raise :class:`Cancelled` if the caller asked to stop."""
    if should_stop is not None and should_stop():
        raise Cancelled("cancelled by the user")
