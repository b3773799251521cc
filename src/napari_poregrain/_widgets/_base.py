"""The skeleton of a dock that runs one background task with progress, cancel and errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ._layers import real_viewer
from ._worker import BackgroundTask, Work


class TaskDock(QWidget):
    """A dock with a run button, Cancel, a progress bar and a status line; one task at a time.

    Subclasses set ``title`` (notifications of :meth:`fail` start with it), ``failed`` (the
    start of a task error's message) and the texts below if they differ, implement
    ``make_job``, ``on_done`` and ``starting``, and may extend ``update_state``. Progress
    payloads are ``(done, total)``; override ``on_progress`` for others. Widgets go into
    ``self._layout``, inside a vertical scroll area (the dock fits any screen height); the bar is
    busy until the first payload and full when the task returns; taking the dock out of the
    window (its close button) or closing it cancels the task.
    """

    title = ""
    failed = "failed"
    cancelling_text = "Cancelling…"
    cancelled_text = "Cancelled."
    known_errors: tuple[type[BaseException], ...] = (ValueError, FileExistsError)

    def __init__(self, napari_viewer, run_text: str) -> None:
        super().__init__()
        self._viewer = real_viewer(napari_viewer)
        self._task: BackgroundTask | None = None
        self._run = PushButton(text=run_text)
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, max=1)
        self._status = Label(value="")
        wrap_text(self._status.native)
        self._run.clicked.connect(self.run)
        self._cancel.clicked.connect(self.cancel)
        self._layout = scrolled_layout(self)

    def task_controls(self) -> list:
        """Run and Cancel side by side, the progress bar and the status line."""
        buttons = Container(widgets=[self._run, self._cancel], layout="horizontal", labels=False)
        return [buttons, self._progress, self._status]

    @property
    def busy(self) -> bool:
        return self._task is not None

    def run(self) -> None:
        """Read the inputs (GUI thread) and start the task; bad input: one sentence, no task."""
        if self.busy:
            return
        try:
            job = self.make_job()
        except ValueError as exc:
            self.fail(str(exc))
            return
        self.start(job, self.on_done, self.starting(job))

    def make_job(self) -> Work:  # pragma: no cover - every dock implements it
        """The task, from the inputs; ValueError in one sentence when they do not fit."""
        raise NotImplementedError

    def starting(self, job) -> str:
        """Prepare the display for ``job``; the status line while it runs."""
        return "Working…"

    def on_done(self, result) -> None:  # pragma: no cover - every dock implements it
        """Show the task's result (GUI thread)."""
        raise NotImplementedError

    def update_state(self, *_) -> None:
        """Enable the controls for the current state (extend in subclasses)."""
        self._run.enabled = not self.busy
        self._cancel.enabled = self.busy

    # -- the task ----------------------------------------------------------------------------
    def start(self, work: Work, on_returned: Callable[[Any], None], status: str) -> None:
        """Run ``work(emit, should_stop)`` in the background; ``on_returned(result)`` after."""
        self._task = BackgroundTask(
            work,
            on_progress=self.on_progress,
            on_returned=functools.partial(self._returned, on_returned),
            on_cancelled=self.on_cancelled,
            on_errored=self.on_error,
            on_finished=self.on_finished,
        )
        self._progress.max = 0  # busy until the task reports (done, total)
        self._progress.value = 0
        self._status.value = status
        self.update_state()
        self._task.start()

    def _returned(self, on_returned: Callable[[Any], None], result: Any) -> None:
        self._progress.max = max(self._progress.max, 1)
        self._progress.value = self._progress.max
        on_returned(result)

    def cancel(self) -> None:
        """Ask the running task to stop."""
        if self._task is not None:
            self._task.cancel()
            self._status.value = self.cancelling_text

    def event(self, event) -> bool:
        """Cancel the task when napari takes the dock out of its window (the close button);
        once docked, share a tab with the plugin's other docks (they fit a 1080p screen)."""
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is None:
                self.cancel()
            else:
                QTimer.singleShot(0, self.tabify)
        return super().event(event)

    def tabify(self) -> None:
        """Put this dock in a tab beside another of this plugin's docks in the same window."""
        try:
            mine = _dock_frame(self)
        except RuntimeError:  # the dock was deleted before the event loop came back
            return
        window = None if mine is None else mine.parent()
        if not isinstance(window, QMainWindow) or window.tabifiedDockWidgets(mine):
            return
        for other in window.findChildren(QDockWidget):
            if other is not mine and _holds_task_dock(other) and not other.isHidden():
                if window.dockWidgetArea(other) == window.dockWidgetArea(mine):
                    window.tabifyDockWidget(other, mine)
                    mine.raise_()
                    return

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.cancel()
        super().closeEvent(event)

    def on_progress(self, payload) -> None:
        done, total = payload
        self._progress.max = total
        self._progress.value = done

    def say(self, text: str) -> None:
        """Show ``text`` in the status line (not an error)."""
        self._status.value = text

    def image_changed(self, *_) -> None:
        """The chosen image changed: docks that pair grains/pores layers with it re-pick them."""
        pairing = getattr(self, "_pairing", None)
        if pairing is not None:
            pairing.image_changed(self._viewer.layers)

    def fail(self, msg: str) -> None:
        """Show ``msg`` in the status line and as a napari notification."""
        self._status.value = msg
        show_error(f"{self.title}: {msg}" if self.title else msg)

    def on_cancelled(self) -> None:
        self._status.value = self.cancelled_text

    def on_error(self, exc: Exception) -> None:
        text = str(exc) if isinstance(exc, self.known_errors) else repr(exc)
        self._status.value = f"{self.failed}: {text}"
        show_error(self._status.value)

    def on_finished(self) -> None:
        self._task = None
        self._progress.max = max(self._progress.max, 1)
        self.update_state()


def _holds_task_dock(frame: QDockWidget) -> bool:
    """The dock frame holds one of this plugin's docks (napari may wrap it in a scroll area)."""
    return bool(frame.widget() is not None and frame.widget().findChildren(TaskDock)) or (
        isinstance(frame.widget(), TaskDock)
    )


def _dock_frame(widget: QWidget) -> QDockWidget | None:
    """The QDockWidget holding ``widget`` (napari wraps a dock in one), or None."""
    parent = widget.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    return parent


def wrap_text(label: QLabel) -> None:
    """Let ``label`` wrap long text (even a path without spaces) instead of widening its dock."""
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    label.setMinimumWidth(0)


class VerticalScroll(QScrollArea):
    """Scrolls vertically only; as wide as its content needs (nothing is clipped on the right)."""

    def minimumSizeHint(self):  # noqa: N802 - Qt's name
        hint = super().minimumSizeHint()
        if self.widget() is not None:
            bar = self.verticalScrollBar().sizeHint().width()
            hint.setWidth(self.widget().minimumSizeHint().width() + bar + 2 * self.frameWidth())
        return hint


def scrolled_layout(dock: QWidget) -> QVBoxLayout:
    """A vertical layout in a scroll area filling ``dock``: the dock fits a short screen."""
    content = QWidget()
    layout = QVBoxLayout(content)
    area = VerticalScroll()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(content)
    layout.setAlignment(Qt.AlignmentFlag.AlignTop)  # controls at the top, natural spacing
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return layout
