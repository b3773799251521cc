"""Fine-tuning ends in a better model or in none; corrected-pixel sampling; bad corrections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.classes import GRAIN, IGNORE, MATRIX, PORE
from napari_poregrain.inference.predict import predict
from napari_poregrain.model import load_checkpoint, new_model
from napari_poregrain.preprocess import Normalization
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import SHIFTED, make_sample
from napari_poregrain.training import TrainConfig, Trainer, finetune_config, train
from napari_poregrain.training.data import CropSampler, Region
from napari_poregrain.training.loss import SegmentationLoss

FAST = dict(crop=64, batch=2, device="cpu", lr=2e-3)


class Recorder:
    """Keeps every event; cancels its Trainer after ``cancel_at`` steps (None: never)."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.cancel_at, self.trainer, self.events = cancel_at, None, []

    def __call__(self, event) -> None:
        self.events.append(event)
        if self.cancel_at is not None and event.kind == "step" and event.step >= self.cancel_at:
            self.trainer.cancel()


def _trainer(tmp_path, cfg, start, pairs=None, recorder=None) -> Trainer:
    image, labels = pairs or make_sample((128, 128), seed=5)
    sample = Sample(image, labels=labels, name="corrected")
    trainer = Trainer([sample], cfg, start, tmp_path / "tuned.safetensors", progress=recorder)
    if recorder is not None:
        recorder.trainer = trainer
    return trainer


def test_finetune_config_gives_the_defaults_and_takes_overrides():
    cfg = finetune_config()
    assert cfg.steps is not None and cfg.epochs is None and cfg.crop % 16 == 0
    assert finetune_config(lr=5e-4).lr == 5e-4
    by_epochs = finetune_config(epochs=3)
    assert by_epochs.epochs == 3 and by_epochs.steps is None
    with pytest.raises(ValueError, match="corrected-pixel share"):
        finetune_config(focus=2.0)


def test_a_run_shorter_than_one_epoch_validates_at_its_end(tmp_path):
    torch.manual_seed(0)
    recorder = Recorder()
    cfg = TrainConfig(**FAST, steps=3, steps_per_epoch=50, patience=None)
    result = _trainer(tmp_path, cfg, new_model("resnet18"), recorder=recorder).fit()
    epochs = [e for e in recorder.events if e.kind == "epoch"]
    assert [(e.epoch, e.step, e.best) for e in epochs][0] == (0, 0, False)  # the baseline
    assert [(e.epoch, e.step) for e in epochs][1:] == [(1, 3)]
    assert {e.epoch for e in recorder.events if e.kind == "step"} == {1}  # counted from 1
    if result.improved:
        assert (
            result.best_epoch == 1 and load_checkpoint(result.path).meta.provenance["epoch"] == 1
        )
    else:
        assert result.path is None and not any(tmp_path.iterdir())


def test_a_run_cancelled_before_its_first_improvement_saves_no_file(tmp_path):
    torch.manual_seed(0)
    recorder = Recorder(cancel_at=2)
    cfg = TrainConfig(**FAST, steps=40, steps_per_epoch=5)
    result = _trainer(tmp_path, cfg, new_model("resnet18"), recorder=recorder).fit()
    assert result.cancelled and result.steps == 2 and not result.improved
    assert result.path is None and result.best_epoch is None
    assert "Nothing was saved" in result.message and "\n" not in result.message
    assert list(tmp_path.iterdir()) == []  # no copy of the starting model, no log


def test_crop_centres_land_on_corrected_pixels():
    labels = np.zeros((96, 96), np.uint8)
    labels[::2] = GRAIN
    labels[40:60, 40:60] = PORE
    corrected = np.zeros(labels.shape, bool)
    corrected[10:14, 70:74] = True  # the 16 pixels the user changed
    region = Region(np.full(labels.shape, 0.5, np.float32), labels, "r", corrected)
    rng = np.random.default_rng(0)
    on = CropSampler([region], TrainConfig(crop=32, focus=1.0), Normalization())
    centres = [on.centre(rng) for _ in range(200)]
    assert all(corrected[y, x] for _, y, x in centres)
    half = CropSampler([region], TrainConfig(crop=32, focus=0.5), Normalization())
    hits = sum(corrected[y, x] for _, y, x in (half.centre(rng) for _ in range(400)))
    assert 150 < hits < 250  # about half; class-balanced drawing alone would hit ~0
    off = CropSampler([region], TrainConfig(crop=32, focus=0.0), Normalization())
    assert sum(corrected[y, x] for _, y, x in (off.centre(rng) for _ in range(400))) < 10


