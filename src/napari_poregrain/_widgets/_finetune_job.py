"""What the fine-tune dock decides, without Qt: training set rows, names, the job, the curves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import CLASS_NAMES, GRAIN, PORE
from ..registry import available_models, user_model_dir
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

    def samples(self) -> list[Sample]:
        """The image with its labels (outside the region: 255); a stack: its labelled slices.

        ValueError names the image.
        """
        name = self.image.name
        if len(spatial_shape(self.image)) not in (2, 3):
            shape = tuple(self.image.data.shape)
            raise ValueError(f"{name}: fine-tuning needs a 2-D image or a stack, not {shape}")
        try:
            sample = sample_from_layers(self.image, self.grains, self.pores, self.region)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        return labelled_slices(sample)


def labelled_slices(sample: Sample) -> list[Sample]:
    """``[sample]`` for an image; for a stack, its slices with a grain or pore pixel to learn."""
    if not sample.is_stack:
        return [sample]
    kept = [s for s in sample.slices() if np.isin(s.labels[s.usable_mask()], (GRAIN, PORE)).any()]
    if not kept:
        raise ValueError(
            f"{sample.name}: the grains and pores layers mark no pixel in any of the stack's "
            f"{sample.shape[0]} slices; paint at least one slice"
        )
    return kept


def training_arrays(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the usable rows (above the data bar) of the pixels and of the masked labels."""
    return np.array(sample.content(), copy=True), sample.content(sample.masked_labels())


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
    """A checked fine-tune :class:`TrainConfig`: ``length`` steps or epochs, other settings as
    given, the rest from :func:`training.config.finetune_config`."""
    from ..training.config import finetune_config

    if by_steps:
        return finetune_config(steps=length, epochs=None, **settings)
    return finetune_config(steps=None, epochs=length, **settings)


class FinetuneJob:
    """Fine-tune (or train from scratch) on the Samples; runs in the worker thread."""

    def __init__(self, samples: list[Sample], model_path: Path | None, out: Path, config) -> None:
        self.arrays = [training_arrays(s) for s in samples]
        self.names = [s.name for s in samples]
        self.model_path, self.out, self.config = model_path, out, config

    def describe(self) -> str:
        start = "scratch" if self.model_path is None else self.model_path.stem
        return f"Fine-tuning {start} on {len(self.arrays)} image(s) or slice(s) → {self.out.stem}…"

    def __call__(self, emit, should_stop):
        from ..model import load_checkpoint
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
        return (
            "Cancelled before a model better than the starting one was saved: nothing was saved."
            if result.cancelled
            else "No model better than the starting one was found: nothing was saved."
        )
    m = result.best_metrics
    score = "" if not m or m["mean_iou"] is None else f", validation mean IoU {m['mean_iou']:.3f}"
    how = "Cancelled; kept" if result.cancelled else "Saved"
    mixed = "".join(f" ({n})" for n in result.notes if "learnt change" in n)
    return (
        f"{how} {result.path.stem} (epoch {result.best_epoch}{score}){mixed}; "
        "it is selected in the segmentation widget."
    )
