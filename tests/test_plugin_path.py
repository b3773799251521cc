"""The docks as users open them: through napari's plugin path (the viewer is a proxy)."""

from __future__ import annotations

import numpy as np

from napari_poregrain.classes import GRAIN, PORE


def open_dock(viewer, name: str):
    """The dock ``name`` opened as the Plugins menu opens it (napari hands it a viewer proxy)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-poregrain", name)
    return widget


def test_brush_on_the_proxy_clears_the_other_class(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((64, 64), np.uint8), name="img")
    open_dock(viewer, "Segment pores and grains")
    grains = viewer.add_labels(np.ones((64, 64), np.uint8), name="grains")
    pores = viewer.add_labels(np.zeros((64, 64), np.uint8), name="pores")
    del image
    pores.selected_label = 1
    pores.paint((10, 10), 1)
    assert pores.data[10, 10] == 1
    assert grains.data[10, 10] == 0
    assert GRAIN != PORE


def _segment(qtbot, dock, image) -> None:
    dock._image.value = image
    dock.run()
    qtbot.waitUntil(lambda: not dock.busy, timeout=60_000)


def test_a_second_image_gets_its_own_pair_at_its_own_scale(make_napari_viewer, qtbot, tmp_path):
    from napari_poregrain.model import new_model, save_checkpoint

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 64), np.uint8)
    one = viewer.add_image(noise, name="train_1", scale=(0.014, 0.014))
    two = viewer.add_image(noise[::-1].copy(), name="train_2", scale=(0.011, 0.011))
    path = save_checkpoint(new_model("resnet18", name="tiny"), tmp_path / "tiny.safetensors")
    dock = open_dock(viewer, "Segment pores and grains")
    dock.select_model(path)
    _segment(qtbot, dock, one)
    first = viewer.layers["grains"].data.copy()
    _segment(qtbot, dock, two)
    assert viewer.layers["grains"].metadata["image"] == "train_1"
    np.testing.assert_array_equal(viewer.layers["grains"].data, first)
    mine = viewer.layers["grains [train_2]"]
    assert mine.metadata["image"] == "train_2" and tuple(mine.scale) == (0.011, 0.011)
    assert tuple(viewer.layers["pores [train_2]"].scale) == (0.011, 0.011)
    _segment(qtbot, dock, two)  # untouched: refreshed in place, no third pair
    assert len([ly for ly in viewer.layers if ly.name.startswith("grains")]) == 2


def test_strokes_on_the_proxy_path_are_tracked_and_erasing_labels_matrix(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    open_dock(viewer, "Fine-tune on corrections")
    unlabelled = np.full((32, 32), 255, np.uint8)
    grains = viewer.add_labels(unlabelled.copy(), name="grains")
    pores = viewer.add_labels(unlabelled.copy(), name="pores")
    brush = __import__("napari_poregrain._widgets._brush", fromlist=["OneBrush"]).OneBrush
    grains.brush_size = 1
    grains.paint((3, 3), 1, refresh=False)  # grain over unlabelled: pores cleared there
    assert (grains.data[3, 3], pores.data[3, 3]) == (1, 0)
    grains.paint((5, 5), 0, refresh=False)  # erasing marks matrix: 255 cleared in both
    assert (grains.data[5, 5], pores.data[5, 5]) == (0, 0)
    painted = brush.attach(viewer).painted_mask(grains)
    assert painted is not None and set(zip(*np.nonzero(painted))) == {(3, 3), (5, 5)}
    assert pores.data[10, 10] == 255 and grains.data[10, 10] == 255


def test_all_four_docks_share_tabs_and_measure_starts_without_a_figure(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QDockWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="sem")
    names = ["Segment pores and grains", "Fine-tune on corrections", "IoU report", "Measure"]
    docks = [open_dock(viewer, name) for name in names]
    qtbot.wait(50)
    frames = [d.parent() for d in docks]
    while not all(isinstance(f, QDockWidget) for f in frames):
        frames = [f if isinstance(f, QDockWidget) else f.parent() for f in frames]
    window = frames[0].parent()
    assert len(window.tabifiedDockWidgets(frames[0])) == 3
    measure = docks[-1]
    assert not measure.canvas.isVisibleTo(measure)
    measure.table.setRowCount(3)  # an earlier result
    measure.run()  # no layers chosen: refused in one sentence, the old table cleared
    assert measure.table.rowCount() == 0 and measure._status.value


def _drag(layer, event_type, points):
    """A brush stroke through napari's own mouse callbacks (as the canvas sends them)."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    def event(kind, p):
        return ReadOnlyWrapper(
            event_type(type=kind, is_dragging=kind == "mouse_move", position=p, dims_point=p)
        )

    mouse_press_callbacks(layer, event("mouse_press", points[0]))
    for p in points[1:]:
        mouse_move_callbacks(layer, event("mouse_move", p))
    mouse_release_callbacks(layer, event("mouse_release", points[-1]))


