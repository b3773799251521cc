"""Dock widget "Segment pores and grains": image layer -> `grains` and `pores` layers."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from ..inference.predict import (
    DEFAULT_OVERLAP,
    available_devices,
    default_tile,
    predict,
    resolve_device,
)
from ..model import CheckpointError, available_models, load_checkpoint
from ._events import events
from ._layers import class_masks, geometry, layer_kwargs
from ._worker import BackgroundTask

FILE_CHOICE = "checkpoint file…"
NO_MODEL = (
    "No default model is installed yet: choose a checkpoint file (.safetensors), "
    "e.g. one made with `poregrain train`."
)
_CHECKSUM_KEY = "poregrain_checksum"


def _checksum(data: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(data).data, digest_size=16).hexdigest()


class SegmentWidget(Container):
    """Pick an image, a model and tiling; Segment adds `grains` and `pores` Labels layers."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._task: BackgroundTask | None = None
        self._image = create_widget(label="image", annotation=Image)
        self._model = ComboBox(label="model", choices=self._model_choices)
        self._file = FileEdit(label="file", mode="r", filter="*.safetensors")
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._tile = SpinBox(
            label="tile", min=64, max=4096, step=16, value=default_tile(resolve_device("auto"))
        )
        self._overlap = FloatSpinBox(
            label="overlap", min=0.0, max=0.5, step=0.05, value=DEFAULT_OVERLAP
        )
        self._confidence = CheckBox(text="add confidence layer", value=False)
        self._run = PushButton(text="Segment")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, max=1)
        self._status = Label(value="")
        self.extend(
            [
                self._image,
                self._model,
                self._file,
                self._device,
                self._tile,
                self._overlap,
                self._confidence,
                self._run,
                self._cancel,
                self._progress,
                self._status,
            ]
        )
        self._model.changed.connect(self._update_state)
        self._file.changed.connect(self._update_state)
        self._run.clicked.connect(self.run)
        self._cancel.clicked.connect(self.cancel)
        events.model_added.connect(self.select_model)
        # a closed viewer's widget must not keep listening (the event is process-wide)
        self.native.destroyed.connect(lambda *_: events.model_added.disconnect(self.select_model))
        self._update_state()

    # -- model choice -----------------------------------------------------------------
    def _model_choices(self, _widget=None) -> list[str]:
        return [*available_models(), FILE_CHOICE]

    def select_model(self, path) -> None:
        """List the models again and select ``path`` (a registered model or any file)."""
        path = Path(path)
        self._model.reset_choices()
        registered = {p.resolve(): name for name, p in available_models().items()}
        name = registered.get(path.resolve())
        if name is not None:
            self._model.value = name
        else:
            self._model.value = FILE_CHOICE
            self._file.value = path
        self._update_state()

    def _model_path(self) -> Path | None:
        if self._model.value == FILE_CHOICE:
            path = Path(self._file.value)
            return path if path.is_file() else None
        return available_models().get(self._model.value)

    def _update_state(self, *_) -> None:
        from_file = self._model.value == FILE_CHOICE
        self._file.visible = from_file
        ready = self._model_path() is not None
        busy = self._task is not None
        self._run.enabled = ready and not busy
        if not ready and not busy:
            self._status.value = (
                NO_MODEL
                if len(self._model.choices) == 1
                else ("Choose a checkpoint file (.safetensors).")
            )
        elif not busy and self._status.value in (
            NO_MODEL,
            "Choose a checkpoint file (.safetensors).",
        ):
            self._status.value = ""

    def reset_choices(self, *_) -> None:
        super().reset_choices()
        self._update_state()

    # -- running ----------------------------------------------------------------------
    def run(self) -> None:
        """Start segmentation of the chosen image in a background thread."""
        layer: Image | None = self._image.value
        path = self._model_path()
        if layer is None or path is None:
            show_error("Choose an image layer and a model first.")
            return
        data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
        rows = layer.metadata.get("data_bar_row")
        opts = dict(
            tile=int(self._tile.value),
            overlap=float(self._overlap.value),
            device=self._device.value,
            content_rows=rows,
            return_confidence=bool(self._confidence.value),
        )

        def work(emit, should_stop):
            model = load_checkpoint(path)
            return model, predict(
                data, model, progress=lambda d, t: emit((d, t)), should_stop=should_stop, **opts
            )

        self._task = BackgroundTask(
            work,
            on_progress=self._on_progress,
            on_returned=lambda res: self._on_done(layer, *res),
            on_cancelled=self._on_cancelled,
            on_errored=self._on_error,
            on_finished=self._on_finished,
        )
        self._progress.value = 0
        self._status.value = f"Segmenting {layer.name} with {path.stem}…"
        self._cancel.enabled = True
        self._update_state()
        self._task.start()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._status.value = "Cancelling…"

    def _on_progress(self, payload) -> None:
        done, total = payload
        self._progress.max = total
        self._progress.value = done

    def _on_cancelled(self) -> None:
        self._status.value = "Cancelled: no layer was changed."

    def _on_error(self, exc: Exception) -> None:
        msg = str(exc) if isinstance(exc, CheckpointError | ValueError) else repr(exc)
        self._status.value = msg
        show_error(f"Segmentation failed: {msg}")

    def _on_finished(self) -> None:
        self._task = None
        self._cancel.enabled = False
        self._update_state()

    def _on_done(self, image_layer: Image, model, result) -> None:
        kept = []
        for cls, mask in class_masks(result.labels).items():
            old = self._put_labels(cls, mask, image_layer, model.meta.name or model.path.stem)
            if old:
                kept.append(old)
        if result.confidence is not None:
            self._viewer.add_image(
                result.confidence,
                name="confidence",
                **geometry(image_layer, result.confidence.ndim),
                colormap="magma",
                contrast_limits=(0, 255),
                metadata={"confidence_scale": 255},
                visible=False,
            )
        note = f" Your edited layers were kept as {', '.join(kept)}." if kept else ""
        self._status.value = f"Done.{note}"
        if kept:
            show_info(f"Segmentation added new layers.{note}")

    def _put_labels(self, cls: int, mask: np.ndarray, image_layer: Image, model_name: str):
        """Add or refresh a class layer; an edited layer is renamed and kept, never lost."""
        kwargs = layer_kwargs(cls, image_layer)
        name = kwargs["name"]
        meta = {_CHECKSUM_KEY: _checksum(mask), "model": model_name}
        kept = None
        if name in self._viewer.layers:
            old = self._viewer.layers[name]
            untouched = (
                isinstance(old, Labels)
                and old.data.shape == mask.shape
                and old.metadata.get(_CHECKSUM_KEY) == _checksum(np.asarray(old.data))
            )
            if untouched:
                old.data = mask
                old.metadata.update(meta)
                return None
            kept = f"{name} (kept {time.strftime('%H:%M:%S')})"
            old.name = kept
            old.visible = False
        self._viewer.add_labels(mask, metadata=meta, **kwargs)
        return kept
