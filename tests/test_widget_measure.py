"""The Measure dock widget on a real viewer: table, histograms, export, colour by size."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import plugin_dock
from skimage.draw import disk

from napari_poregrain._widgets.measure import MeasureWidget

SCALE = (0.01, 0.01)  # µm per pixel, as the reader sets it: 10 nm pixels
UM = {"scale": SCALE, "units": ("µm", "µm")}


def masks():
    grains = np.zeros((128, 128), np.uint8)
    grains[10:30, 10:50] = 1  # 800 px
    pores = np.zeros((128, 128), np.uint8)
    rr, cc = disk((80, 80), 8)
    pores[rr, cc] = 1
    pores[30:34, 20:24] = 1  # touches the grain
    pores[110:, :] = 1  # inside the data bar: excluded
    return grains, pores


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    grains, pores = masks()
    viewer.add_image(
        np.zeros((128, 128), np.uint8),
        name="sem",
        **UM,
        metadata={"data_bar_row": 100, "pixel_size_nm": 10.0},
    )
    viewer.add_labels(grains, name="grains", **UM)
    viewer.add_labels(pores, name="pores", **UM)
    conf = np.full((128, 128), 250, np.uint8)
    conf[:, :32] = 60
    viewer.add_image(conf, name="confidence", **UM, metadata={"confidence_scale": 255})
    widget = plugin_dock(viewer, MeasureWidget)
    viewer.window.add_dock_widget(widget, name="Measure")
    return viewer, widget


def run(widget, qtbot):
    widget.compute()
    qtbot.waitUntil(lambda: widget._task is None, timeout=60000)


def table(widget):
    return {
        widget.table.item(i, 0).text(): widget.table.item(i, 1).text()
        for i in range(widget.table.rowCount())
    }


def test_fills_table_and_histograms(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    assert widget._pores.value is viewer.layers["pores"]
    assert widget._image.value is viewer.layers["sem"]
    run(widget, qtbot)
    m = widget.measurement
    assert m is not None and m.unit == "nm" and m.pixel_size_nm == pytest.approx(10.0)
    pore_px = int(np.count_nonzero(masks()[1][:100]))
    assert m.region_pixels == 100 * 128
    assert m.summary["pore_fraction"] == pytest.approx(pore_px / (100 * 128))
    rows = table(widget)
    assert rows["pores: count"] == "2" and rows["grains: count"] == "1"
    assert rows["pores: touching a grain"] == "1"
    assert rows["pore fraction"] == f"{100 * pore_px / 12800:.3g} %"
    assert rows["low confidence (< 0.50)"] == "25 %"
    assert rows["unit"].startswith("nm")
    assert len(widget.figure.axes) >= 2 and widget.figure.axes[0].get_xscale() == "log"


def test_region_and_pixels_without_scale(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    grains, pores = masks()
    viewer.add_labels(pores, name="pores")
    viewer.add_shapes([[[60, 60], [60, 100], [100, 100], [100, 60]]], name="region")
    widget = plugin_dock(viewer, MeasureWidget)
    viewer.window.add_dock_widget(widget, name="Measure")
    assert widget._grains.value is None
    widget._region.value = viewer.layers["region"]
    run(widget, qtbot)
    m = widget.measurement
    assert m.unit == "px" and m.region_pixels == 41 * 41
    assert m.summary["pores"]["count"] == 1 and m.summary["grains"]["count"] == 0
    assert "pixels" in widget._status.value
    assert "pixels" in table(widget)["unit"]
    widget._pixel.value = "0.02um"
    run(widget, qtbot)
    assert widget.measurement.unit == "nm" and widget.measurement.pixel_size_nm == 20.0


def test_export_and_colour_by_size(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    run(widget, qtbot)
    first = widget.export(tmp_path / "run")
    assert [p.name for p in first] == ["run_objects.csv", "run_summary.json"]
    with open(first[0], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and "equivalent_diameter_nm" in rows[0]
    assert json.loads(first[1].read_text(encoding="utf-8"))["unit"] == "nm"
    second = widget.export(tmp_path / "run_objects.csv")  # never overwrites
    assert [p.name for p in second] == ["run-2_objects.csv", "run-2_summary.json"]

    assert widget.legend.canvas.isHidden()  # no colour bar before there is a coloured layer
    added = widget.colour_by_size()
    assert [ly.name for ly in added] == ["pores by size (nm)", "grains by size (nm)"]
    assert not widget.legend.canvas.isHidden()  # the size-coloured layers get their colour bars
    assert len(widget.legend.figure.axes) == 2
    pores_layer = added[0]
    assert tuple(pores_layer.scale) == SCALE
    assert "equivalent_diameter_nm" in pores_layer.features
    assert set(np.unique(pores_layer.data)) == {0, *widget.measurement.objects["pores"]["label"]}


def test_errors_are_shown_not_raised(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget._grains.value = None
    widget._pores.value = None
    widget.compute()
    assert widget._task is None and "choose a grains or a pores" in widget._status.value
    grains = viewer.layers["grains"]
    grains.data = np.ones((128, 128), np.uint8)
    widget._grains.value = grains
    widget._pores.value = viewer.layers["pores"]
    widget.compute()
    assert "both grain and pore" in widget._status.value


def test_lazy_layers_give_the_same_object_table_and_export(viewer_widget, qtbot, tmp_path):
    """zarr-backed labels (measured band by band): the same table rows and CSV as NumPy ones."""
    import zarr

    viewer, widget = viewer_widget
    run(widget, qtbot)
    eager = table(widget)
    eager_csv = widget.export(tmp_path / "eager")[0].read_text(encoding="utf-8")
    grains, pores = masks()
    widget._grains.value = viewer.add_labels(zarr.array(grains, chunks=32), name="zg", **UM)
    widget._pores.value = viewer.add_labels(zarr.array(pores, chunks=32), name="zp", **UM)
    run(widget, qtbot)
    assert widget.measurement.object_labels == {}  # block-wise: no object-id images
    assert table(widget)["pores: count"] == eager["pores: count"] == "2"
    assert table(widget)["grains: count"] == "1"
    assert "2 pores, 1 grains" in widget._status.value
    assert "not measured" not in widget._status.value
    lazy_csv = widget.export(tmp_path / "lazy")[0].read_text(encoding="utf-8")
    assert lazy_csv == eager_csv
    assert widget.colour_by_size() == []
    assert "cannot be coloured by size" in widget._status.value
