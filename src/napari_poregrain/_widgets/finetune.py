"""Dock widget "Fine-tune on corrections": corrected `grains` + `pores` layers -> a new model.

Pairing: the *image* selector names an Image layer; *grains* and *pores* are picked for it
automatically (Labels layers of the image's shape named ``grains``/``pores`` first, then
names starting so) and can be changed by hand. With the training set empty, Fine-tune uses
that one image; "Add to training set" collects several (image, grains, pores, region) rows.
An optional *region* Shapes layer limits the labels to its shapes (outside: ignored, 255).
The new model is stored as ``<user model folder>/<name>.safetensors`` and selected in the
segmentation widget.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QListWidget, QVBoxLayout, QWidget

from ..classes import CLASS_NAMES, GRAIN, IGNORE, LAYER_COLOURS, LAYER_NAMES, PORE
from ..inference.predict import available_devices
from ..model import CheckpointError, available_models, load_checkpoint, user_model_dir
from ._events import events
from ._layers import labels_from_layers
from ._worker import BackgroundTask

FILE_CHOICE = "checkpoint file…"
SCRATCH_CHOICE = "new model (from scratch)"
WHOLE_IMAGE = "(whole image)"
DEFAULT_STEPS = 120
DEFAULT_LR = 1e-3
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")
_IOU_COLOURS = {"matrix": "grey", "grain": LAYER_COLOURS[GRAIN], "pore": LAYER_COLOURS[PORE]}


@dataclass
class TrainingPair:
    """One row of the training set: layers, not arrays (read when training starts)."""

    image: Image
    grains: Labels
    pores: Labels
    region: Shapes | None = None

    def describe(self) -> str:
        region = f", region {self.region.name}" if self.region is not None else ""
        return f"{self.image.name} ← {self.grains.name} + {self.pores.name}{region}"


def _spatial_shape(layer: Image) -> tuple[int, ...]:
    data = layer.data[0] if layer.multiscale else layer.data
    return tuple(data.shape[:-1] if layer.rgb else data.shape)


def region_mask(region: Shapes, image: Image, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (image pixels) of the shapes in ``region``, mapped through world space."""
    if len(region.data) == 0:
        raise ValueError(f"the region layer {region.name!r} holds no shapes; draw one first")
    mapped = [
        np.array([image.world_to_data(region.data_to_world(p))[-2:] for p in np.asarray(v)])
        for v in region.data
    ]
    # A detached layer with the shapes in image pixel coordinates rasterises them
    # (napari's own code: ellipses are drawn as ellipses, not their bounding boxes).
    flat = Shapes(mapped, shape_type=list(region.shape_type))
    masks = flat.to_masks(mask_shape=shape)
    return np.asarray(masks).any(axis=0)


