"""The Trainer driven directly on Samples: state on the object, cancel(), the usable region."""

from __future__ import annotations

import numpy as np
import pytest

from napari_poregrain.classes import GRAIN, IGNORE
from napari_poregrain.model import load_checkpoint
from napari_poregrain.preprocess import Normalization, to_grey
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training import TrainConfig, Trainer, load_training_log
from napari_poregrain.training.data import prepare_data

FAST = dict(crop=64, batch=2, device="cpu", lr=2e-3, encoder="resnet18")


class CancelAt:
    """A progress callback that cancels its Trainer once ``step`` steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.trainer: Trainer | None = None
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)
        if event.kind == "step" and event.step >= self.step:
            self.trainer.cancel()


def _barred_sample() -> Sample:
    """A 128x96 synthetic image whose rows 100.. are a bright data bar labelled grain (wrong),
    and whose first 10 columns are outside the user's region."""
    image, labels = make_sample((128, 96), seed=4)
    image, labels = image.copy(), labels.copy()
    image[100:] = 255
    labels[100:] = GRAIN
    valid = np.ones(labels.shape, bool)
    valid[:, :10] = False
    return Sample(image, labels=labels, data_bar_row=100, valid=valid, name="barred.tif")


def test_fit_trains_on_the_usable_region_only(tmp_path):
    sample = _barred_sample()
    cfg = TrainConfig(**FAST, steps=2, steps_per_epoch=2, val_fraction=0.0)
    trainer = Trainer([sample], cfg, None, tmp_path / "m.safetensors")
    (region,) = trainer.train_regions
    assert region.labels.shape == region.u.shape == (100, 96)  # the bar is cut
    assert (region.labels[:, :10] == IGNORE).all()  # outside the region: ignored
    np.testing.assert_array_equal(region.labels[:, 10:], sample.labels[:100, 10:])
    assert trainer.data["train"][0]["shape"] == [100, 96]
    assert trainer.net is None and trainer.step == 0  # nothing runs before fit()

    result = trainer.fit()
    assert result.steps == trainer.step == 2 and not result.cancelled
    assert trainer.epoch == 2 and len(trainer.history) == 1  # one epoch, then the next began
    assert result.path == tmp_path / "m.safetensors" and trainer.saved
    prov = load_checkpoint(result.path).meta.provenance
    assert prov["epoch"] == 1 and prov["data"][0]["name"] == "barred.tif"
    assert len(load_training_log(result.log_path)) == 1
    with pytest.raises(RuntimeError, match="already run"):
        trainer.fit()


def test_cancel_stops_before_the_next_step(tmp_path):
    image, labels = make_sample((96, 96), seed=1)
    cancel = CancelAt(3)
    cfg = TrainConfig(**FAST, steps=50, steps_per_epoch=2, val_fraction=0.0)
    trainer = Trainer([Sample(image, labels=labels)], cfg, None, tmp_path / "m.safetensors")
    trainer.progress = cancel
    cancel.trainer = trainer
    result = trainer.fit()
    assert result.cancelled and result.steps == trainer.step == 3
    assert [e.step for e in cancel.events if e.kind == "step"] == [1, 2, 3]
    assert result.best_epoch == 1 and result.path is not None  # epoch 1 (steps 1-2) was saved
    assert trainer.stop_requested()


def test_samples_without_labels_or_too_small_are_refused_before_anything_is_written(tmp_path):
    image, labels = make_sample((96, 96), seed=1)
    out = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="nolabels has no labels"):
        Trainer([Sample(image, name="nolabels")], TrainConfig(**FAST), None, out)
    small = Sample(image, labels=labels, data_bar_row=20, name="short")
    with pytest.raises(ValueError, match="short is 20x96 pixels, smaller than the 32-pixel min"):
        Trainer([small], TrainConfig(**FAST), None, out)
    assert list(tmp_path.iterdir()) == []
    # smaller than a crop but above the minimum: padded (ignored labels), not refused
    padded = Sample(image, labels=labels, data_bar_row=50, name="short")
    trainer = Trainer([padded], TrainConfig(**FAST, val_fraction=0.0), None, out)
    x, y = trainer.sampler.sample(np.random.default_rng(0))
    assert x.shape == (1, 64, 64) and (y == IGNORE).any()


def test_colour_samples_are_turned_grey_like_predict():
    image, labels = make_sample((96, 96), seed=2)
    rgb = np.stack([image, image // 2, 255 - image], axis=-1)
    cfg = TrainConfig(crop=64, val_fraction=0.0)
    (colour,), _, _ = prepare_data([Sample(rgb, labels=labels, rgb=True)], cfg, Normalization())
    (grey,), _, _ = prepare_data([Sample(to_grey(rgb), labels=labels)], cfg, Normalization())
    assert colour.u.shape == (96, 96)
    np.testing.assert_array_equal(colour.u, grey.u)