def test_a_stroke_that_repaints_the_prediction_still_counts(make_napari_viewer, MouseEvent):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 40), np.uint8), name="img")
    dock = open_dock(viewer, "Fine-tune on corrections")
    grains = viewer.add_labels(np.ones((40, 40), np.uint8), name="grains")
    viewer.add_labels(np.zeros((40, 40), np.uint8), name="pores")
    grains.mode, grains.brush_size, grains.selected_label = "paint", 3, 1
    _drag(grains, MouseEvent, [(10, 5), (10, 15)])  # grain over grain: no pixel changes
    painted = dock.live.brush.painted_mask(grains)
    assert painted is not None and painted[10, 5:16].all() and painted.sum() < 60
    assert not painted[20:].any()


def test_dock_modules_import_without_torch():
    """Opening a dock never imports torch on the GUI thread (seconds on a 2-core CPU): the
    engine loads in a background thread (``_devices.TorchWarmup``) or in the task."""
    import subprocess
    import sys

    code = (
        "import sys, napari_poregrain._widgets.segment, napari_poregrain._widgets.finetune, "
        "napari_poregrain._widgets.iou_report, napari_poregrain._widgets.measure; "
        "print(sorted(m for m in ('torch', 'segmentation_models_pytorch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_docks_pick_the_pair_of_the_chosen_image(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in ("one", "two"):
        viewer.add_image(np.zeros((16, 16), np.uint8), name=name)
    tied = {}
    for image, suffix in (("one", ""), ("two", " [two]")):
        for cls in ("grains", "pores"):
            layer = viewer.add_labels(np.zeros((16, 16), np.uint8), name=cls + suffix)
            layer.metadata["image"] = image
            tied[image, cls] = layer
    finetune = open_dock(viewer, "Fine-tune on corrections")
    measure = open_dock(viewer, "Measure")
    finetune._image.value = viewer.layers["two"]
    measure._image.value = viewer.layers["two"]
    assert finetune._grains.value is tied["two", "grains"]
    assert measure._pores.value is tied["two", "pores"]
    finetune._image.value = viewer.layers["one"]  # never another image's pair
    assert finetune._grains.value is tied["one", "grains"]


def test_the_iou_report_scores_only_labelled_pixels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20), np.uint8), name="sem")
    truth = np.full((20, 20), 255, np.uint8)
    truth[:5] = 1  # 100 labelled pixels, all grain
    truth[5:8] = 0  # 60 labelled matrix pixels
    grains = viewer.add_labels(
        np.where(truth == 255, 255, truth == 1).astype(np.uint8), name="grains truth"
    )
    pores = viewer.add_labels(np.where(truth == 255, 255, 0).astype(np.uint8), name="pores truth")
    pred_g = viewer.add_labels(
        (np.arange(20)[:, None] < 5).repeat(20, 1).astype(np.uint8), name="grains"
    )
    pred_p = viewer.add_labels(np.zeros((20, 20), np.uint8), name="pores")
    dock = open_dock(viewer, "IoU report")
    dock._ref_grains.value, dock._ref_pores.value = grains, pores
    dock._pred_grains.value, dock._pred_pores.value = pred_g, pred_p
    dock.run()
    qtbot.waitUntil(lambda: not dock.busy, timeout=30_000)
    assert "over 160 pixels" in dock._status.value and "mean IoU 1.000" in dock._status.value


def test_segment_offers_the_backend_and_runs_on_onnxruntime(make_napari_viewer, qtbot, tmp_path):
    from napari_poregrain.model import new_model, save_checkpoint

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(1).integers(0, 255, (48, 64), np.uint8))
    path = save_checkpoint(new_model("resnet18", name="tiny"), tmp_path / "tiny.safetensors")
    dock = open_dock(viewer, "Segment pores and grains")
    dock.select_model(path)
    assert set(dock._backend.choices) == {"auto", "torch", "onnxruntime"}
    dock._backend.value = "onnxruntime"
    _segment(qtbot, dock, image)
    assert dock._status.value.startswith("Done"), dock._status.value
    assert viewer.layers["grains"].data.shape == (48, 64)


def test_a_stroke_reads_only_its_box_of_a_zarr_partner():
    import zarr

    from napari_poregrain._widgets._brush import values_at

    data = zarr.create_array(store={}, shape=(64, 64), chunks=(16, 16), dtype="uint8")
    data[10:12, 40:43] = 255
    indices = (np.array([10, 11, 11]), np.array([40, 42, 50]))
    np.testing.assert_array_equal(values_at(data, indices), [255, 255, 0])
    np.testing.assert_array_equal(values_at(np.asarray(data), indices), [255, 255, 0])
