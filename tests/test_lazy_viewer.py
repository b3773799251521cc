"""Lazy layers in the viewer: the reader's dask levels, Segment into zarr-backed layers without
reading the whole image, block-wise Measure and IoU equal to the NumPy results."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from conftest import plugin_dock

from napari_poregrain import _reader
from napari_poregrain._widgets._iou_history import ReportJob
from napari_poregrain._widgets._lazy import ZarrLabelPair, default_store, open_pair
from napari_poregrain._widgets._measure_job import MeasureJob
from napari_poregrain.analysis import blockwise
from napari_poregrain.analysis.measure import measure
from napari_poregrain.analysis.metrics import ConfusionMatrix, disagreement_map
from napari_poregrain.classes import GRAIN, PORE
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample


class ReadLog:
    """A read-only array that logs each read's pixel count and thread (what a store fetches)."""

    def __init__(self, data) -> None:
        self.data, self.reads = data, []
        self.shape, self.ndim, self.dtype = data.shape, data.ndim, data.dtype
        self.size = int(np.prod(self.shape))

    def __getitem__(self, key):
        out = np.asarray(self.data[key])
        self.reads.append((threading.get_ident(), out.size))
        return out

    def worker_reads(self) -> list[int]:
        main = threading.main_thread().ident
        return [n for ident, n in self.reads if ident != main]


def _big_tiff(path, side: int = 3000, levels: int = 1):
    """A tiled, compressed SEM-like TIFF (``levels`` pyramid levels as SubIFDs)."""
    grey, _ = make_sample((500, 500), seed=3)
    image = np.tile(grey, (side // 500 + 1, side // 500 + 1))[:side, :side]
    with tifffile.TiffWriter(path) as tw:
        options = dict(tile=(256, 256), compression="zlib")
        tw.write(image, subifds=levels - 1, resolution=(1e4, 1e4), **options)
        for i in range(1, levels):
            tw.write(image[:: 2**i, :: 2**i], subfiletype=1, **options)
    return image


# -- the reader ---------------------------------------------------------------------------------
def test_reader_is_lazy_above_the_threshold_with_its_pyramid(tmp_path, monkeypatch):
    image = _big_tiff(tmp_path / "pyr.tif", 1500, levels=3)
    ((data, kwargs, kind),) = _reader.read_sem_tiffs(tmp_path / "pyr.tif")
    assert isinstance(data, np.ndarray)  # 2.25 MP: under LAZY_ABOVE, NumPy as before
    monkeypatch.setattr(_reader, "LAZY_ABOVE", 1 << 20)
    ((levels, kwargs, kind),) = _reader.read_sem_tiffs(tmp_path / "pyr.tif")
    assert kind == "image" and kwargs["multiscale"] and kwargs["metadata"]["lazy"]
    assert [lv.shape for lv in levels] == [(1500, 1500), (750, 750), (375, 375)]
    assert all(isinstance(lv, da.Array) for lv in levels)
    np.testing.assert_array_equal(
        levels[1][100:200, 50:90].compute(), image[::2, ::2][100:200, 50:90]
    )
    assert kwargs["scale"][-1] == pytest.approx(1.0)  # 1e4 px/cm = 1 µm


def test_reader_gives_one_dask_array_without_levels_and_reads_ome_zarr(tmp_path, monkeypatch):
    monkeypatch.setattr(_reader, "LAZY_ABOVE", 1 << 20)
    _big_tiff(tmp_path / "flat.tif", 1100)
    ((data, kwargs, _),) = _reader.read_sem_tiffs(tmp_path / "flat.tif")
    assert isinstance(data, da.Array) and "multiscale" not in kwargs
    root = zarr.open_group(tmp_path / "img.ome.zarr", mode="w", zarr_format=2)
    grey, _ = make_sample((256, 256), seed=4)
    for i in range(2):
        root.create_array(str(i), data=grey[None, :: 2**i, :: 2**i], chunks=(1, 64, 64))
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "nanometer"} for a in "yx"
    ]
    sets = [
        {
            "path": str(i),
            "coordinateTransformations": [{"type": "scale", "scale": [1, 2**i, 2**i]}],
        }
        for i in range(2)
    ]
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": sets}]
    assert _reader.napari_get_reader(str(tmp_path / "img.ome.zarr")) is _reader.read_sem_tiffs
    ((levels, kwargs, _),) = _reader.read_sem_tiffs(tmp_path / "img.ome.zarr")
    assert [lv.shape for lv in levels] == [(256, 256), (128, 128)] and kwargs["multiscale"]
    np.testing.assert_array_equal(levels[0].compute(), grey)


