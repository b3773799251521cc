"""Per-object tables of a lazy class map, band by band, equal to the in-memory ``measure``."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import zarr
from conftest import shared_data
from skimage.measure import label, regionprops_table

from napari_poregrain.analysis import blockwise, objects_blockwise
from napari_poregrain.analysis.measure import analysed_region, measure
from napari_poregrain.analysis.objects_blockwise import BandObjects
from napari_poregrain.classes import GRAIN, IGNORE, PORE
from napari_poregrain.io import read_labels
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample

EXACT = ("label", "area", "equivalent_diameter", "touches_edge", "touches_grain")


class ReadLog:
    """A zarr array that records the rows of every read (what a store would fetch)."""

    def __init__(self, data: np.ndarray, chunks=(64, 64)) -> None:
        self.z = zarr.array(data, chunks=chunks)
        self.shape, self.ndim, self.dtype = data.shape, data.ndim, data.dtype
        self.rows: list[int] = []

    def __getitem__(self, key):
        out = self.z[key]
        self.rows.append(out.shape[0])
        return out


def lazy_measure(sample: Sample, rows: int, monkeypatch, **kw):
    """``measure_blockwise`` of the sample's map held in zarr, ``rows`` rows a band."""
    monkeypatch.setattr(blockwise, "ROWS", rows)
    log = ReadLog(np.asarray(sample.labels))
    result = blockwise.measure_blockwise(replace(sample, labels=log), **kw)
    assert max(log.rows) <= rows + 2  # one band and its two context rows, never the map
    return result


def assert_same_tables(lazy, eager) -> None:
    assert lazy.class_pixels == eager.class_pixels
    assert lazy.excluded_pixels == eager.excluded_pixels
    for name, table in eager.objects.items():
        got = lazy.objects[name]
        assert len(got["label"]) == len(table["label"]), name
        for column, values in table.items():
            if column in EXACT:
                np.testing.assert_array_equal(got[column], values, err_msg=column)
            elif column == "perimeter":  # same windows, other summation order
                np.testing.assert_allclose(got[column], values, rtol=1e-12, err_msg=column)
            else:
                np.testing.assert_allclose(got[column], values, atol=1e-6, err_msg=column)


def synthetic_case(seed: int) -> Sample:
    _, labels = make_sample((256, 256), seed=seed)
    labels = labels.copy()
    labels[np.random.default_rng(seed).random(labels.shape) < 0.01] = IGNORE
    valid = np.zeros(labels.shape, bool)
    valid[12:250, 9:240] = True
    return Sample.of_labels(labels, valid=valid, data_bar_row=236, pixel_size_nm=12.5)


