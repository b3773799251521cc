"""Docks that behave (issue 15): closing stops the run, they fit a 1000-px screen, long status
text wraps, progress bars move, the size-coloured layers have colour bars."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import plugin_dock

from napari_poregrain._widgets._base import TaskDock
from napari_poregrain._widgets._plots import SizeLegend, size_norm
from napari_poregrain._widgets.finetune import FinetuneWidget
from napari_poregrain._widgets.iou_report import REF_MAP, IoUReportWidget
from napari_poregrain._widgets.measure import MeasureWidget
from napari_poregrain._widgets.segment import SegmentWidget
from napari_poregrain.analysis.measure import class_map_sample, measure
from napari_poregrain.analysis.summary import size_colours
from napari_poregrain.synthetic import make_sample

DOCKS = [SegmentWidget, FinetuneWidget, IoUReportWidget, MeasureWidget]
LONG_PATH = "/data/" + "very_long_folder_name_" * 30 + "image.tif"


class Waiter(TaskDock):
    """A dock whose task reports progress until it is told to stop (or 20 s pass)."""

    title = "Waiter"

    def make_job(self):
        return wait_for_stop

    def on_done(self, result) -> None:
        self._status.value = result


def wait_for_stop(emit, should_stop):
    from napari_poregrain.callbacks import Cancelled

    end = time.monotonic() + 20
    while time.monotonic() < end:
        if should_stop():
            raise Cancelled
        emit((1, 10))
        time.sleep(0.02)
    return "ran to the end"


def test_closing_a_dock_cancels_its_run(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    dock = Waiter(viewer, "Go")
    viewer.window.add_dock_widget(dock)
    dock.run()
    qtbot.waitUntil(lambda: dock._progress.value == 1, timeout=5000)
    viewer.window.remove_dock_widget(dock)  # what the dock's close button does
    qtbot.waitUntil(lambda: not dock.busy, timeout=10000)
    assert dock._status.value == dock.cancelled_text


def test_closing_the_segment_dock_stops_segmenting(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(make_sample((1536, 1536), seed=0)[0], name="sem")
    dock = plugin_dock(viewer, SegmentWidget)
    dock.run()
    assert dock.busy
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert "grains" not in viewer.layers and dock._status.value.startswith("Cancelled")


@pytest.mark.parametrize("cls", DOCKS, ids=lambda c: c.__name__)
def test_every_dock_fits_a_1000_px_screen_and_wraps_status(make_napari_viewer, cls):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="sem")
    dock = plugin_dock(viewer, cls)
    # napari's window, menus and title bars leave a dock about 900 px of a 1000-px screen
    assert dock.minimumSizeHint().height() < 500
    width = dock.minimumSizeHint().width()
    dock._status.value = LONG_PATH
    dock.fail("cannot read " + LONG_PATH)
    assert dock.minimumSizeHint().width() <= max(width, 400)


def test_iou_report_bar_moves_in_layer_mode(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    truth = np.array([[0, 1, 1, 2], [2, 0, 1, 1]], np.uint8)
    viewer.add_image(np.zeros(truth.shape, np.uint8), name="sem")
    viewer.add_labels((truth == 1).astype(np.uint8), name="grains")
    viewer.add_labels((truth == 2).astype(np.uint8), name="pores")
    viewer.add_labels(truth, name="truth")
    dock = plugin_dock(viewer, IoUReportWidget)
    dock._ref_mode.value = REF_MAP
    dock._ref_map.value = viewer.layers["truth"]
    dock.compute()
    assert dock._progress.max == 0  # busy indicator while it runs
    qtbot.waitUntil(lambda: not dock.busy and len(dock.history) == 1, timeout=30000)
    assert dock._progress.max >= 1 and dock._progress.value == dock._progress.max


def _measurement():
    class_map = np.zeros((60, 60), np.uint8)
    class_map[5:9, 5:9] = 2  # small pore
    class_map[20:40, 20:40] = 2  # large pore
    class_map[45:55, 5:15] = 1  # one grain
    return measure(class_map_sample(class_map, pixel_size_nm=10.0), min_size=1, unit="nm")


def test_size_colour_bars_match_the_layer_colours(qtbot):
    m = _measurement()
    legend = SizeLegend()
    qtbot.addWidget(legend.canvas)
    assert not legend.canvas.isVisibleTo(None)
    legend.draw(m)
    assert legend.canvas.isVisibleTo(None)
    assert len(legend.figure.axes) == 2
    labels = [ax.get_xlabel() for ax in legend.figure.axes]
    assert labels == ["pore equivalent diameter (nm)", "grain equivalent diameter (nm)"]
    pores = m.objects["pores"]["equivalent_diameter"]
    from matplotlib import colormaps

    expected = size_colours(pores)
    np.testing.assert_allclose(colormaps["viridis"](size_norm(pores)(pores)), expected)
    grains = m.objects["grains"]["equivalent_diameter"]  # one grain: the middle colour
    np.testing.assert_allclose(
        colormaps["viridis"](size_norm(grains)(grains)), size_colours(grains), atol=0.01
    )
