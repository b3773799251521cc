"""The shipped default model: loads offline from the package and beats simple baselines."""

import numpy as np
import pytest
from conftest import is_crop, shared_data
from safetensors import safe_open

from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.inference.predict import predict
from napari_poregrain.io.images import read_labels, read_sample
from napari_poregrain.model import DEFAULT_MODEL_PATH, available_models, load_checkpoint
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training.recipe import baseline

pytestmark = pytest.mark.skipif(
    not DEFAULT_MODEL_PATH.is_file(), reason="no default model is shipped in this checkout"
)


@pytest.fixture(scope="module")
def default_model():
    return load_checkpoint(available_models()["default"])


def test_shipped_as_small_fp16_safetensors_with_its_story(default_model):
    assert DEFAULT_MODEL_PATH.stat().st_size <= 30 * 2**20
    with safe_open(str(DEFAULT_MODEL_PATH), framework="pt") as f:
        key = next(k for k in f.keys() if k.endswith("weight"))
        assert str(f.get_tensor(key).dtype) == "torch.float16"
    prov = default_model.meta.provenance
    for key in ("recipe", "data", "split", "validation", "created"):
        assert key in prov, key


def _iou(truth, pred, cls):
    return ConfusionMatrix().update(truth, pred).per_class_iou()[cls]


def test_beats_otsu_on_pores_of_the_held_out_zeiss_image(default_model):
    folder = shared_data("zeiss-shale-pores")
    img = read_sample(folder / "images" / "train_4.tif")
    truth = read_labels(folder / "labels" / "train_4.png")
    pred = predict(img.pixels, default_model, content_rows=img.data_bar_row).labels
    model_iou = _iou(truth, pred, 2)
    otsu_iou = _iou(truth, baseline(img.pixels, "otsu", truth), 2)
    assert default_model.meta.refine  # the head that reaches it (see README, Model)
    if is_crop(folder):
        # 96 columns of train_4 (tests/data/README.md): less context for the network (0.571 here,
        # 0.705 on the same columns predicted in the full image) and mostly organic matter
        # labelled, where Otsu over the labelled pixels is strong (0.590); far from chance.
        assert model_iou >= 0.50, (model_iou, otsu_iou)
        assert model_iou >= otsu_iou - 0.05, (model_iou, otsu_iou)
        return
    assert model_iou >= otsu_iou + 0.10, (model_iou, otsu_iou)
    assert model_iou >= 0.60, model_iou  # the target (0.651 when shipped)


def test_beats_the_majority_class_on_held_out_duvernay_tiles(default_model):
    folder = shared_data("duvernay-grains")
    cm_model, cm_base = ConfusionMatrix(), ConfusionMatrix()
    for stem in sorted(p.stem for p in (folder / "labels").glob("*.png"))[-14:]:
        image = read_sample(folder / "images" / f"{stem}.tif").pixels
        truth = read_labels(folder / "labels" / f"{stem}.png")
        cm_model.update(truth, predict(image, default_model).labels)
        cm_base.update(truth, baseline(image, "majority"))
    assert cm_model.per_class_iou()[1] >= cm_base.per_class_iou()[1] + 0.05
    assert cm_model.mean_iou() >= cm_base.mean_iou() + 0.10
    iou = cm_model.per_class_iou()
    if is_crop(folder):  # two of the 14 held-out tiles: 0.841 / 0.805 when the crops were cut
        assert iou[1] >= 0.80 and iou[0] >= 0.75, iou
        return
    assert iou[1] >= 0.90 and iou[0] >= 0.60, iou  # the targets (0.913 / 0.754 shipped)


def test_sample_image_gives_plausible_layers(default_model):
    image, truth = make_sample((512, 512), seed=0)
    pred = predict(image, default_model).labels
    fractions = np.bincount(pred.ravel(), minlength=3) / pred.size
    assert 0.1 < fractions[1] < 0.6 and 0.003 < fractions[2] < 0.1
    assert _iou(truth, pred, 1) > 0.6 and _iou(truth, pred, 2) > 0.4
