"""Engine progress callbacks for widget jobs (no Qt: the jobs are tested without it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class StepProgress:
    """An engine ``progress(done, total)`` callback that emits ``(done, total)`` payloads."""

    def __init__(self, emit: Callable[[Any], None]) -> None:
        self.emit = emit

    def __call__(self, done: int, total: int) -> None:
        self.emit((done, total))
