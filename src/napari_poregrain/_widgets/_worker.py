"""Run engine work in a napari ``thread_worker`` with progress and cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal


class _Relay(QObject):
    """Carries payloads from the worker thread to the GUI thread (queued signal)."""

    sent = Signal(object)


class BackgroundTask:
    """Runs ``fn(emit, should_stop)`` off the GUI thread.

    ``emit(payload)`` may be called from the worker; ``on_progress(payload)`` then
    runs on the GUI thread. ``cancel()`` makes ``should_stop()`` return True.
    ``on_returned(result)``, ``on_errored(exc)`` and ``on_finished()`` run on the
    GUI thread when the work ends.
    """

    def __init__(
        self,
        fn: Callable[[Callable[[Any], None], Callable[[], bool]], Any],
        *,
        on_progress: Callable[[Any], None] | None = None,
        on_returned: Callable[[Any], None] | None = None,
        on_errored: Callable[[Exception], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self._stop = threading.Event()
        self._relay = _Relay()
        if on_progress is not None:
            self._relay.sent.connect(on_progress)
        self.worker = create_worker(fn, self._relay.sent.emit, self._stop.is_set, _start_thread=False)
        if on_returned is not None:
            self.worker.returned.connect(on_returned)
        if on_errored is not None:
            self.worker.errored.connect(on_errored)
        if on_finished is not None:
            self.worker.finished.connect(on_finished)

    def start(self) -> None:
        self.worker.start()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()
