"""Dock widget "Fine-tune on corrections": corrected `grains` + `pores` layers -> a new model.

Pairing: the *image* selector names an Image layer (or a stack: its slices with labels are the
samples); *grains* and *pores* follow the newest pair laid over it (:mod:`._pairs`) and can be
changed by hand. With the training set empty, Fine-tune uses
that one image; "Add to training set" collects several (image, grains, pores, region) rows.
An optional *region* Shapes layer limits the labels to its shapes (outside: ignored, 255).
The new model is stored as ``<user model folder>/<name>.safetensors`` and selected in the
segmentation widget. The decisions live in :mod:`._finetune_job` (testable without Qt).
"""

from __future__ import annotations

import time

from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QListWidget

from ..classes import GRAIN, LAYER_NAMES, PORE
from ..training.config import finetune_config
from ._base import TaskDock
from ._brush import OverlapFix
from ._devices import DeviceChoices, TorchWarmup
from ._events import events
from ._finetune_job import (
    FinetuneJob,
    TrainingCurves,
    TrainingPair,
    check_pair,
    model_out_path,
    result_text,
    train_config,
)
from ._layers import LayerChoices
from ._live import LiveMode
from ._live_jobs import TwoStageJob, painted_samples
from ._models import ModelPicker
from ._pairs import LayerFollower, PairPicker
from ._plots import TrainingPlot

WHOLE_IMAGE = "(whole image)"