@pytest.mark.parametrize("rows", [16, 23, 32])
@pytest.mark.parametrize("seed", [5, 11])
def test_synthetic_maps_equal_in_memory_tables(seed, rows, monkeypatch):
    sample = synthetic_case(seed)
    eager = measure(sample, min_size=4, keep_labels=True)
    lazy = lazy_measure(sample, rows, monkeypatch, min_size=4)
    crossing = 0  # objects cut by at least one seam
    for ids in eager.object_labels.values():
        box = regionprops_table(ids, properties=("bbox",))
        crossing += int(np.count_nonzero(box["bbox-0"] // rows != (box["bbox-2"] - 1) // rows))
    assert crossing >= 5
    assert_same_tables(lazy, eager)
    assert lazy.unit == eager.unit == "nm"
    assert lazy.summary["pores"] == pytest.approx(eager.summary["pores"], rel=1e-9)


def test_parts_of_a_band_equal_whole_bands(monkeypatch):
    """A wide band is labelled a few rows at a time (``PART_PIXELS``): same tables."""
    monkeypatch.setattr(objects_blockwise, "PART_PIXELS", 1)  # 16-row parts in 64-row bands
    sample = synthetic_case(7)
    assert_same_tables(lazy_measure(sample, 64, monkeypatch), measure(sample))


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("subset", "bar", "least"), [("duvernay-grains", None, 1), ("zeiss-shale-pores", 691, 5)]
)
def test_real_label_crops_equal_in_memory_tables(subset, bar, least, monkeypatch):
    """Real hand labels: duvernay's grains are one large, holed object across every seam."""
    folder = shared_data(subset) / "labels"
    labels = read_labels(sorted(folder.glob("*.png"))[0])[:, :128]
    valid = np.ones(labels.shape, bool)
    valid[:, :5] = False
    valid[100:140, 60:90] = False  # a hole in the region
    sample = Sample.of_labels(labels, valid=valid, data_bar_row=bar)
    eager = measure(sample, min_size=1)
    assert sum(len(t["label"]) for t in eager.objects.values()) >= least
    assert_same_tables(lazy_measure(sample, 24, monkeypatch, min_size=1), eager)


def u_shapes() -> np.ndarray:
    """A U whose arms meet only below the seam at row 32, a ∩ split by it, a diagonal link."""
    labels = np.zeros((64, 48), np.uint8)
    labels[10:40, 4:7] = PORE  # left arm of the U, crossing the seam
    labels[10:40, 14:17] = PORE  # right arm
    labels[37:40, 4:17] = PORE  # the base, below the seam only
    labels[20:34, 24:40] = GRAIN  # the ∩: top in band 0 ...
    labels[34:50, 24:28] = GRAIN  # ... two legs in band 1
    labels[34:50, 36:40] = GRAIN
    labels[28:32, 44] = PORE  # ends in the last row of band 0 ...
    labels[32:36, 45] = PORE  # ... continues diagonally in band 1
    labels[31, 20] = labels[32, 21] = PORE  # 2 pixels joined diagonally across the seam
    return labels


def test_objects_joined_across_seams_like_skimage(monkeypatch):
    labels = u_shapes()
    eager = measure(Sample.of_labels(labels), min_size=1)
    assert len(eager.objects["pores"]["label"]) == 3
    assert len(eager.objects["grains"]["label"]) == 1
    lazy = lazy_measure(Sample.of_labels(labels), 32, monkeypatch, min_size=1)
    assert_same_tables(lazy, eager)
    # min_size after merging: the 2-pixel diagonal pair is kept at 2, dropped at 3
    two = lazy_measure(Sample.of_labels(labels), 32, monkeypatch, min_size=2)
    assert 2 in two.objects["pores"]["area"]
    three = lazy_measure(Sample.of_labels(labels), 32, monkeypatch, min_size=3)
    assert 2 not in three.objects["pores"]["area"]
    assert len(three.objects["pores"]["label"]) == 2


def test_merged_bounding_boxes_and_centroids_equal_regionprops():
    labels = u_shapes()
    keep, _ = analysed_region(labels)
    objects = BandObjects()
    for y0, y1 in blockwise.bands(labels.shape[0], 16):
        classes, mask = blockwise._context_band(Sample.of_labels(labels), labels, y0, y1)
        objects.add(classes, mask, y0)
    merged = objects.merged()
    for cls in (PORE, GRAIN):
        props = regionprops_table(
            label((labels == cls) & keep, connectivity=2), properties=("bbox", "centroid")
        )
        of = merged["cls"] == cls
        np.testing.assert_array_equal(merged["ymin"][of], props["bbox-0"])
        np.testing.assert_array_equal(merged["xmin"][of], props["bbox-1"])
        np.testing.assert_array_equal(merged["ymax"][of] + 1, props["bbox-2"])
        np.testing.assert_array_equal(merged["xmax"][of] + 1, props["bbox-3"])
        np.testing.assert_allclose(merged["cy"][of], props["centroid-0"], atol=1e-9)


@pytest.mark.parametrize(
    "labels",
    [
        np.zeros((5, 4), np.uint8),  # no object
        np.full((5, 4), IGNORE, np.uint8),  # nothing analysed
        np.array([[PORE, PORE, 0, GRAIN]], np.uint8),  # one row
        np.array([[PORE], [PORE], [GRAIN], [PORE], [PORE], [PORE], [0]], np.uint8),  # one column
        np.full((7, 7), PORE, np.uint8),  # one object filling every band
    ],
)
def test_degenerate_maps(labels, monkeypatch):
    for bar in (None, 1):
        sample = Sample.of_labels(labels, data_bar_row=bar)
        lazy = lazy_measure(sample, 3, monkeypatch, min_size=1)
        assert_same_tables(lazy, measure(sample, min_size=1))
    with pytest.raises(ValueError, match="min_size must be at least 1"):
        blockwise.measure_blockwise(sample, min_size=0)


def tiled_map(height: int) -> np.ndarray:
    """A ``height`` x 4096 class map: one synthetic 256² tile repeated (objects cross tiles)."""
    _, tile = make_sample((256, 256), seed=3)
    return np.tile(tile, (height // 256, 16))


def peak_bytes(labels: np.ndarray, monkeypatch) -> int:
    monkeypatch.setattr(blockwise, "ROWS", 64)
    lazy = zarr.array(labels, chunks=(64, 4096))
    tracemalloc.start()
    blockwise.measure_blockwise(Sample(lazy, labels=lazy))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_peak_memory_is_a_band_not_the_map(monkeypatch):
    small, large = tiled_map(1024), tiled_map(4096)
    p_small, p_large = peak_bytes(small, monkeypatch), peak_bytes(large, monkeypatch)
    # 4x the rows and objects: the peak grows by the object statistics only
    assert p_large < 1.3 * p_small
    assert p_large < large.nbytes  # below the uint8 map itself (16 MiB)
