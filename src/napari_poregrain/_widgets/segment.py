"""Dock widget "Segment pores and grains": image layer -> `grains` and `pores` layers.

A lazy (dask/zarr) image is read tile by tile in the worker and its classes streamed into a
zarr-backed pair on disk (:mod:`._lazy`; folder: "label store", default beside the image);
an in-memory image keeps NumPy layers. A stack's slice the viewer shows is segmented first and
shown as soon as it is done (:mod:`._stack`), the other slices when the run ends.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_info

from ..classes import LAYER_NAMES
from ..inference.options import BACKENDS, CPU_TILE, DEFAULT_OVERLAP
from ..sample import Sample
from ._base import TaskDock
from ._brush import OneBrush
from ._devices import DeviceChoices, TorchWarmup, default_tile_now
from ._layers import (
    LayerChoices,
    checksum,
    class_masks,
    geometry,
    layer_kwargs,
    sample_from_layers,
    spatial_shape,
    untouched,
)
from ._lazy import ZarrLabelPair, default_store, is_lazy
from ._models import CHOOSE_FILE, FILE_CHOICE, NO_MODEL, ModelPicker
from ._pairs import IMAGE_KEY
from ._progress import StepProgress
from ._stack import SliceDone, partial_stack, predict_stack

__all__ = ["FILE_CHOICE", "NO_MODEL", "SegmentWidget"]

_CHECKSUM_KEY = "poregrain_checksum"


class SegmentJob:
    """Load a model and segment one Sample (runs in the worker thread)."""

    def __init__(
        self,
        sample: Sample,
        model_path: Path,
        options: dict,
        store: ZarrLabelPair | None = None,
        first: int = 0,
    ) -> None:
        self.sample, self.model_path, self.options = sample, model_path, options
        self.store = store  # a lazy image's classes go here, block by block
        self.first = first  # a stack's slice to segment (and show) first

    def __call__(self, emit, should_stop):
        from ..inference.predict import predict
        from ..model import load_checkpoint

        model = load_checkpoint(self.model_path)
        if self.sample.is_stack:
            result = predict_stack(
                self.sample, model, emit, should_stop, first=self.first, **self.options
            )
            return model, result
        result = predict(
            self.sample,
            model,
            progress=StepProgress(emit),
            should_stop=should_stop,
            out=self.store,
            **self.options,
        )
        return model, result


def warm_up_labels() -> None:
    """Import what napari's first Labels layer imports (pandas, for its features table) when the
    dock opens: 0.3-0.5 s that would otherwise block the GUI thread when a run's layers appear
    (an import in the worker holds the GIL for up to ~120 ms at a time: no better)."""
    import pandas  # noqa: F401


class SegmentWidget(TaskDock):
    """Pick an image, a model and tiling; Segment adds `grains` and `pores` Labels layers."""

    title = "Segment"
    failed = "Segmentation failed"
    cancelled_text = "Cancelled: no layer was changed."

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, "Segment")
        self._layer: Image | None = None
        self._pending_store: ZarrLabelPair | None = None  # the running lazy job's store
        self._last_store: Path | None = None
        self._shown: int | None = None  # the stack slice already shown in the layers
        self._kept: list[str] = []  # edited layers renamed during this run
        self._image = ComboBox(label="image", choices=LayerChoices(self._viewer, Image))
        self._picker = ModelPicker(on_change=self.update_state)
        self._model, self._file = self._picker.combo, self._picker.file
        self._device = ComboBox(label="device", choices=DeviceChoices(), value="auto")
        self._backend = ComboBox(label="backend", choices=list(BACKENDS), value="auto")
        self._backend.tooltip = (
            "auto: ONNX Runtime fp32 on the CPU when its labels equal torch's, torch on a GPU"
        )
        self._tile = SpinBox(label="tile", min=64, max=4096, step=16, value=default_tile_now())
        self._overlap = FloatSpinBox(
            label="overlap", min=0.0, max=0.5, step=0.05, value=DEFAULT_OVERLAP
        )
        self._confidence = CheckBox(text="add confidence layer", value=False)
        self._store = FileEdit(mode="d", label="label store", nullable=True)
        self._store.tooltip = "Folder of the zarr label layers of large (lazy) images"
        self._form = Container(
            widgets=[
                self._image, *self._picker.widgets, self._device, self._backend, self._tile,
                self._overlap, self._confidence, self._store, *self.task_controls(),
            ]
        )  # fmt: skip
        self._layout.addWidget(self._form.native)
        self._brush = OneBrush.attach(self._viewer)  # painting one class clears the other
        warm_up_labels()
        self._warmup = TorchWarmup(self.engine_ready)  # torch loads off the GUI thread
        self.update_state()

    def engine_ready(self) -> None:
        """torch is loaded: list every device; the tile follows it unless changed by hand."""
        self._device.reset_choices()
        if self._tile.value == CPU_TILE:
            self._tile.value = default_tile_now()

    # -- model choice -----------------------------------------------------------------
    def select_model(self, path) -> None:
        """List the models again and select ``path`` (a registered model or any file)."""
        self._picker.select(path)

    def update_state(self, *_) -> None:
        ready = self._picker.ready
        super().update_state()
        self._run.enabled = ready and not self.busy
        if not ready and not self.busy:
            self._status.value = self._picker.hint()
        elif not self.busy and self._status.value in (NO_MODEL, CHOOSE_FILE):
            self._status.value = ""

    def reset_choices(self, *_) -> None:
        self._form.reset_choices()
        self.update_state()

    # -- running ----------------------------------------------------------------------
    def make_job(self) -> SegmentJob:
        """The chosen image as a Sample, the model file and the tiling options."""
        layer: Image | None = self._image.value
        if layer is None or not self._picker.ready:
            raise ValueError("Choose an image layer and a model first.")
        sample = sample_from_layers(layer)
        path = self._picker.path()
        lazy = is_lazy(sample.pixels) and not sample.is_stack
        options = dict(
            tile=int(self._tile.value),
            overlap=float(self._overlap.value),
            device=self._device.value,
            backend=self._backend.value,
            return_confidence=bool(self._confidence.value) and not lazy,
        )
        store = None
        if lazy:
            where = default_store(layer, self._store.value)
            store = ZarrLabelPair(where, (sample.height, sample.width))
        self._layer, self._pending_store = layer, store
        self._shown, self._kept = None, []
        first = self._current_slice(layer) if sample.is_stack else 0
        return SegmentJob(sample, path, options, store, first)

    def _current_slice(self, layer: Image) -> int:
        """The slice of a stack ``layer`` the viewer shows now."""
        z = layer.world_to_data(self._viewer.dims.point[-layer.ndim :])[-3]
        return int(np.clip(round(float(z)), 0, spatial_shape(layer)[0] - 1))

    def starting(self, job: SegmentJob) -> str:
        into = "" if job.store is None else f" into {job.store.path}"
        return f"Segmenting {job.sample.name} with {job.model_path.stem}{into}…"

    def on_progress(self, payload) -> None:
        """``(done, total)``, or a stack's :class:`SliceDone`: the first is shown at once."""
        if not isinstance(payload, SliceDone):
            super().on_progress(payload)
        elif self._shown is None and self._layer is not None and self._task is not None:
            stack = partial_stack(spatial_shape(self._layer), payload)
            for cls, mask in class_masks(stack).items():
                self._put_labels(cls, mask, self._layer, "(running)")
            self._shown = payload.z
            self.say(f"Slice {payload.z} is shown; segmenting the other slices…")

    def on_done(self, result) -> None:
        model, prediction = result
        image_layer = self._layer
        kept = self._kept
        masks = self._class_layers_data(prediction)
        for cls, mask in masks.items():
            self._put_labels(cls, mask, image_layer, model.meta.name or model.path.stem)
        if prediction.confidence is not None:
            self._viewer.add_image(
                prediction.confidence,
                name="confidence",
                **geometry(image_layer, prediction.confidence.ndim),
                colormap="magma",
                contrast_limits=(0, 255),
                metadata={"confidence_scale": 255},
                visible=False,
            )
        note = f" Your edited layers were kept as {', '.join(kept)}." if kept else ""
        self._status.value = f"Done.{note}"
        if kept:
            show_info(f"Segmentation added new layers.{note}")

    def on_cancelled(self) -> None:
        super().on_cancelled()
        if self._shown is not None:
            self.say(f"Cancelled: the layers hold slice {self._shown} only.")
        self._drop_store()

    def on_error(self, exc: Exception) -> None:
        super().on_error(exc)
        self._drop_store()

    def _drop_store(self) -> None:
        """Remove the partial store of a lazy run that did not finish (no layer uses it)."""
        store, self._pending_store = self._pending_store, None
        if store is not None:
            shutil.rmtree(store.path, ignore_errors=True)

    def _class_layers_data(self, prediction) -> dict:
        """The class layers' data: the zarr pair of a streamed run, else NumPy masks."""
        if prediction.labels is not None:
            self._last_store = None
            return class_masks(prediction.labels)
        store, self._pending_store = self._pending_store, None
        self._last_store = store.path
        return dict(store.arrays)

    def _put_labels(self, cls: int, mask: np.ndarray, image_layer: Image, model_name: str) -> None:
        """Add or refresh ``image_layer``'s class layer; an edited layer is renamed and kept,
        never lost, and another image's layer is never touched."""
        kwargs = layer_kwargs(cls, image_layer)
        name = kwargs["name"] = pair_name(cls, image_layer, self._viewer.layers)
        lazy = is_lazy(mask)
        meta = {"model": model_name, IMAGE_KEY: image_layer.name}
        if lazy:  # a checksum would read the whole store; the store's path names the run
            meta["label_store"] = str(self._last_store)
        else:
            meta[_CHECKSUM_KEY] = checksum(mask)
        if name in self._viewer.layers:
            old = self._viewer.layers[name]
            if not lazy and untouched(old, _CHECKSUM_KEY, mask.shape):
                old.data = mask
                old.scale, old.translate = kwargs["scale"], kwargs["translate"]
                old.metadata.update(meta)
                return
            kept = f"{name} (kept {time.strftime('%H:%M:%S')})"
            old.name = kept
            old.visible = False
            self._kept.append(kept)
        self._viewer.add_labels(mask, metadata=meta, **kwargs)


def pair_name(cls: int, image_layer: Image, layers) -> str:
    """``grains``/``pores`` while that name is free or names ``image_layer``'s own pair, else
    ``grains [<image>]``: a result never lands in a pair made for another image."""
    plain = LAYER_NAMES[cls]
    if plain not in layers:
        return plain
    layer = layers[plain]
    owner = layer.metadata.get(IMAGE_KEY)
    if owner == image_layer.name or (
        owner is None and spatial_shape(layer) == spatial_shape(image_layer)
    ):
        return plain  # its own pair, or one made by hand over it (kept if edited)
    return f"{plain} [{image_layer.name}]"
