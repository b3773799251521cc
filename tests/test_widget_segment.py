import numpy as np
import pytest

from napari_poregrain._sample_data import shale_sample
from napari_poregrain._widgets.segment import FILE_CHOICE, NO_MODEL, SegmentWidget
from napari_poregrain.inference.predict import predict
from napari_poregrain.model import DEFAULT_MODEL_PATH, MODEL_DIR_ENV


@pytest.fixture
def widget(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    viewer = make_napari_viewer()
    ((data, kwargs, _),) = shale_sample()
    viewer.add_image(data[:192, :256], **kwargs)
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def _segment(qtbot, w):
    w.run()
    qtbot.waitUntil(lambda: w._task is None, timeout=120_000)


def test_without_a_model_it_asks_for_a_checkpoint(make_napari_viewer, tmp_path, monkeypatch):
    import napari_poregrain.model as model

    monkeypatch.setattr(model, "DEFAULT_MODEL_PATH", tmp_path / "none.safetensors")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    w = SegmentWidget(make_napari_viewer())
    assert w._model.choices == (FILE_CHOICE,)
    assert w._status.value == NO_MODEL and not w._run.enabled


def test_the_shipped_default_is_offered_first(widget):
    _, w = widget
    if not DEFAULT_MODEL_PATH.is_file():
        pytest.skip("no default model is shipped in this checkout")
    assert w._model.choices[0] == "default" and w._run.enabled


def test_adds_aligned_grains_and_pores_layers(widget, qtbot, tiny_checkpoint, tiny_model):
    viewer, w = widget
    image = viewer.layers["synthetic shale"]
    image.scale, image.units = (0.01, 0.01), ("micrometer", "micrometer")  # as the reader sets
    w.select_model(tiny_checkpoint)
    w._tile.value = 128
    w._confidence.value = True
    assert w._run.enabled
    _segment(qtbot, w)
    expected = predict(image.data, tiny_model, tile=128).labels
    for name, cls in (("grains", 1), ("pores", 2)):
        layer = viewer.layers[name]
        # the worker thread may sum in another order than this one: near-ties can flip
        assert (layer.data == (expected == cls)).mean() > 0.995
        assert tuple(layer.scale) == tuple(image.scale)
        assert tuple(layer.translate) == tuple(image.translate)
        assert tuple(layer.units) == tuple(image.units)  # no "inconsistent units" warning
    assert viewer.layers["confidence"].data.shape == image.data.shape
    assert tuple(viewer.layers["confidence"].units) == tuple(image.units)
    assert w._status.value.startswith("Done")


def test_running_again_keeps_edited_labels(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    w.select_model(tiny_checkpoint)
    w._tile.value = 128
    _segment(qtbot, w)
    pores = viewer.layers["pores"]
    untouched_grains = viewer.layers["grains"]
    pores.data[:10, :10] = 1 - pores.data[:10, :10]  # a hand correction
    pores.refresh()
    edited = pores.data.copy()
    _segment(qtbot, w)
    kept = [layer for layer in viewer.layers if layer.name.startswith("pores (kept")]
    assert len(kept) == 1 and kept[0] is pores
    np.testing.assert_array_equal(kept[0].data, edited)
    assert viewer.layers["grains"] is untouched_grains  # unedited: refreshed in place
    assert "kept" in w._status.value


def test_cancel_changes_nothing(widget, qtbot, tiny_checkpoint):
    viewer, w = widget
    w.select_model(tiny_checkpoint)
    w._tile.value = 64
    w._overlap.value = 0.5
    n_layers = len(viewer.layers)
    w.run()
    w.cancel()
    qtbot.waitUntil(lambda: w._task is None, timeout=120_000)
    assert len(viewer.layers) == n_layers
    assert "Cancelled" in w._status.value