# -- the zarr-backed pair -----------------------------------------------------------------------
def test_label_pair_splits_classes_and_never_replaces_a_store(tmp_path):
    class Layer:
        name, metadata = "a b", {"source_path": str(tmp_path / "a b.tif")}

    first = default_store(Layer())
    assert first == tmp_path / "a_b.poregrain.zarr"
    pair = ZarrLabelPair(first, (5, 7), chunk=4)
    pair.write(1, 2, np.array([[0, 1, 2], [2, 1, 0]], np.uint8))
    arrays = open_pair(first)
    assert arrays[GRAIN][1:3, 2:5].tolist() == [[0, 1, 0], [0, 1, 0]]
    assert arrays[PORE][1:3, 2:5].tolist() == [[0, 0, 1], [1, 0, 0]]
    assert int(arrays[GRAIN][:].sum()) == 2  # unwritten pixels stay 0
    assert default_store(Layer()) == tmp_path / "a_b-2.poregrain.zarr"
    with pytest.raises(FileExistsError):
        ZarrLabelPair(first, (5, 7))


# -- segmenting a lazy layer --------------------------------------------------------------------
@pytest.mark.slow
def test_segment_streams_a_lazy_layer_into_zarr_layers(
    make_napari_viewer, qtbot, tiny_checkpoint, tiny_model, tmp_path, monkeypatch
):
    from napari_poregrain._widgets.segment import SegmentWidget
    from napari_poregrain.inference.predict import predict
    from napari_poregrain.model import MODEL_DIR_ENV

    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    image = _big_tiff(tmp_path / "big.tif", 3000)
    log = ReadLog(zarr.open(tifffile.imread(tmp_path / "big.tif", aszarr=True), mode="r"))
    viewer = make_napari_viewer()
    layer = viewer.add_image(log, name="big", contrast_limits=(0, 255), multiscale=False)
    w = plugin_dock(viewer, SegmentWidget)
    w.select_model(tiny_checkpoint)
    w._tile.value, w._device.value = 512, "cpu"
    w._store.value = tmp_path / "stores"
    w.run()  # the event loop's responsiveness meanwhile: tests/test_gui_responsive.py
    qtbot.waitUntil(lambda: w._task is None, timeout=300_000)
    reads = log.worker_reads()
    assert reads and max(reads) < log.size / 3  # tiles and a strided sample, never the image
    grains, pores = viewer.layers["grains"], viewer.layers["pores"]
    assert isinstance(grains.data, zarr.Array) and isinstance(pores.data, zarr.Array)
    assert str(tmp_path / "stores") in grains.metadata["label_store"]
    expected = predict(image[:1024, :1024], tiny_model, tile=512, device="cpu").labels
    got = np.asarray(grains.data[:1024, :1024]) + 2 * np.asarray(pores.data[:1024, :1024])
    same = got[:900, :900] == expected[:900, :900]
    assert same.mean() > 0.99  # the same network; near-ties may flip
    grains.data_setitem((np.array([5]), np.array([5])), 1)  # napari's edit lands in the store
    assert open_pair(grains.metadata["label_store"])[GRAIN][5, 5] == 1
    assert layer.data is log


