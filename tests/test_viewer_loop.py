"""The correction loop across docks on a real viewer: units, layer pairs, one brush, stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import plugin_dock

from napari_poregrain._widgets._events import events
from napari_poregrain._widgets.finetune import FinetuneWidget
from napari_poregrain._widgets.iou_report import IoUReportWidget
from napari_poregrain._widgets.measure import MeasureWidget
from napari_poregrain._widgets.segment import SegmentWidget
from napari_poregrain.classes import GRAIN, PORE
from napari_poregrain.model import MODEL_DIR_ENV, load_checkpoint, new_model, save_checkpoint
from napari_poregrain.synthetic import make_sample


def masks(shape=(64, 64)):
    grains = np.zeros(shape, np.uint8)
    grains[..., 5:20, 5:30] = 1
    pores = np.zeros(shape, np.uint8)
    pores[..., 40:50, 40:52] = 1
    pores[..., 30:33, 10:13] = 1
    return grains, pores


def _measure(qtbot, widget):
    widget.compute()
    qtbot.waitUntil(lambda: widget._task is None, timeout=60_000)
    t = widget.table
    return {t.item(i, 0).text(): t.item(i, 1).text() for i in range(t.rowCount())}


def _measure_viewer(make_napari_viewer, **geo):
    viewer = make_napari_viewer()
    grains, pores = masks()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="sem", **geo)
    viewer.add_labels(grains, name="grains", **geo)
    viewer.add_labels(pores, name="pores", **geo)
    widget = plugin_dock(viewer, MeasureWidget)
    return viewer, widget


# -- units ---------------------------------------------------------------------------------------
def test_nm_and_um_layers_give_the_same_measure_table(make_napari_viewer, qtbot):
    _, in_nm = _measure_viewer(make_napari_viewer, scale=(20, 20), units=("nm", "nm"))
    _, in_um = _measure_viewer(make_napari_viewer, scale=(0.02, 0.02), units=("µm", "µm"))
    nm_rows, um_rows = _measure(qtbot, in_nm), _measure(qtbot, in_um)
    assert nm_rows == um_rows
    assert in_nm.measurement.pixel_size_nm == pytest.approx(20.0)
    assert nm_rows["unit"].startswith("nm") and nm_rows["grains: D50 (median)"].endswith(" nm")
    _, in_mm = _measure_viewer(make_napari_viewer, scale=(2e-5, 2e-5), units=("mm", "mm"))
    assert _measure(qtbot, in_mm) == nm_rows


def test_a_layer_without_units_is_in_pixels(make_napari_viewer, qtbot):
    # a scale without units is not a pixel size (it used to be read as µm per pixel)
    _, widget = _measure_viewer(make_napari_viewer, scale=(0.02, 0.02))
    rows = _measure(qtbot, widget)
    assert widget.measurement.unit == "px" and widget.measurement.pixel_size_nm is None
    assert rows["grains: D50 (median)"].endswith(" px")
    assert widget.figure.axes[0].get_xlabel().endswith("(px)")


def test_a_unit_that_is_not_a_length_is_one_sentence(make_napari_viewer, qtbot):
    viewer, widget = _measure_viewer(make_napari_viewer, scale=(1, 1), units=("s", "s"))
    n = len(viewer.layers)
    _measure(qtbot, widget)
    assert widget.measurement is None and len(viewer.layers) == n
    assert "cannot convert the unit 'second'" in widget._status.value
    assert "'pores'" in widget._status.value and "\n" not in widget._status.value


# -- the right layers ----------------------------------------------------------------------------
@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv(MODEL_DIR_ENV, str(folder))
    torch.manual_seed(0)
    save_checkpoint(new_model("resnet18", name="start"), folder / "start.safetensors")
    return folder


def _segment(qtbot, segment):
    segment.run()
    qtbot.waitUntil(lambda: segment._task is None, timeout=120_000)


@pytest.mark.slow  # segments or trains: over 5 s on a 2-core CPU
def test_docks_opened_before_segment_pick_distinct_newest_pairs(make_napari_viewer, qtbot, models):
    viewer = make_napari_viewer()
    image, _ = make_sample((64, 64), seed=1)
    viewer.add_image(image, name="sem")
    segment = plugin_dock(viewer, SegmentWidget)
    docks = [
        plugin_dock(viewer, FinetuneWidget),
        plugin_dock(viewer, MeasureWidget),
        plugin_dock(viewer, IoUReportWidget),
    ]
    try:
        segment._model.value = "start"
        _segment(qtbot, segment)
        pairs = [(docks[0]._grains, docks[0]._pores), (docks[1]._grains, docks[1]._pores)]
        pairs.append((docks[2]._pred_grains, docks[2]._pred_pores))
        for g, p in pairs:
            assert g.value is viewer.layers["grains"] and p.value is viewer.layers["pores"]
        viewer.layers["grains"].data[0, 0] = 1 - viewer.layers["grains"].data[0, 0]  # edited
        _segment(qtbot, segment)  # the edited layer is kept as "grains (kept …)"
        assert any("(kept" in ly.name for ly in viewer.layers)
        for g, p in pairs:
            assert g.value is viewer.layers["grains"] and p.value is viewer.layers["pores"]
        viewer.layers["grains"].name = "grains corrected"  # renamed: still followed
        viewer.add_labels(np.zeros((64, 64), np.uint8), name="pores mine")
        assert pairs[0][1].value is viewer.layers["pores"]  # exact name first
        viewer.layers.remove("pores")
        for g, p in pairs:
            assert g.value is viewer.layers["grains corrected"]
            assert p.value is viewer.layers["pores mine"]
    finally:
        for w in (segment, docks[0], docks[2]):
            events.model_added.disconnect(w._picker.on_model_added)


# -- one brush -----------------------------------------------------------------------------------
def _paint(layer, rows, cols, value):
    """One stroke as napari's brush ends it: the edit history item and the paint event."""
    indices = (np.asarray(rows), np.asarray(cols))
    with layer.block_history():
        layer.data_setitem(indices, value)


