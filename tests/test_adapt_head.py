"""The pixel head: learns a correction, refuses bad ones, lives in the checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from napari_poregrain.adapt.features import FeatureSet, ImageFeatures
from napari_poregrain.adapt.filters import FilterBank
from napari_poregrain.adapt.head import fit_head
from napari_poregrain.adapt.regions import rank_regions
from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.classes import IGNORE
from napari_poregrain.model import CheckpointError, load_checkpoint, new_model, save_checkpoint
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample

FS = FeatureSet(FilterBank(sigmas=(0.7, 1.6, 3.5)))


def _features(model, seed, size=(128, 128)):
    image, truth = make_sample(size, seed=seed)
    return ImageFeatures.compute(Sample(image), model, features=FS, device="cpu"), truth


def _strokes(truth, step=9):
    """Every ``step``-th pixel labelled, the rest unlabelled."""
    labels = np.full(truth.shape, IGNORE, np.uint8)
    labels[::step, ::step] = truth[::step, ::step]
    return labels


def _iou(pred, truth):
    cm = ConfusionMatrix()
    cm.update(truth, pred)
    return np.nanmean(cm.per_class_iou())


@pytest.fixture
def fitted(tiny_model):
    f, truth = _features(tiny_model, 11)
    return f, truth, fit_head(f, _strokes(truth), seed=0)


def test_a_head_learns_a_new_image_from_sparse_strokes(tiny_model, fitted):
    f, truth, head = fitted
    other, other_truth = _features(tiny_model, 12)
    zero_shot = other.array[-3:].astype(np.float32).argmax(0)  # a random network: poor
    pred = head.predict(other)
    assert pred.dtype == np.uint8 and pred.shape == other_truth.shape
    assert _iou(pred, other_truth) > max(0.6, _iou(zero_shot, other_truth) + 0.2)
    proba = head.predict_proba(other, (8, 16, 40, 80))
    assert proba.shape == (3, 32, 64) and np.allclose(proba.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(proba.argmax(0), pred[8:40, 16:80])


def test_bad_corrections_are_one_sentence(fitted):
    f, truth, _ = fitted
    none = np.full(truth.shape, IGNORE, np.uint8)
    with pytest.raises(ValueError, match="no labelled pixel"):
        fit_head(f, none)
    few = none.copy()
    few[0, :10], few[1, :10] = 0, 2
    with pytest.raises(ValueError, match="only 20 labelled pixels"):
        fit_head(f, few)
    one = none.copy()
    one[:20] = 1
    with pytest.raises(ValueError, match="only grain pixels"):
        fit_head(f, one)
    with pytest.raises(ValueError, match="do not match"):
        fit_head(f, none[:10])


def test_the_head_travels_in_the_checkpoint(tiny_model, fitted, tmp_path):
    f, _, head = fitted
    tiny_model.head = head
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.head is not None and loaded.head.features == FS
    np.testing.assert_array_equal(loaded.head.predict_proba(f), head.predict_proba(f))
    half = load_checkpoint(save_checkpoint(tiny_model, tmp_path / "h.safetensors", half=True))
    assert half.head is not None  # the same network at float16
    tiny_model.head = None
    plain = load_checkpoint(save_checkpoint(tiny_model, tmp_path / "plain.safetensors"))
    assert plain.head is None


def test_a_head_for_another_network_is_refused(tiny_model, fitted, tmp_path):
    _, _, head = fitted
    torch.manual_seed(1)
    other = new_model("resnet18", name="other")
    other.head = head
    with pytest.raises(ValueError, match="another network"):
        save_checkpoint(other, tmp_path / "x.safetensors")
    tiny_model.head = head
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    for k, v in other.net.state_dict().items():  # the other network's weights, this head
        tensors[k] = v.float() if v.is_floating_point() else v
    save_file(tensors, str(tmp_path / "swapped.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="another network"):
        load_checkpoint(tmp_path / "swapped.safetensors")
    doc = json.loads(meta["poregrain"])
    doc["head"]["features"]["sigmas"] = [1.0]
    save_file(tensors, str(tmp_path / "feat.safetensors"), metadata={"poregrain": json.dumps(doc)})
    with pytest.raises(CheckpointError, match="another feature set"):
        load_checkpoint(tmp_path / "feat.safetensors")


def test_features_of_another_set_are_refused(tiny_model, fitted):
    _, _, head = fitted
    image, _ = make_sample((64, 64), seed=2)
    fs = FeatureSet(FilterBank(sigmas=(1.0,)))
    with pytest.raises(ValueError, match="another feature set"):
        head.predict(ImageFeatures.compute(Sample(image), tiny_model, features=fs, device="cpu"))


def test_regions_rank_the_uncertain_box_first():
    proba = np.zeros((3, 300, 400), np.float32)
    proba[0] = 1.0
    proba[:, 200:260, 300:380] = 1 / 3  # the one unsure place
    boxes = rank_regions(proba, box=64, k=3)
    y0, x0, y1, x1 = boxes[0]
    inside = max(0, min(y1, 260) - max(y0, 200)) * max(0, min(x1, 380) - max(x0, 300))
    assert (y1 - y0, x1 - x0) == (64, 64) and inside >= 0.75 * 64 * 64
    assert len(boxes) == 3
    with pytest.raises(ValueError, match="probabilities"):
        rank_regions(proba[0])
