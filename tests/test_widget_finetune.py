"""The "Fine-tune on corrections" dock widget on a real viewer (tiny models, small images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import plugin_dock

from napari_poregrain._widgets._events import events
from napari_poregrain._widgets._layers import region_mask
from napari_poregrain._widgets.finetune import FinetuneWidget
from napari_poregrain._widgets.segment import SegmentWidget
from napari_poregrain.classes import GRAIN, PORE
from napari_poregrain.model import MODEL_DIR_ENV, load_checkpoint, new_model, save_checkpoint
from napari_poregrain.synthetic import make_sample


@pytest.fixture
def setup(make_napari_viewer, tmp_path, monkeypatch):
    """A viewer with an image, its corrected grains/pores layers and a starting model."""
    models = tmp_path / "models"
    monkeypatch.setenv(MODEL_DIR_ENV, str(models))
    torch.manual_seed(0)
    start = save_checkpoint(new_model("resnet18", name="start"), models / "start.safetensors")
    viewer = make_napari_viewer()
    image, labels = make_sample((96, 128), seed=3)
    viewer.add_image(image, name="sem")
    viewer.add_labels((labels == GRAIN).astype(np.uint8), name="grains")
    viewer.add_labels((labels == PORE).astype(np.uint8) * 2, name="pores")  # any non-zero
    segment = plugin_dock(viewer, SegmentWidget)
    w = plugin_dock(viewer, FinetuneWidget)
    w._model.value = "start"
    w._length.value = 4
    w._crop.value = 64
    w._batch.value = 2
    w._name.value = "mine"
    yield viewer, w, segment, start, models
    events.model_added.disconnect(segment._picker.on_model_added)  # the events outlive
    events.model_added.disconnect(w._picker.on_model_added)


def _run(qtbot, w):
    w.run()
    qtbot.waitUntil(lambda: w._task is None, timeout=120_000)


def test_fine_tunes_stores_and_selects_the_new_model(setup, qtbot):
    viewer, w, segment, start, models = setup
    assert w._grains.value is viewer.layers["grains"]
    assert w._pores.value is viewer.layers["pores"]
    assert w._lr.value == pytest.approx(1e-3)
    start_bytes = start.read_bytes()
    _run(qtbot, w)
    out = models / "mine.safetensors"
    assert out.is_file() and (models / "mine.csv").is_file(), w._status.value
    assert start.read_bytes() == start_bytes
    assert segment._model.value == "mine"  # listed and selected in the segmentation widget
    assert "mine" in w._model.choices
    model = load_checkpoint(out)
    assert model.meta.name == "mine"
    assert model.meta.provenance["parent"]["file"] == "start.safetensors"
    assert [d["name"] for d in model.meta.provenance["data"]] == ["sem"]
    # the live plot got every step and every validation
    assert w.curves.steps == [1, 2, 3, 4] and len(w.curves.losses) == 4
    # the starting model, then step 4
    assert len(w.curves.val_steps) == 2 and w.curves.val_steps[0] == 0
    assert w._progress.value == 4 and w._status.value.startswith("Saved mine")


def test_region_and_two_images(setup, qtbot):
    viewer, w, _, _, models = setup
    image2, labels2 = make_sample((128, 96), seed=4)
    viewer.add_image(image2, name="sem 2")
    viewer.add_labels((labels2 == GRAIN).astype(np.uint8), name="grains [2]")
    viewer.add_labels((labels2 == PORE).astype(np.uint8), name="pores [2]")
    viewer.add_shapes([np.array([[10, 10], [10, 90], [80, 90], [80, 10]])], name="region")
    w._image.value = viewer.layers["sem"]
    w._region.value = viewer.layers["region"]
    w.add_pair()
    w._image.value = viewer.layers["sem 2"]
    assert w._grains.value is viewer.layers["grains [2]"]  # paired by shape and name
    assert w._pores.value is viewer.layers["pores [2]"]
    w._region.value = None
    w.add_pair()
    assert w._list.count() == 2
    _run(qtbot, w)
    prov = load_checkpoint(models / "mine.safetensors").meta.provenance
    data = {d["name"]: d for d in prov["data"]}
    val = {d["name"].split(" (")[0]: d for d in prov["split"]["val"]}
    assert set(data) == {"sem", "sem 2"}
    # only the drawn 70x80 rectangle (corners included) of the first image is labelled
    labelled = data["sem"]["labelled_pixels"] + val["sem"]["labelled_pixels"]
    assert labelled == 71 * 81
    assert data["sem 2"]["labelled_pixels"] + val["sem 2"]["labelled_pixels"] == 128 * 96


def test_region_mask_follows_world_coordinates(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.uint8), scale=(2, 2))
    shapes = viewer.add_shapes(
        [np.array([[0, 0], [0, 20], [20, 20], [20, 0]])], shape_type="rectangle", scale=(1, 1)
    )
    mask = region_mask(shapes, image, (40, 40))  # 20 world units = 10 image pixels
    assert mask[:10, :10].all() and not mask[12:, :].any() and not mask[:, 12:].any()


def _overlap(v, w):
    v.layers["grains"].data[0, 0] = 1
    v.layers["pores"].data[0, 0] = 1


def _other_shape(v, w):
    w._grains.value = v.add_labels(np.zeros((50, 60), np.uint8), name="g small")
    w._pores.value = v.add_labels(np.zeros((50, 60), np.uint8), name="p small")


def _region_outside(v, w):
    w._region.value = v.add_shapes([np.array([[200, 200], [200, 220], [220, 220], [220, 200]])])


def _empty_region(v, w):
    w._region.value = v.add_shapes(name="empty")


def _tiny_image(v, w):  # smaller than a crop is padded; smaller than 32 px is refused
    w._image.value = v.add_image(np.zeros((20, 24), np.uint8), name="tiny")
    v.add_labels(np.ones((20, 24), np.uint8), name="grains")
    v.add_labels(np.zeros((20, 24), np.uint8), name="pores")


BAD_INPUT = {
    "overlap": (_overlap, "both grain and pore"),
    "shape": (_other_shape, "are 50x60 but the image is 96x128"),
    "no labels": (_region_outside, "no labelled pixels"),
    "empty region": (_empty_region, "holds no shapes"),
    "existing name": (lambda v, w: setattr(w._name, "value", "start"), "already exists"),
    "bad name": (lambda v, w: setattr(w._name, "value", "a/b"), "name of letters"),
    "too small": (_tiny_image, "smaller than the 32-pixel minimum"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_one_sentence_and_changes_nothing(setup, qtbot, case):
    viewer, w, _, _, models = setup
    break_it, message = BAD_INPUT[case]
    break_it(viewer, w)
    before = sorted(p.name for p in models.iterdir())
    n_layers = len(viewer.layers)
    _run(qtbot, w)
    assert message in w._status.value and "\n" not in w._status.value
    assert sorted(p.name for p in models.iterdir()) == before
    assert len(viewer.layers) == n_layers


def test_cancel_keeps_the_starting_model(setup, qtbot):
    viewer, w, _, start, models = setup
    start_bytes = start.read_bytes()
    w._length.value = 500
    w.run()
    qtbot.waitUntil(lambda: len(w.curves.steps) >= 1, timeout=120_000)
    w.cancel()
    qtbot.waitUntil(lambda: w._task is None, timeout=120_000)
    assert len(w.curves.steps) < 500
    assert start.read_bytes() == start_bytes
    # the starting model is never saved as the new one: a cancelled run keeps the best model
    # that beat it (usable), or says that nothing was saved
    assert w._status.value.startswith("Cancelled")
    saved = models / "mine.safetensors"
    assert saved.is_file() == w._status.value.startswith("Cancelled; kept mine")
    if saved.is_file():
        load_checkpoint(saved)