# -- block-wise measure and IoU -----------------------------------------------------------------
def _labels_case():
    rng = np.random.default_rng(0)
    _, labels = make_sample((300, 220), seed=5)
    labels = labels.copy()
    labels[rng.random(labels.shape) < 0.02] = 255
    valid = np.zeros(labels.shape, bool)
    valid[20:280, 10:200] = True
    return labels, valid


def test_blockwise_measure_equals_numpy(make_napari_viewer, monkeypatch):
    monkeypatch.setattr(blockwise, "ROWS", 64)  # several bands on a small case
    labels, _ = _labels_case()
    viewer = make_napari_viewer()
    kw = {"scale": (0.005, 0.005), "units": ("micrometer", "micrometer")}
    g = viewer.add_labels((labels == GRAIN).astype(np.uint8), name="grains", **kw)
    p = viewer.add_labels((labels == PORE).astype(np.uint8), name="pores", **kw)
    eager = MeasureJob.from_layers(g, p, min_size=4)(lambda _: None, lambda: False)
    lg = viewer.add_labels(zarr.array(g.data, chunks=(50, 50)), name="lazy grains", **kw)
    lp = viewer.add_labels(da.from_array(p.data, chunks=70), name="lazy pores", **kw)
    job = MeasureJob.from_layers(lg, lp, min_size=4)
    assert isinstance(job.sample.labels, blockwise.PairClassMap)  # not one NumPy map
    lazy = job(lambda _: None, lambda: False)
    assert lazy.class_pixels == eager.class_pixels
    assert lazy.excluded_pixels == eager.excluded_pixels
    assert lazy.fraction("pores") == pytest.approx(eager.fraction("pores"))
    assert "objects" not in lazy.summary  # object tables measured too, joined across bands
    for name, table in eager.objects.items():
        assert len(table["label"]) > 0
        for column, values in table.items():
            np.testing.assert_allclose(lazy.objects[name][column], values, rtol=1e-9, atol=1e-9)
    assert lazy.summary["pores"] == pytest.approx(eager.summary["pores"])


def test_blockwise_confusion_and_disagreement_equal_numpy(monkeypatch):
    monkeypatch.setattr(blockwise, "ROWS", 64)
    labels, valid = _labels_case()
    pred = np.where(labels == 255, 0, labels).astype(np.uint8)
    pred[::7] = (pred[::7] + 1) % 3
    ref = Sample.of_labels(labels, valid=valid, data_bar_row=260)
    cm = ConfusionMatrix().update_sample(ref, pred)
    pair = blockwise.PairClassMap(zarr.array(labels == GRAIN), zarr.array(labels == PORE))
    ignore = zarr.array(labels)  # a lazy class map with its 255s
    lazy_ref = Sample(ignore, labels=ignore, valid=valid, data_bar_row=260)
    report = ReportJob(lazy_ref, prediction=da.from_array(pred, chunks=50))(None, None)
    np.testing.assert_array_equal(report.cm.matrix, cm.matrix)
    assert report.cm.n_images == 1
    expected = disagreement_map(labels, pred, ref.usable_mask())
    np.testing.assert_array_equal(np.asarray(report.disagreement), expected)
    assert (
        blockwise.confusion_blockwise(Sample(pair, labels=pair), pred).total
        == ConfusionMatrix().update(np.where(labels == 255, 0, labels), pred).total
    )


def test_blockwise_bad_input_is_one_sentence():
    both = zarr.array(np.ones((4, 4), np.uint8))
    pair = blockwise.PairClassMap(both, both)
    with pytest.raises(ValueError, match="both grain and pore"):
        blockwise.measure_blockwise(Sample(pair, labels=pair))
    odd = zarr.array(np.full((4, 4), 7, np.uint8))
    with pytest.raises(ValueError, match="outside 0, 1, 2 and 255"):
        blockwise.measure_blockwise(Sample(odd, labels=odd))
    with pytest.raises(ValueError, match="shape"):
        blockwise.confusion_blockwise(Sample(odd, labels=odd), np.zeros((3, 4), np.uint8))


