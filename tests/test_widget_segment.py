import numpy as np
import pytest
from conftest import plugin_dock

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
    w = plugin_dock(viewer, SegmentWidget)
    viewer.window.add_dock_widget(w)
    return viewer, w


def _segment(qtbot, w):
    w.run()
    qtbot.waitUntil(lambda: w._task is None, timeout=120_000)


def test_without_a_model_it_asks_for_a_checkpoint(make_napari_viewer, tmp_path, monkeypatch):
    import napari_poregrain.registry as registry

    monkeypatch.setattr(registry, "DEFAULT_MODEL_PATH", tmp_path / "none.safetensors")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    w = plugin_dock(make_napari_viewer(), SegmentWidget)
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


# -- stacks: the slice the viewer shows comes first ---------------------------------------------
def _stack(n: int = 3, shape=(96, 128)) -> np.ndarray:
    from napari_poregrain.synthetic import make_sample

    return np.stack([make_sample(shape, seed=10 + z)[0] for z in range(n)])


def test_predict_stack_does_the_first_slice_first_and_equals_predict(tiny_model):  # no Qt
    from napari_poregrain._widgets._stack import SliceDone, predict_stack, slice_order
    from napari_poregrain.sample import Sample

    assert slice_order(4, 2) == [2, 0, 1, 3] and slice_order(3, 9) == [2, 0, 1]
    stack = _stack()
    payloads = []
    result = predict_stack(Sample(stack), tiny_model, payloads.append, None, first=1, tile=64)
    order = [p.z for p in payloads if isinstance(p, SliceDone)]
    assert order == [1, 0, 2]
    ticks = [p for p in payloads if isinstance(p, tuple)]
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)  # the bar only moves forward
    assert ticks[-1][0] == ticks[-1][1] and len({t for _, t in ticks}) == 1
    expected = predict(stack, tiny_model, tile=64).labels
    np.testing.assert_array_equal(result.labels, expected)


class SliceWatch:
    """Runs the dock's own progress handler, then notes after each finished slice: (slice, how
    many class layers exist, the slices they hold data in); ``cancel``: cancel after the first."""

    def __init__(self, dock, viewer, cancel: bool = False) -> None:
        self.handle, self.dock, self.viewer, self.cancel = dock.on_progress, dock, viewer, cancel
        self.seen: list[tuple[int, int, set[int]]] = []
        dock.on_progress = self

    def __call__(self, payload) -> None:
        from napari_poregrain._widgets._stack import SliceDone

        self.handle(payload)
        if not isinstance(payload, SliceDone):
            return
        names = [n for n in ("grains", "pores") if n in self.viewer.layers]
        filled = {
            z for n in names for z, part in enumerate(self.viewer.layers[n].data) if part.any()
        }
        self.seen.append((payload.z, len(names), filled))
        if self.cancel:
            self.dock.cancel()


def test_a_stack_shows_the_current_slice_before_the_others(
    make_napari_viewer, qtbot, tiny_checkpoint, tiny_model, tmp_path, monkeypatch
):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    stack = _stack()
    expected = predict(stack, tiny_model, tile=64).labels
    assert all(expected[z].any() for z in range(3))  # every slice has grains or pores
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="fib", scale=(2.0, 1.0, 1.0))
    viewer.dims.set_current_step(0, 2)  # the viewer shows slice 2
    w = plugin_dock(viewer, SegmentWidget)
    w.select_model(tiny_checkpoint)
    w._tile.value = 64
    watch = SliceWatch(w, viewer)
    _segment(qtbot, w)
    assert [z for z, _, _ in watch.seen] == [2, 0, 1]
    assert watch.seen[0][1:] == (2, {2})  # both layers at once, the other slices still empty
    np.testing.assert_array_equal(viewer.layers["grains"].data, (expected == 1).astype(np.uint8))
    np.testing.assert_array_equal(viewer.layers["pores"].data, (expected == 2).astype(np.uint8))
    assert not any(ly.name.startswith(("grains (kept", "pores (kept")) for ly in viewer.layers)
    assert w._status.value.startswith("Done")


def test_cancel_after_the_shown_slice_says_what_the_layers_hold(
    make_napari_viewer, qtbot, tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    viewer = make_napari_viewer()
    viewer.add_image(_stack(), name="fib")
    assert viewer.dims.current_step[0] == 1  # napari opens a stack at its middle slice
    w = plugin_dock(viewer, SegmentWidget)
    w.select_model(tiny_checkpoint)
    w._tile.value = 64
    SliceWatch(w, viewer, cancel=True)
    _segment(qtbot, w)
    assert w._status.value == "Cancelled: the layers hold slice 1 only."
    grains = viewer.layers["grains"].data
    assert grains[0].max() == 0 and grains[2].max() == 0