def pair_arrays(pair: TrainingPair) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the image (rows above its data bar) and its 0/1/2/255 label map."""
    image = pair.image
    data = np.asarray(image.data[0] if image.multiscale else image.data)
    if data.ndim != (3 if image.rgb else 2):
        raise ValueError(f"{image.name}: fine-tuning needs a 2-D image, not shape {data.shape}")
    try:
        labels = labels_from_layers(pair.grains.data, pair.pores.data)
    except ValueError as exc:
        raise ValueError(f"{image.name}: {exc}") from None
    shape = data.shape[:2]
    if labels.shape != shape:
        raise ValueError(
            f"{image.name}: the grains and pores layers are {labels.shape[0]}x{labels.shape[1]} "
            f"but the image is {shape[0]}x{shape[1]}"
        )
    if pair.region is not None:
        labels[~region_mask(pair.region, image, shape)] = IGNORE
    bar = image.metadata.get("data_bar_row")
    if bar is not None:  # as the segmentation widget: only the rows above the data bar
        data, labels = data[:bar], labels[:bar]
    return np.array(data, copy=True), labels


class FinetuneWidget(QWidget):
    """Fine-tune a model on hand-corrected `grains` and `pores` layers, with a live plot."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._task: BackgroundTask | None = None
        self._pairs: list[TrainingPair] = []

        self._image = ComboBox(label="image", choices=self._layer_choices(Image))
        self._grains = ComboBox(label=LAYER_NAMES[GRAIN], choices=self._layer_choices(Labels))
        self._pores = ComboBox(label=LAYER_NAMES[PORE], choices=self._layer_choices(Labels))
        self._region = ComboBox(label="region", choices=self._region_choices)
        self._add = PushButton(text="Add to training set")
        self._remove = PushButton(text="Remove selected")
        self._set_label = Label(value="training set: the image above")
        self._model = ComboBox(label="start from", choices=self._model_choices)
        self._file = FileEdit(label="file", mode="r", filter="*.safetensors")
        self._unit = ComboBox(label="length in", choices=["steps", "epochs"], value="steps")
        self._length = SpinBox(label="length", min=1, max=1_000_000, value=DEFAULT_STEPS)
        self._lr = FloatSpinBox(label="learning rate", min=1e-6, max=0.1, step=1e-4)
        self._lr.native.setDecimals(6)
        self._lr.value = DEFAULT_LR
        self._crop = SpinBox(label="crop", min=32, max=2048, step=16, value=256)
        self._batch = SpinBox(label="batch", min=1, max=256, value=4)
        self._val = FloatSpinBox(label="validation", min=0.0, max=0.5, step=0.05, value=0.2)
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._name = LineEdit(label="new model", value=f"finetuned-{time.strftime('%Y%m%d-%H%M')}")
        self._run = PushButton(text="Fine-tune")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, max=1)
        self._status = Label(value="")
        self._form = Container(
            widgets=[
                self._image, self._grains, self._pores, self._region,
                Container(widgets=[self._add, self._remove], layout="horizontal", labels=False),
                self._set_label,
            ]
        )  # fmt: skip
        self._list = QListWidget()
        self._list.setMaximumHeight(90)
        self._settings = Container(
            widgets=[
                self._model, self._file, self._unit, self._length, self._lr, self._crop,
                self._batch, self._val, self._device, self._name,
                Container(widgets=[self._run, self._cancel], layout="horizontal", labels=False),
                self._progress, self._status,
            ]
        )  # fmt: skip
        self._canvas, self._axes = self._make_plot()
        layout = QVBoxLayout(self)
        layout.addWidget(self._form.native)
        layout.addWidget(self._list)
        layout.addWidget(self._settings.native)
        layout.addWidget(self._canvas)

        self._image.changed.connect(self._pick_labels)
        self._model.changed.connect(self._update_state)
        self._file.changed.connect(self._update_state)
        self._add.clicked.connect(self.add_pair)
        self._remove.clicked.connect(self.remove_selected)
        self._run.clicked.connect(self.run)
        self._cancel.clicked.connect(self.cancel)
        for ev in ("inserted", "removed", "moved"):
            getattr(self._viewer.layers.events, ev).connect(self.reset_choices)
        events.model_added.connect(self._on_model_added)
        handler = self._on_model_added
        self.destroyed.connect(lambda *_: events.model_added.disconnect(handler, missing_ok=True))
        self._pick_labels()
        self._update_state()

    # -- choices ----------------------------------------------------------------------
    def _layer_choices(self, kind):
        def choices(_widget=None):
            return [
                (layer.name, layer) for layer in self._viewer.layers if isinstance(layer, kind)
            ]

        return choices

    def _region_choices(self, _widget=None):
        shapes = [(lay.name, lay) for lay in self._viewer.layers if isinstance(lay, Shapes)]
        return [(WHOLE_IMAGE, None), *shapes]

    def _model_choices(self, _widget=None) -> list[str]:
        return [*available_models(), FILE_CHOICE, SCRATCH_CHOICE]

    def reset_choices(self, *_) -> None:
        """Refresh the layer and model lists (napari calls this when layers change)."""
        image = self._image.value
        self._form.reset_choices()
        self._settings.reset_choices()
        if self._image.value is not image or self._grains.value is None:
            self._pick_labels()
        live = set(map(id, self._viewer.layers))
        kept = [p for p in self._pairs if {id(p.image), id(p.grains), id(p.pores)} <= live]
        if len(kept) != len(self._pairs):
            self._pairs = kept
            self._refresh_list()
        self._update_state()

    def _pick_labels(self, *_) -> None:
        """Choose the grains and pores layers that fit the selected image."""
        image = self._image.value
        if image is None:
            return
        shape = _spatial_shape(image)
        fits = [
            lay
            for lay in self._viewer.layers
            if isinstance(lay, Labels) and tuple(lay.data.shape) == shape
        ]
        for widget, cls in ((self._grains, GRAIN), (self._pores, PORE)):
            name = LAYER_NAMES[cls]
            ranked = [lay for lay in fits if lay.name == name] + [
                lay for lay in fits if lay.name.startswith(name) and lay.name != name
            ]
            if ranked:
                widget.value = ranked[0]

    def _on_model_added(self, path) -> None:
        self._model.reset_choices()

    def _update_state(self, *_) -> None:
        self._file.visible = self._model.value == FILE_CHOICE
        busy = self._task is not None
        self._run.enabled = not busy
        self._cancel.enabled = busy
        self._add.enabled = self._remove.enabled = not busy

    # -- training set -----------------------------------------------------------------
    def current_pair(self) -> TrainingPair:
        """The row the selectors describe; ValueError when a layer is missing."""
        image, grains, pores = self._image.value, self._grains.value, self._pores.value
        if image is None:
            raise ValueError("add an image layer with its corrected grains and pores first")
        if grains is None or pores is None:
            raise ValueError(f"choose the grains and pores Labels layers of {image.name}")
        if grains is pores:
            raise ValueError("the grains and pores layers must be two different layers")
        return TrainingPair(image, grains, pores, self._region.value)

    def add_pair(self) -> None:
        """Add the selected image and its layers to the training set."""
        try:
            pair = self.current_pair()
        except ValueError as exc:
            self._fail(str(exc))
            return
        if any(p.image is pair.image for p in self._pairs):
            self._fail(f"{pair.image.name} is already in the training set")
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
    def _model_path(self) -> Path | None:
        """The starting model's file; None for scratch; ValueError when there is none."""
        choice = self._model.value
        if choice == SCRATCH_CHOICE:
            return None
        if choice == FILE_CHOICE:
            path = Path(self._file.value)
            if not path.is_file():
                raise ValueError("choose the starting model's checkpoint file (.safetensors)")
            return path
        path = available_models().get(choice)
        if path is None:
            raise ValueError(f"the model {choice!r} is no longer available")
        return path

    def _out_path(self) -> Path:
        from ..training.trainer import log_path_for

        name = self._name.value.strip()
        name = name.removesuffix(".safetensors")
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                "give the new model a name of letters, digits, '.', '-', '_' or spaces"
            )
        if name == "default" or name in available_models():
            raise ValueError(f"a model named {name!r} already exists; choose another name")
        out = user_model_dir() / f"{name}.safetensors"
        for path in (out, log_path_for(out)):
            if path.exists():
                raise ValueError(f"{path} already exists; choose another name")
        return out

    def _config(self):
        from ..training.trainer import TrainConfig

        length = int(self._length.value)
        by_steps = self._unit.value == "steps"
        return TrainConfig(
            crop=int(self._crop.value),
            batch=int(self._batch.value),
            steps=length if by_steps else None,
            epochs=None if by_steps else length,
            lr=float(self._lr.value),
            val_fraction=float(self._val.value),
            device=self._device.value,
        )

    def run(self) -> None:
        """Read the layers, check them and start fine-tuning in the background."""
        if self._task is not None:
            return
        from ..training.trainer import train

        try:
            pairs = self._pairs or [self.current_pair()]
            arrays = [pair_arrays(p) for p in pairs]
            names = [p.image.name for p in pairs]
            model_path = self._model_path()
            out = self._out_path()
            config = self._config()
            config.validate()
        except ValueError as exc:
            self._fail(str(exc))
            return

        def work(emit, should_stop):
            init = None if model_path is None else load_checkpoint(model_path)
            return train(
                arrays, config, init, out, names=names, progress=emit, should_stop=should_stop
            )

        self._task = BackgroundTask(
            work,
            on_progress=self._on_progress,
            on_returned=self._on_done,
            on_errored=self._on_error,
            on_finished=self._on_finished,
        )
        self._reset_plot()
        self._progress.value = 0
        start = "scratch" if model_path is None else model_path.stem
        self._status.value = f"Fine-tuning {start} on {len(arrays)} image(s) → {out.stem}…"
        self._update_state()
        self._task.start()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._status.value = "Cancelling after this step…"

    def _fail(self, msg: str) -> None:
        self._status.value = msg
        show_error(msg)

    def _on_progress(self, event) -> None:
        self._progress.max = event.total_steps
        self._progress.value = event.step
        if event.kind == "step":
            self._steps.append(event.step)
            self._losses.append(event.loss)
            now = time.monotonic()
            if now - self._last_draw > 0.5:
                self._draw()
        elif event.kind == "epoch":
            self._val_steps.append(event.step)
            for name, v in zip(CLASS_NAMES, event.val_iou or [None] * 3, strict=True):
                self._ious[name].append(np.nan if v is None else v)
            if event.val_iou is not None:
                miou = "-" if event.val_miou is None else f"{event.val_miou:.3f}"
                self._status.value = (
                    f"Epoch {event.epoch}: validation mean IoU {miou}"
                    f"{' (saved)' if event.best else ''}"
                )
            self._draw()

    def _on_done(self, result) -> None:
        self._draw()
        if result.path is None:
            self._status.value = "Cancelled before the first validation: no model was saved."
            return
        events.model_added.emit(result.path)
        m = result.best_metrics
        score = (
            "" if not m or m["mean_iou"] is None else f", validation mean IoU {m['mean_iou']:.3f}"
        )
        how = "Cancelled; kept" if result.cancelled else "Saved"
        self._status.value = (
            f"{how} {result.path.stem} (epoch {result.best_epoch}{score}); "
            "it is selected in the segmentation widget."
        )
        show_info(self._status.value)

    def _on_error(self, exc: Exception) -> None:
        known = (ValueError, FileExistsError, FloatingPointError, CheckpointError)
        self._fail(f"Fine-tuning failed: {exc if isinstance(exc, known) else repr(exc)}")

    def _on_finished(self) -> None:
        self._task = None
        self._update_state()

    # -- plot -------------------------------------------------------------------------
    def _make_plot(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4, 3.2), tight_layout=True)
        canvas = FigureCanvasQTAgg(fig)
        canvas.setMinimumHeight(220)
        axes = fig.subplots(2, 1, sharex=True)
        self._reset_plot(axes)
        return canvas, axes

    def _reset_plot(self, axes=None) -> None:
        self._steps: list[int] = []
        self._losses: list[float] = []
        self._val_steps: list[int] = []
        self._ious: dict[str, list[float]] = {name: [] for name in CLASS_NAMES}
        self._last_draw = 0.0
        loss_ax, iou_ax = axes if axes is not None else self._axes
        loss_ax.clear()
        iou_ax.clear()
        (self._loss_line,) = loss_ax.plot([], [], lw=0.8, color="tab:blue")
        loss_ax.set_ylabel("training loss", fontsize=8)
        self._iou_lines = {
            name: iou_ax.plot([], [], "o-", ms=3, lw=1, color=_IOU_COLOURS[name], label=name)[0]
            for name in CLASS_NAMES
        }
        iou_ax.set_ylabel("validation IoU", fontsize=8)
        iou_ax.set_xlabel("step", fontsize=8)
        iou_ax.set_ylim(0, 1)
        iou_ax.legend(fontsize=7, loc="lower right")
        for ax in (loss_ax, iou_ax):
            ax.tick_params(labelsize=7)
        if axes is None:
            self._canvas.draw_idle()

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        loss_ax, iou_ax = self._axes
        self._loss_line.set_data(self._steps, self._losses)
        for name, line in self._iou_lines.items():
            line.set_data(self._val_steps, self._ious[name])
        loss_ax.relim()
        loss_ax.autoscale_view()
        iou_ax.relim()
        iou_ax.autoscale_view(scaley=False)
        self._canvas.draw_idle()