def test_measure_dock_on_lazy_layers_shows_fractions(make_napari_viewer, qtbot):
    from napari_poregrain._widgets.measure import MeasureWidget

    labels, _ = _labels_case()
    viewer = make_napari_viewer()
    kw = {"scale": (0.005, 0.005), "units": ("micrometer", "micrometer")}
    viewer.add_labels(zarr.array((labels == GRAIN).astype(np.uint8)), name="grains", **kw)
    viewer.add_labels(zarr.array((labels == PORE).astype(np.uint8)), name="pores", **kw)
    widget = plugin_dock(viewer, MeasureWidget)
    widget.reset_choices()
    widget.compute()
    qtbot.waitUntil(lambda: widget._task is None, timeout=60000)
    m = widget.measurement
    assert m is not None and m.class_pixels["pores"] == int(np.count_nonzero(labels == PORE))
    eager = measure(Sample.of_labels(labels), min_size=int(widget._min_size.value))
    assert widget.table.rowCount() > 0
    assert len(m.objects["pores"]["label"]) == len(eager.objects["pores"]["label"]) > 0
    assert "objects not measured" not in widget._status.value
    assert widget.colour_by_size() == []  # no object-id images kept: nothing to colour, no error
    assert "cannot be coloured by size" in widget._status.value


def test_iou_with_a_model_on_a_lazy_image_streams_to_zarr(tiny_checkpoint, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the job's store goes there
    grey, labels = make_sample((256, 256), seed=6)
    ref = Sample.of_labels(labels, data_bar_row=240)
    eager = ReportJob(ref, image=Sample(grey), model_path=tiny_checkpoint)(lambda _: None, None)
    lazy_image = Sample(zarr.array(grey, chunks=(64, 64)))
    lazy_ref = Sample(zarr.array(labels), labels=zarr.array(labels), data_bar_row=240)
    job = ReportJob(lazy_ref, image=lazy_image, model_path=tiny_checkpoint)
    assert isinstance(job.predicted(lambda _: None, None), blockwise.PairClassMap)
    report = job(lambda _: None, None)
    np.testing.assert_array_equal(report.cm.matrix, eager.cm.matrix)
    np.testing.assert_array_equal(np.asarray(report.disagreement), eager.disagreement)
    assert list((tmp_path / "napari-poregrain").glob("*.poregrain.zarr"))


class FailingReads(ReadLog):
    """Fails every read after the first ``ok`` (a store whose blocks go missing mid-run)."""

    def __init__(self, data, ok: int) -> None:
        super().__init__(data)
        self.ok = ok

    def __getitem__(self, key):
        if len(self.reads) >= self.ok:
            raise OSError("block 3 of the store cannot be read")
        return super().__getitem__(key)


def test_a_failed_lazy_run_says_why_and_leaves_no_store(
    make_napari_viewer, qtbot, tiny_checkpoint, tmp_path, monkeypatch
):
    from napari_poregrain._widgets.segment import SegmentWidget
    from napari_poregrain.model import MODEL_DIR_ENV

    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    grey, _ = make_sample((600, 600), seed=7)
    viewer = make_napari_viewer()
    data = FailingReads(zarr.array(grey, chunks=(128, 128)), ok=4)
    viewer.add_image(data, name="flaky", contrast_limits=(0, 255), multiscale=False)
    w = plugin_dock(viewer, SegmentWidget)
    w.select_model(tiny_checkpoint)
    w._tile.value, w._device.value, w._store.value = 256, "cpu", tmp_path / "stores"
    w.run()
    qtbot.waitUntil(lambda: w._task is None, timeout=60_000)
    assert "cannot be read" in w._status.value
    assert "grains" not in viewer.layers and "pores" not in viewer.layers
    assert list((tmp_path / "stores").iterdir()) == []  # the partial store is removed