def test_painting_pore_over_grain_clears_the_grain(make_napari_viewer):
    viewer, widget = _measure_viewer(make_napari_viewer)
    grains, pores = viewer.layers["grains"], viewer.layers["pores"]
    assert grains.data[10, 10] == 1
    _paint(pores, [10, 10, 11], [10, 11, 10], 1)
    assert pores.data[10, 10] == 1 and grains.data[10, 10] == 0 and grains.data[11, 10] == 0
    assert grains.data[12, 12] == 1  # the rest of the grain is untouched
    _paint(grains, [10], [10], 1)  # and back
    assert grains.data[10, 10] == 1 and pores.data[10, 10] == 0
    _paint(pores, [10], [10], 0)  # erasing a pore erases nothing else
    assert grains.data[10, 10] == 1
    grains.undo()  # the cleared pixel comes back with the other layer's Undo
    assert pores.data[10, 10] == 0 and grains.data[10, 10] == 0


def test_the_real_brush_and_fill_clear_the_other_class(make_napari_viewer):
    """napari's own brush (``Labels.paint``) and fill record masked atoms, not index triples."""
    viewer, widget = _measure_viewer(make_napari_viewer)
    grains, pores = viewer.layers["grains"], viewer.layers["pores"]
    assert grains.data[10, 10] == 1
    pores.brush_size = 3
    with pores.block_history():  # one stroke, as a mouse drag ends it
        pores.paint((10, 10), 1)
    assert pores.data[10, 10] == 1 and grains.data[10, 10] == 0
    assert grains.data[9:12, 9:12].sum() == 0 and grains.data[12, 12] == 1
    with pores.block_history():
        pores.paint((10, 10), 0)  # erasing a pore clears nothing else
    assert grains.data[12, 12] == 1