class FinetuneWidget(TaskDock):
    """Fine-tune a model on hand-corrected `grains` and `pores` layers, with a live plot."""

    title = "Fine-tune"
    failed = "Fine-tuning failed"
    cancelling_text = "Cancelling after this step…"
    known_errors = (ValueError, FileExistsError, FloatingPointError)

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, "Fine-tune")
        self._pairs: list[TrainingPair] = []
        self.curves = TrainingCurves()
        self._build_set(self._viewer)
        self._build_settings()
        self._list = QListWidget()
        self._list.setMaximumHeight(90)
        self.plot = TrainingPlot()
        self.live = LiveMode(self)
        # the plot above the settings: visible without scrolling on a 1080p screen
        parts = (self._form.native, self._list, self.live.container.native, self.plot.canvas)
        for part in (*parts, self._settings.native):
            self._layout.addWidget(part)
        self._pairing = PairPicker(self._grains, self._pores, self._image)
        self._image.changed.connect(self.image_changed)
        self._add.clicked.connect(self.add_pair)
        self._remove.clicked.connect(self.remove_selected)
        self._follower = LayerFollower(self._viewer, self.reset_choices)
        self._warmup = TorchWarmup(self.reset_choices)  # torch loads off the GUI thread
        self.reset_choices()

    def _build_set(self, viewer) -> None:
        labels = LayerChoices(viewer, Labels)
        self._image = ComboBox(label="image", choices=LayerChoices(viewer, Image))
        self._grains = ComboBox(label=LAYER_NAMES[GRAIN], choices=labels, nullable=True)
        self._pores = ComboBox(label=LAYER_NAMES[PORE], choices=labels, nullable=True)
        self._region = ComboBox(
            label="region", choices=LayerChoices(viewer, Shapes, first=(WHOLE_IMAGE, None))
        )
        self._add = PushButton(text="Add to training set")
        self._remove = PushButton(text="Remove selected")
        self._set_label = Label(value="training set: the image above")
        self._fix = OverlapFix(viewer, self.say)
        self._form = Container(
            widgets=[
                self._image, self._grains, self._pores, self._region,
                Container(widgets=[self._add, self._remove], layout="horizontal", labels=False),
                self._set_label, self._fix.button,
            ]
        )  # fmt: skip

    def _build_settings(self) -> None:
        self._picker = ModelPicker("start from", scratch=True, follow=False)
        self._model, self._file = self._picker.combo, self._picker.file
        self._unit = ComboBox(label="length in", choices=["steps", "epochs"], value="steps")
        defaults = finetune_config()
        self._length = SpinBox(label="length", min=1, max=1_000_000, value=defaults.steps)
        self._lr = FloatSpinBox(label="learning rate", min=1e-6, max=0.1, step=1e-4)
        self._lr.native.setDecimals(6)
        self._lr.value = defaults.lr
        self._crop = SpinBox(label="crop", min=32, max=2048, step=16, value=defaults.crop)
        self._batch = SpinBox(label="batch", min=1, max=256, value=defaults.batch)
        self._val = FloatSpinBox(
            label="validation", min=0.0, max=0.5, step=0.05, value=defaults.val_fraction
        )
        self._device = ComboBox(label="device", choices=DeviceChoices(), value="auto")
        self._name = LineEdit(label="new model", value=f"finetuned-{time.strftime('%Y%m%d-%H%M')}")
        self._settings = Container(
            widgets=[
                *self._picker.widgets, self._unit, self._length, self._lr, self._crop,
                self._batch, self._val, self._device, self._name, *self.task_controls(),
            ]
        )  # fmt: skip

    # -- choices ----------------------------------------------------------------------
    def reset_choices(self, *_) -> None:
        """Refresh the layer and model lists and the pair (layers added, removed, renamed)."""
        self._form.reset_choices()
        self._settings.reset_choices()
        self._pairing.refresh(self._viewer.layers)
        live = set(map(id, self._viewer.layers))
        kept = [p for p in self._pairs if p.layer_ids() <= live]
        if len(kept) != len(self._pairs):
            self._pairs = kept
            self._refresh_list()
        self.update_state()

    def cancel(self) -> None:
        """Stop the run and the Live refits (also when the dock closes)."""
        super().cancel()
        self.live.stop()

    def update_state(self, *_) -> None:
        super().update_state()
        self._add.enabled = self._remove.enabled = not self.busy

    # -- training set -----------------------------------------------------------------
    def current_pair(self) -> TrainingPair:
        """The row the selectors describe; ValueError when a layer is missing."""
        values = (self._image, self._grains, self._pores, self._region)
        return check_pair(*(w.value for w in values))

    def add_pair(self) -> None:
        """Add the selected image and its layers to the training set."""
        try:
            pair = self.current_pair()
        except ValueError as exc:
            self.fail(str(exc))
            return
        if any(p.image is pair.image for p in self._pairs):
            self.fail(f"{pair.image.name} is already in the training set")
            return
        self._pairs.append(pair)
        self._refresh_list()

    def remove_selected(self) -> None:
        rows = sorted((i.row() for i in self._list.selectedIndexes()), reverse=True)
        for row in rows or ([len(self._pairs) - 1] if self._pairs else []):
            del self._pairs[row]
        self._refresh_list()

    def _refresh_list(self) -> None:
        self._list.clear()
        self._list.addItems([p.describe() for p in self._pairs])
        self._set_label.value = (
            f"training set: {len(self._pairs)} image(s)"
            if self._pairs
            else "training set: the image above"
        )

    # -- running ----------------------------------------------------------------------
    def make_job(self) -> FinetuneJob:
        """Read and check the layers and settings (GUI thread); ValueError in one sentence."""
        pairs = self._pairs or [self.current_pair()]
        for pair in pairs:
            self._fix.check(pair.grains, pair.pores)
        samples = [s for p in pairs for s in p.samples()]
        model_path = self._picker.path()
        out = model_out_path(self._name.value)
        config = train_config(
            by_steps=self._unit.value == "steps",
            length=int(self._length.value),
            crop=int(self._crop.value),
            batch=int(self._batch.value),
            lr=float(self._lr.value),
            val_fraction=float(self._val.value),
            device=self._device.value,
        )
        if self.live.toggle.value and not self._pairs and model_path is not None:
            pair = pairs[0]
            painted = self.live.brush.painted_mask(pair.grains)
            samples = painted_samples(samples, pair.grains, pair.pores, painted)
            return TwoStageJob(samples, model_path, out, config)
        return FinetuneJob(samples, model_path, out, config)

    def starting(self, job: FinetuneJob) -> str:
        self.curves = TrainingCurves()
        self.plot.reset()
        return job.describe()

    def on_progress(self, event) -> None:
        self._progress.max = event.total_steps
        self._progress.value = event.step
        status = self.curves.add(event)
        if status is not None:
            self._status.value = status
        self.plot.draw(self.curves, soon=event.kind == "step")

    def on_done(self, result) -> None:
        self.plot.draw(self.curves)
        self._status.value = getattr(result, "text", None) or result_text(result)
        if result.path is None:
            return
        events.model_added.emit(result.path)
        show_info(self._status.value)