def test_corrected_pixels_carry_their_loss_weight():
    labels = np.zeros((64, 64), np.uint8)
    labels[:, 32:] = GRAIN
    labels[:4] = IGNORE
    corrected = np.zeros(labels.shape, bool)
    corrected[20:30, 20:40] = True
    region = Region(np.full(labels.shape, 0.5, np.float32), labels, "r", corrected)
    cfg = TrainConfig(
        crop=64, focus=1.0, focus_weight=4.0, flip=False, rotate90=False, scale_range=(1, 1),
        brightness=0, contrast=0, gamma=0, noise=0,
    )  # fmt: skip
    x, y, weight = CropSampler([region], cfg, Normalization()).sample(np.random.default_rng(0))
    np.testing.assert_array_equal(y.numpy(), labels)  # the labels come back unchanged
    np.testing.assert_array_equal(weight.numpy() == 4.0, corrected)
    logits = torch.randn(1, 3, 64, 64)
    loss = SegmentationLoss()
    plain = loss(logits, y[None])
    assert torch.allclose(loss(logits, y[None], torch.ones(1, 64, 64)), plain)
    assert not torch.allclose(loss(logits, y[None], weight[None]), plain)


def test_fine_tuning_marks_where_the_labels_differ_from_the_starting_model(tmp_path):
    torch.manual_seed(0)
    start = new_model("resnet18")
    cfg = TrainConfig(**FAST, steps=2, steps_per_epoch=2, focus=0.5, val_fraction=0.0)
    trainer = _trainer(tmp_path, cfg, start)
    trainer.fit()
    (region,) = trainer.train_regions
    pred = predict(make_sample((128, 128), seed=5)[0], start, tile=128, device="cpu").labels
    expected = (region.labels != IGNORE) & (region.labels != pred)
    assert region.corrected is not None
    assert np.mean(region.corrected == expected) > 0.98  # tiling of a region vs the image
    assert trainer.recipe["corrected_pixels"] == int(region.corrected.sum())


@pytest.mark.parametrize(
    "labels_fn, message",
    [
        (lambda lab: np.full_like(lab, IGNORE), "no labelled pixels"),
        (lambda lab: np.where(lab == IGNORE, IGNORE, MATRIX).astype(np.uint8), "only matrix"),
        (lambda lab: _tiny(lab), "under 16 pixels across"),
    ],
)
def test_a_bad_correction_is_refused_in_one_sentence_and_nothing_is_written(
    tmp_path, labels_fn, message
):
    image, labels = make_sample((96, 96), seed=3)
    with pytest.raises(ValueError) as info:
        train(
            [(image, labels_fn(labels))],
            TrainConfig(**FAST),
            new_model(),
            tmp_path / "m.safetensors",
        )
    assert message in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _tiny(labels: np.ndarray) -> np.ndarray:
    out = np.full_like(labels, IGNORE)
    out[40:48, 40:48] = labels[40:48, 40:48]
    out[40, 40], out[41, 41] = MATRIX, GRAIN
    return out


def test_a_class_missing_from_the_labels_is_allowed_and_named(tmp_path):
    image, labels = make_sample((96, 96), seed=3)
    labels = np.where(labels == PORE, IGNORE, labels).astype(np.uint8)
    cfg = TrainConfig(**FAST, steps=1, val_fraction=0.0)
    result = train([(image, labels)], cfg, None, tmp_path / "m.safetensors")
    assert result.notes == [
        "no pore pixel is labelled, so the model learns nothing new about pore"
    ]


@pytest.mark.slow
def test_a_short_fine_tune_on_a_shifted_style_raises_held_out_iou(tmp_path):
    torch.manual_seed(0)
    start = new_model("resnet18")
    image, labels = make_sample((160, 160), seed=21, style=SHIFTED)
    held, truth = make_sample((160, 160), seed=22, style=SHIFTED)

    def miou(model) -> float:
        pred = predict(held, model, tile=128, device="cpu").labels
        return ConfusionMatrix().update(truth, pred).mean_iou()

    cfg = finetune_config(crop=64, batch=4, steps=30, device="cpu", lr=2e-3, focus=0.3)
    result = train([(image, labels)], cfg, start, tmp_path / "tuned.safetensors")
    assert result.improved, result.message
    assert miou(load_checkpoint(result.path)) > miou(start) + 0.15


def test_the_best_epoch_is_chosen_on_the_classes_the_truth_holds():
    """A pore-only correction: ceasing to predict grain must not count as an improvement."""
    from napari_poregrain.training.validation import truth_class_mean

    truth = np.zeros((10, 10), np.uint8)
    truth[:, :3] = 2  # matrix and pore only
    before = truth.copy()
    before[5:, 5:] = 1  # the starting model takes some matrix for grain
    after = np.zeros_like(truth)  # the tuned model finds fewer pores and predicts no grain
    after[:, :2] = 2
    cm_before = ConfusionMatrix().update(truth, before)
    cm_after = ConfusionMatrix().update(truth, after)
    assert cm_after.mean_iou() > cm_before.mean_iou()  # the old criterion preferred "after"
    assert truth_class_mean(cm_before) > truth_class_mean(cm_after)
