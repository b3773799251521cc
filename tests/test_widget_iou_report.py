"""The "IoU report" dock widget on a real napari viewer."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import plugin_dock, shared_data
from napari.layers import Shapes

from napari_poregrain._widgets.iou_report import FILE_CHOICE, PRED_MODEL, REF_MAP, IoUReportWidget
from napari_poregrain.analysis.metrics import confusion_matrix
from napari_poregrain.io.images import read_labels, read_sample
from napari_poregrain.synthetic import make_sample

TRUTH = np.array(
    [[0, 0, 1, 1, 255], [0, 1, 1, 2, 255], [2, 2, 0, 1, 255]],
    dtype=np.uint8,
)
PRED = np.array(
    [[0, 1, 1, 1, 2], [0, 1, 0, 2, 1], [2, 1, 0, 2, 0]],
    dtype=np.uint8,
)
SCALE = (0.5, 0.5)


def _cell(table, r, c) -> str:
    item = table.item(r, c)
    return "" if item is None else item.text()


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros(TRUTH.shape, np.uint8), name="sem", scale=SCALE, translate=(1, 2))
    viewer.add_labels((PRED == 1).astype(np.uint8), name="grains", scale=SCALE, translate=(1, 2))
    viewer.add_labels((PRED == 2).astype(np.uint8), name="pores", scale=SCALE, translate=(1, 2))
    viewer.add_labels(TRUTH, name="truth", scale=SCALE, translate=(1, 2))
    widget = plugin_dock(viewer, IoUReportWidget)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _compute(qtbot, widget, n):
    widget.compute()
    qtbot.waitUntil(lambda: len(widget.history) == n and widget._task is None, timeout=60000)


def test_table_history_disagreement_and_csv(qtbot, viewer_widget, tmp_path):
    viewer, w = viewer_widget
    assert w._pred_grains.value.name == "grains" and w._pred_pores.value.name == "pores"
    w._ref_mode.value = REF_MAP
    w._ref_map.value = viewer.layers["truth"]
    _compute(qtbot, w, 1)
    # hand-computed (see test_metrics): IoU 3/5, 3/7, 2/4
    assert [_cell(w.table, r, 0) for r in range(3)] == ["0.6000", "0.4286", "0.5000"]
    assert _cell(w.table, 1, 1) == "0.6000" and _cell(w.table, 2, 2) == "0.6667"
    assert _cell(w.table, 3, 0) == f"{(3 / 5 + 3 / 7 + 1 / 2) / 3:.4f}"
    assert _cell(w.table, 4, 0) == f"{8 / 12:.4f}"
    matrix = [[int(_cell(w.confusion, r, c)) for c in range(3)] for r in range(3)]
    assert matrix == [[3, 1, 0], [1, 3, 1], [0, 1, 2]]
    assert w.history[0]["image"] == "sem" and w.history[0]["reference"] == "truth"

    layer = w.show_disagreement()
    assert layer is viewer.layers["disagreement"]
    np.testing.assert_array_equal(layer.data, [[0, 1, 0, 0, 0], [0, 0, 2, 0, 0], [0, 4, 0, 2, 0]])
    assert tuple(layer.scale) == SCALE and tuple(layer.translate) == (1, 2)

    # a corrected prediction: second round, refreshed disagreement layer, plot and CSV
    viewer.layers["grains"].data = (TRUTH == 1).astype(np.uint8)
    viewer.layers["pores"].data = (TRUTH == 2).astype(np.uint8)
    _compute(qtbot, w, 2)
    assert w.history_table.rowCount() == 2
    assert _cell(w.history_table, 1, 0) == "2" and w.history[1]["mean_iou"] == 1.0
    assert w.show_disagreement() is layer and not layer.data.any()
    assert len(w.figure.axes[0].lines) == 4
    assert len(w.figure.axes[0].lines[3].get_xdata()) == 2

    out = w.export_csv(tmp_path / "history.csv")
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["round"] for r in rows] == ["1", "2"]
    assert float(rows[0]["iou_grain"]) == pytest.approx(3 / 7)
    assert rows[1]["mean_iou"] == "1.0" and rows[0]["labelled_pixels"] == "12"


def test_reference_layers_region_and_errors(qtbot, viewer_widget):
    viewer, w = viewer_widget
    viewer.add_labels((TRUTH == 1).astype(np.uint8), name="grains truth", scale=SCALE)
    viewer.add_labels((TRUTH == 2).astype(np.uint8), name="pores truth", scale=SCALE)
    # the translate of the reference moves the region too: keep them aligned with the others
    viewer.layers["grains truth"].translate = viewer.layers["pores truth"].translate = (1, 2)
    assert w._ref_grains.value.name == "grains truth" and w._ref_pores.value.name == "pores truth"
    # a rectangle in world coordinates over the left two columns of the data grid
    region = viewer.add_shapes(
        [np.array([[1, 2], [2.5, 2], [2.5, 3], [1, 3]])], shape_type="rectangle", name="roi"
    )
    w._region.value = region
    _compute(qtbot, w, 1)
    ref = TRUTH.copy()
    ref[ref == 255] = 0  # two-layer references have no ignore value
    expected_mask = Shapes(
        [np.array([[0, 0], [3, 0], [3, 2], [0, 2]])], shape_type="rectangle"
    ).to_masks(mask_shape=TRUTH.shape)[0]
    expected = confusion_matrix(ref, PRED, expected_mask)
    assert 0 < expected.total < TRUTH.size
    assert w._last.cm.matrix.tolist() == expected.matrix.tolist()
    assert w.history[0]["region"] == "roi"
    assert not w._last.disagreement[~expected_mask].any()

    # overlapping reference layers: one clear message, nothing added
    viewer.layers["pores truth"].data = np.ones(TRUTH.shape, np.uint8)
    w.compute()
    qtbot.waitUntil(lambda: w._task is None, timeout=60000)
    assert "both grain and pore" in w._status.value
    assert len(w.history) == 1


def test_model_on_image(qtbot, make_napari_viewer, tiny_checkpoint):
    viewer = make_napari_viewer()
    image, labels = make_sample((64, 64), seed=3)
    labels[:4] = 255
    viewer.add_image(image, name="sample")
    viewer.add_labels(labels, name="truth")
    w = plugin_dock(viewer, IoUReportWidget)
    viewer.window.add_dock_widget(w)
    w._pred_mode.value = PRED_MODEL
    w._model.value = FILE_CHOICE
    w._file.value = tiny_checkpoint
    w._ref_mode.value = REF_MAP
    assert w._ref_map.value.name == "truth" and w._image.value.name == "sample"
    _compute(qtbot, w, 1)
    assert w._last.cm.total == 60 * 64
    assert w.history[0]["model"] == "tiny" and w.history[0]["image"] == "sample"
    assert w.show_disagreement().data.shape == (64, 64)


def test_real_duvernay_tile(qtbot, make_napari_viewer, tmp_path):
    data = shared_data("duvernay-grains")
    label_path = sorted((data / "labels").glob("*.png"))[0]
    truth = read_labels(label_path)
    image = read_sample(data / "images" / f"{label_path.stem}.tif").pixels
    pred = truth.copy()
    pred[::7] = 0  # a crude "prediction": every 7th row lost its grains
    viewer = make_napari_viewer()
    viewer.add_image(image, name=label_path.stem)
    viewer.add_labels((pred == 1).astype(np.uint8), name="grains")
    viewer.add_labels(np.zeros_like(pred), name="pores")
    viewer.add_labels(truth, name="reference labels")
    w = plugin_dock(viewer, IoUReportWidget)
    viewer.window.add_dock_widget(w)
    w._ref_mode.value = REF_MAP
    _compute(qtbot, w, 1)
    cm = confusion_matrix(truth, pred)
    assert w._last.cm.matrix.tolist() == cm.matrix.tolist()
    assert _cell(w.table, 1, 0) == f"{cm.per_class_iou()[1]:.4f}"
    assert _cell(w.table, 2, 0) == "—"  # no pores on either side