def test_overlap_of_loaded_layers_is_located_and_resolved(make_napari_viewer, qtbot):
    viewer, widget = _measure_viewer(make_napari_viewer)
    grains, pores = viewer.layers["grains"], viewer.layers["pores"]
    pores.data[6:8, 20:25] = 1  # loaded that way: 10 pixels inside the grain, no stroke
    pores.refresh()
    _measure(qtbot, widget)
    text = widget._status.value
    assert "10 pixels are marked both grain and pore (rows 6-7, columns 20-24)" in text
    assert widget.measurement is None and not widget._fix.button.native.isHidden()
    widget._fix.button.clicked()
    assert "kept in pores" in widget._status.value  # neither painted: the upper layer wins
    assert not grains.data[6:8, 20:25].any() and pores.data[6:8, 20:25].all()
    _measure(qtbot, widget)
    assert widget.measurement is not None and widget._fix.button.native.isHidden()


# -- stacks --------------------------------------------------------------------------------------
def test_a_stack_is_measured_per_slice_and_in_total(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    grains, pores = masks((3, 64, 64))
    pores[2] = 0
    geo = {"scale": (1, 0.02, 0.02), "units": ("pixel", "µm", "µm")}
    viewer.add_image(np.zeros((3, 64, 64), np.uint8), name="stack", **geo)
    viewer.add_labels(grains, name="grains", **geo)
    viewer.add_labels(pores, name="pores", **geo)
    widget = plugin_dock(viewer, MeasureWidget)
    rows = _measure(qtbot, widget)
    m = widget.measurement
    assert m.summary["pores"]["count"] == 4 and m.summary["grains"]["count"] == 3
    assert m.pixel_size_nm == pytest.approx(20.0) and m.region_pixels == 3 * 64 * 64
    assert [s["pores_count"] for s in m.summary["slices"]] == [2, 2, 0]
    assert rows["slice 2: pore fraction"] == "0 %" and "slices" in widget._status.value
    labels = m.object_labels["pores"]
    assert labels.shape == (3, 64, 64) and len(np.unique(labels[labels > 0])) == 4
    added = widget.colour_by_size()
    assert added[0].data.shape == (3, 64, 64)


@pytest.mark.slow  # segments or trains: over 5 s on a 2-core CPU
def test_a_stack_is_fine_tuned_on_its_labelled_slices(make_napari_viewer, qtbot, models):
    viewer = make_napari_viewer()
    image, labels = make_sample((64, 64), seed=2)
    stack = np.stack([image, image, image])
    grains = np.zeros((3, 64, 64), np.uint8)
    pores = np.zeros((3, 64, 64), np.uint8)
    grains[1], pores[1] = labels == GRAIN, labels == PORE  # only slice 1 corrected
    viewer.add_image(stack, name="stack")
    viewer.add_labels(grains, name="grains")
    viewer.add_labels(pores, name="pores")
    w = plugin_dock(viewer, FinetuneWidget)
    try:
        w._model.value, w._length.value, w._crop.value, w._batch.value = "start", 2, 32, 2
        w._val.value, w._name.value = 0.0, "stacked"
        w.run()
        qtbot.waitUntil(lambda: w._task is None, timeout=120_000)
        out = models / "stacked.safetensors"
        assert out.is_file(), w._status.value
        data = load_checkpoint(out).meta.provenance["data"]
        assert [d["name"] for d in data] == ["stack[1]"]  # the labelled slice only
    finally:
        events.model_added.disconnect(w._picker.on_model_added)


def test_a_stack_without_labels_is_refused(make_napari_viewer, qtbot, models):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 64, 64), np.uint8), name="stack")
    viewer.add_labels(np.zeros((2, 64, 64), np.uint8), name="grains")
    viewer.add_labels(np.zeros((2, 64, 64), np.uint8), name="pores")
    w = plugin_dock(viewer, FinetuneWidget)
    try:
        w._model.value = "start"
        before = sorted(p.name for p in models.iterdir())
        w.run()
        assert (
            w._task is None and "mark no pixel in any of the stack's 2 slices" in w._status.value
        )
        assert sorted(p.name for p in models.iterdir()) == before
    finally:
        events.model_added.disconnect(w._picker.on_model_added)
