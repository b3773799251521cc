"""The Fine-tune dock's Live mode through the plugin path: strokes -> head refit -> preview."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import plugin_dock

from napari_poregrain._widgets._events import events
from napari_poregrain._widgets.finetune import FinetuneWidget
from napari_poregrain.classes import GRAIN, PORE
from napari_poregrain.model import MODEL_DIR_ENV, new_model, save_checkpoint
from napari_poregrain.synthetic import make_sample


@pytest.fixture
def live(make_napari_viewer, tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv(MODEL_DIR_ENV, str(models))
    torch.manual_seed(0)
    save_checkpoint(new_model("resnet18", name="start"), models / "start.safetensors")
    viewer = make_napari_viewer()
    image, truth = make_sample((128, 128), seed=5)
    viewer.add_image(image, name="sem")
    unlabelled = np.full(truth.shape, 255, np.uint8)  # a map opened with nothing labelled
    viewer.add_labels(unlabelled.copy(), name="grains")
    viewer.add_labels(unlabelled.copy(), name="pores")
    w = plugin_dock(viewer, FinetuneWidget)
    w._model.value = "start"
    yield viewer, w, truth
    events.model_added.disconnect(w._picker.on_model_added)


def _paint_truth(layer, truth, cls, value=1, step=7):
    """Strokes of napari's own brush on every ``step``-th pixel of class ``cls``."""
    layer.brush_size = 1
    ys, xs = np.nonzero(truth == cls)
    for y, x in list(zip(ys, xs, strict=True))[::step][:60]:
        layer.paint((y, x), value, refresh=False)


def test_live_preview_follows_strokes_and_accept_keeps_painted_pixels(live, qtbot):
    viewer, w, truth = live
    grains, pores = viewer.layers["grains"], viewer.layers["pores"]
    w.live.toggle.value = True
    qtbot.waitUntil(lambda: bool(w.live.features), timeout=120_000)
    _paint_truth(grains, truth, GRAIN)
    _paint_truth(pores, truth, PORE)
    _paint_truth(grains, truth, 0, value=0, step=37)  # erasing marks matrix
    painted_before = w.live.brush.painted_mask(grains).copy()
    qtbot.waitUntil(lambda: "live preview [sem]" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: w.live.task is None, timeout=60_000)
    preview = viewer.layers["live preview [sem]"].data
    assert preview.shape == truth.shape
    assert (preview == truth).mean() > 0.7, w.live.status.value
    kept = np.where(painted_before, grains.data, 9)
    w.live.accept()
    np.testing.assert_array_equal(np.where(painted_before, grains.data, 9), kept)
    assert ((grains.data == 1) & (pores.data == 1)).sum() == 0
    grains.undo()  # one undo step puts the grains layer back
    np.testing.assert_array_equal(np.where(painted_before, grains.data, 9), kept)


def test_live_needs_a_pair_and_says_so(live):
    viewer, w, _ = live
    w._grains.value = None
    w.live.toggle.value = True
    assert not w.live.toggle.value and "choose the image" in w.live.status.value


def test_fine_tune_in_live_mode_learns_the_painted_pixels_in_two_stages(live, qtbot, tmp_path):
    from napari_poregrain.model import load_checkpoint

    viewer, w, truth = live
    grains, pores = viewer.layers["grains"], viewer.layers["pores"]
    w.live.toggle.value = True
    _paint_truth(grains, truth, GRAIN, step=3)
    _paint_truth(pores, truth, PORE, step=3)
    _paint_truth(grains, truth, 0, value=0, step=11)
    w._length.value, w._crop.value, w._batch.value, w._name.value = 4, 64, 2, "live-mine"
    w.run()
    assert "Live fine-tune" in w._status.value
    qtbot.waitUntil(lambda: w._task is None, timeout=300_000)
    out = tmp_path / "models" / "live-mine.safetensors"
    assert out.is_file() == w._status.value.startswith("Saved"), w._status.value
    if out.is_file():
        saved = load_checkpoint(out)
        assert ("head" in w._status.value.split("(")[0]) == (saved.head is not None)
