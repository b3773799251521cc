"""What the fine-tune dock decides, without Qt: training set rows, names, the job, the curves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import CLASS_NAMES, GRAIN, LAYER_NAMES, PORE
from ..model import available_models, load_checkpoint, user_model_dir
from ..sample import Sample
from ._layers import sample_from_layers, spatial_shape

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")


@dataclass
class TrainingPair:
    """One row of the training set: layers, not arrays (read when training starts)."""

    image: Any
    grains: Any
    pores: Any
    region: Any = None

    def describe(self) -> str:
        region = f", region {self.region.name}" if self.region is not None else ""
        return f"{self.image.name} ← {self.grains.name} + {self.pores.name}{region}"

    def layer_ids(self) -> set[int]:
        return {id(self.image), id(self.grains), id(self.pores)}

    def sample(self) -> Sample:
        """The image with its labels (outside the region: 255); ValueError names the image."""
        name = self.image.name
        if len(spatial_shape(self.image)) != 2:
            shape = tuple(self.image.data.shape)
            raise ValueError(f"{name}: fine-tuning needs a 2-D image, not shape {shape}")
        try:
            return sample_from_layers(self.image, self.grains, self.pores, self.region)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


def training_arrays(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the usable rows (above the data bar) of the pixels and of the masked labels."""
    return np.array(sample.content(), copy=True), sample.content(sample.masked_labels())


def pick_labels(image, labels_layers) -> dict[int, Any]:
    """The grains and pores layers that fit ``image``: same shape, named so or starting so."""
    shape = spatial_shape(image)
    fits = [lay for lay in labels_layers if tuple(lay.data.shape) == shape]
    picked = {}
    for cls in (GRAIN, PORE):
        name = LAYER_NAMES[cls]
        ranked = [lay for lay in fits if lay.name == name]
        ranked += [lay for lay in fits if lay.name.startswith(name) and lay.name != name]
        if ranked:
            picked[cls] = ranked[0]
    return picked


def check_pair(image, grains, pores, region=None) -> TrainingPair:
    """The row the selectors describe; ValueError when a layer is missing."""
    if image is None:
        raise ValueError("add an image layer with its corrected grains and pores first")
    if grains is None or pores is None:
        raise ValueError(f"choose the grains and pores Labels layers of {image.name}")
    if grains is pores:
        raise ValueError("the grains and pores layers must be two different layers")
    return TrainingPair(image, grains, pores, region)


def model_out_path(name: str) -> Path:
    """``<user model folder>/<name>.safetensors``; ValueError for a bad or taken name."""
    from ..training import log_path_for

    name = name.strip().removesuffix(".safetensors")
    if not _NAME_RE.fullmatch(name):
        raise ValueError("give the new model a name of letters, digits, '.', '-', '_' or spaces")
    if name == "default" or name in available_models():
        raise ValueError(f"a model named {name!r} already exists; choose another name")
    out = user_model_dir() / f"{name}.safetensors"
    for path in (out, log_path_for(out)):
        if path.exists():
            raise ValueError(f"{path} already exists; choose another name")
    return out


def train_config(*, by_steps: bool, length: int, **settings):
    """A checked :class:`TrainConfig`: ``length`` steps or epochs, other settings as given."""
    from ..training import TrainConfig

    config = TrainConfig(
        steps=length if by_steps else None, epochs=None if by_steps else length, **settings
    )
    config.validate()
    return config


class FinetuneJob:
    """Fine-tune (or train from scratch) on the Samples; runs in the worker thread."""

    def __init__(self, samples: list[Sample], model_path: Path | None, out: Path, config) -> None:
        self.arrays = [training_arrays(s) for s in samples]
        self.names = [s.name for s in samples]
        self.model_path, self.out, self.config = model_path, out, config

    def describe(self) -> str:
        start = "scratch" if self.model_path is None else self.model_path.stem
        return f"Fine-tuning {start} on {len(self.arrays)} image(s) → {self.out.stem}…"

    def __call__(self, emit, should_stop):
        from ..training import train

        init = None if self.model_path is None else load_checkpoint(self.model_path)
        return train(
            self.arrays,
            self.config,
            init,
            self.out,
            names=self.names,
            progress=emit,
            should_stop=should_stop,
        )


class TrainingCurves:
    """The live plot's data: loss per step, validation IoU per class per validation."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.ious: dict[str, list[float]] = {name: [] for name in CLASS_NAMES}

    def add(self, event) -> str | None:
        """Record a :class:`TrainEvent`; a status line after a validation, else None."""
        if event.kind == "step":
            self.steps.append(event.step)
            self.losses.append(event.loss)
            return None
        if event.kind != "epoch":
            return None
        self.val_steps.append(event.step)
        for name, v in zip(CLASS_NAMES, event.val_iou or [None] * 3, strict=True):
            self.ious[name].append(np.nan if v is None else v)
        if event.val_iou is None:
            return None
        miou = "-" if event.val_miou is None else f"{event.val_miou:.3f}"
        return f"Epoch {event.epoch}: validation mean IoU {miou}{' (saved)' if event.best else ''}"


def result_text(result) -> str:
    """The status line of a finished training (:class:`TrainResult`)."""
    if result.path is None:
        return "Cancelled before the first validation: no model was saved."
    m = result.best_metrics
    score = "" if not m or m["mean_iou"] is None else f", validation mean IoU {m['mean_iou']:.3f}"
    how = "Cancelled; kept" if result.cancelled else "Saved"
    return (
        f"{how} {result.path.stem} (epoch {result.best_epoch}{score}); "
        "it is selected in the segmentation widget."
    )
