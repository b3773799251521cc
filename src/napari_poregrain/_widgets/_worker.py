"""Run engine work in a napari ``thread_worker`` with progress and cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal

from ..callbacks import Cancelled

Emit = Callable[[Any], None]
Work = Callable[[Emit, Callable[[], bool]], Any]


class _Relay(QObject):
    """Carries payloads from the worker thread to the GUI thread (queued signal)."""

    sent = Signal(object)


class _Outcome:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class BackgroundTask:
    """Runs ``fn(emit, should_stop)`` off the GUI thread.

    ``emit(payload)`` may be called from the worker; ``on_progress(payload)`` then
    runs on the GUI thread. ``cancel()`` makes ``should_stop()`` return True.
    When the work ends, exactly one of ``on_returned(result)``,
    ``on_cancelled()`` (the work raised :class:`Cancelled`) or ``on_errored(exc)``
    runs on the GUI thread, then ``on_finished()`` (without ``on_cancelled``,
    :class:`Cancelled` goes to ``on_errored``). Errors are handed to
    ``on_errored`` rather than to napari's traceback dialog, so widgets can show
    one clear sentence.
    """

    def __init__(
        self,
        fn: Work,
        *,
        on_progress: Callable[[Any], None] | None = None,
        on_returned: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_errored: Callable[[Exception], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self._fn = fn
        self._stop = threading.Event()
        self._relay = _Relay()
        if on_progress is not None:
            self._relay.sent.connect(on_progress)
        self._on_returned = on_returned
        self._on_cancelled = on_cancelled
        self._on_errored = on_errored
        self.worker = create_worker(
            self._guarded, self._relay.sent.emit, self._stop.is_set, _start_thread=False
        )
        self.worker.returned.connect(self._dispatch)
        if on_finished is not None:
            self.worker.finished.connect(on_finished)

    def _guarded(self, emit: Emit, should_stop: Callable[[], bool]) -> Any:
        try:
            return self._fn(emit, should_stop)
        except Exception as exc:  # handed to on_errored / on_cancelled
            return _Outcome(exc)

    def _dispatch(self, result: Any) -> None:
        if not isinstance(result, _Outcome):
            if self._on_returned is not None:
                self._on_returned(result)
        elif isinstance(result.error, Cancelled) and self._on_cancelled is not None:
            self._on_cancelled()
        elif self._on_errored is not None:
            self._on_errored(result.error)
        else:
            raise result.error

    def start(self) -> None:
        self.worker.start()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()
