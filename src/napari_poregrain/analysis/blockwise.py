"""Measure's area fractions and the IoU report's confusion matrix, band by band over lazy maps.

For class maps too large to hold (dask or zarr arrays, or a ``grains``/``pores`` pair read by
:class:`PairClassMap`): every function reads :data:`ROWS` rows at a time, so memory is bounded
by one band whatever the image's area. :func:`measure_blockwise` gives the same fractions,
class counts and per-object tables as :func:`.measure.measure` (objects joined across bands by
:mod:`.objects_blockwise`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..callbacks import ProgressFn, StopFn, check_stop
from ..classes import GRAIN, IGNORE, MATRIX, PORE
from ..sample import Sample
from .metrics import ConfusionMatrix, disagreement_map
from .objects_blockwise import BandObjects
from .summary import Measurement, summarize
from .units import choose_unit

ROWS = 2048
"""Rows read at a time (a 60000-pixel-wide band of uint8 is 120 MB)."""


def bands(height: int, rows: int = ROWS) -> Iterator[tuple[int, int]]:
    """``(y0, y1)`` row ranges covering ``height`` rows, ``rows`` at a time."""
    for y0 in range(0, height, rows):
        yield y0, min(y0 + rows, height)


def is_lazy(array: Any) -> bool:
    """True for an array not held in memory (dask, zarr, :class:`PairClassMap`)."""
    return array is not None and not isinstance(array, np.ndarray)


class PairClassMap:
    """The class map (0 matrix / 1 grain / 2 pore) of two 0/non-0 arrays, read on demand.

    Array-like (``shape``, ``dtype``, ``ndim``, NumPy slicing), so ``dask.array.from_array``
    takes it; either array may be None (no pixel of that class). A pixel marked in both raises
    ValueError naming the first such row.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, grains: Any, pores: Any) -> None:
        like = grains if grains is not None else pores
        if like is None:
            raise ValueError("a class map needs a grains or a pores array")
        if grains is not None and pores is not None and grains.shape != pores.shape:
            raise ValueError(
                f"the grains layer has shape {tuple(grains.shape)} but the pores layer "
                f"{tuple(pores.shape)}"
            )
        self.grains, self.pores = grains, pores
        self.shape = tuple(like.shape)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        g = None if self.grains is None else np.asarray(self.grains[key]) != 0
        p = None if self.pores is None else np.asarray(self.pores[key]) != 0
        out = np.full((g if g is not None else p).shape, MATRIX, np.uint8)
        if g is not None:
            out[g] = GRAIN
        if p is not None:
            if g is not None and np.any(g & p):
                row = int(np.nonzero(g & p)[0][0])
                raise ValueError(
                    f"pixels are marked both grain and pore (first in row {row} of the part "
                    f"read); erase them from one layer first"
                )
            out[p] = PORE
        return out


def _checked_2d(sample: Sample) -> Any:
    if sample.labels is None:
        raise ValueError(f"{sample.name or 'the sample'} has no class map (labels) to measure")
    if len(sample.labels.shape) != 2:
        raise ValueError(f"expected a 2-D class map, got shape {tuple(sample.labels.shape)}")
    return sample.labels


def _check_values(band: np.ndarray) -> None:
    bad = ~np.isin(band, (MATRIX, GRAIN, PORE, IGNORE))
    if bad.any():
        values = np.unique(band[bad])[:5].tolist()
        raise ValueError(f"the class map holds values {values} outside 0, 1, 2 and 255")


class _Counts:
    """Pixels of each class in the usable region and pixels excluded for each reason."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("pores", "grains", "matrix"), 0)
        self.excluded = dict.fromkeys(("data_bar", "outside_region", "ignore_255"), 0)

    def add(self, sample: Sample, y0: int, band: np.ndarray) -> None:
        """Count rows ``y0:y0+len(band)`` of the class map (``band``)."""
        _check_values(band)
        y1 = y0 + band.shape[0]
        rows = y1 - y0
        if sample.data_bar_row is not None:
            rows = min(max(sample.data_bar_row - y0, 0), rows)
        self.excluded["data_bar"] += (y1 - y0 - rows) * band.shape[1]
        inside = np.zeros(band.shape, bool)
        inside[:rows] = True
        valid = inside if sample.valid is None else inside & np.asarray(sample.valid[y0:y1])
        self.excluded["outside_region"] += int(np.count_nonzero(inside & ~valid))
        self.excluded["ignore_255"] += int(np.count_nonzero(valid & (band == IGNORE)))
        for name, cls in (("pores", PORE), ("grains", GRAIN), ("matrix", MATRIX)):
            self.counts[name] += int(np.count_nonzero(valid & (band == cls)))


def class_counts(
    sample: Sample, progress: ProgressFn | None = None, should_stop: StopFn | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """Pixels of each class in the usable region and the pixels excluded for each reason."""
    labels = _checked_2d(sample)
    tally = _Counts()
    height = labels.shape[0]
    total = len(range(0, height, ROWS))
    for i, (y0, y1) in enumerate(bands(height)):
        check_stop(should_stop)
        tally.add(sample, y0, np.asarray(labels[y0:y1]))
        if progress is not None:
            progress(i + 1, total)
    return tally.counts, tally.excluded


def _context_band(sample: Sample, labels: Any, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``y0-1 .. y1`` of the class map and their usable mask (outside the image: 255)."""
    lo, hi = max(y0 - 1, 0), min(y1 + 1, labels.shape[0])
    raw = np.asarray(labels[lo:hi])
    keep = sample.usable_mask((lo, hi), raw)
    pad = ((1 - (y0 - lo), 1 - (hi - y1)), (0, 0))
    return np.pad(raw, pad, constant_values=IGNORE), np.pad(keep, pad)


def measure_blockwise(
    sample: Sample,
    *,
    min_size: int = 4,
    unit: str = "auto",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    **_ignored: Any,
) -> Measurement:
    """Area fractions, class counts and per-object tables of a Sample's (lazy) class map.

    The same region rules, columns and labels as :func:`.measure.measure` (region, data bar,
    255 out; objects at least ``min_size`` pixels after joining them across bands), reading
    :data:`ROWS` rows (plus one above and one below) at a time. No object-id images are kept
    (``object_labels`` is empty) and the confidence map is not used.
    """
    labels = _checked_2d(sample)
    if int(min_size) < 1:
        raise ValueError(f"min_size must be at least 1 pixel, not {min_size}")
    tally, objects = _Counts(), BandObjects()
    total = len(range(0, labels.shape[0], ROWS))
    for i, (y0, y1) in enumerate(bands(labels.shape[0], ROWS)):
        check_stop(should_stop)
        classes, keep = _context_band(sample, labels, y0, y1)
        tally.add(sample, y0, classes[1:-1])
        objects.add(classes, keep, y0)
        if progress is not None:
            progress(i + 1, total)
    pixel_nm = None if sample.pixel_size_nm is None else float(sample.pixel_size_nm)
    result = Measurement(
        unit=choose_unit(pixel_nm, unit),
        pixel_size_nm=pixel_nm,
        min_size_px=int(min_size),
        region_pixels=sum(tally.counts.values()),
        class_pixels=tally.counts,
        excluded_pixels=tally.excluded,
        objects={},
        object_labels={},
        source=sample.name,
    )
    result.objects = objects.tables(int(min_size), result.scale)
    result.summary = summarize(result)
    return result


def confusion_blockwise(
    truth: Sample, pred: Any, should_stop: StopFn | None = None
) -> ConfusionMatrix:
    """The confusion matrix of ``pred`` against a Sample's (lazy) labels, band by band.

    Only ``truth``'s usable pixels count (region, data bar, 255), as in
    :meth:`ConfusionMatrix.update_sample`; one image.
    """
    labels = _checked_2d(truth)
    if tuple(pred.shape) != tuple(labels.shape):
        raise ValueError(
            f"the reference has shape {tuple(labels.shape)} but the prediction {tuple(pred.shape)}"
        )
    cm = ConfusionMatrix()
    for y0, y1 in bands(labels.shape[0]):
        check_stop(should_stop)
        t = np.asarray(labels[y0:y1])
        cm.matrix += (
            ConfusionMatrix()
            .update(t, np.asarray(pred[y0:y1]), truth.usable_mask((y0, y1), t))
            .matrix
        )
    cm.n_images = 1
    return cm


def lazy_disagreement(truth: Sample, pred: Any, chunk: int = 1024) -> Any:
    """The disagreement map (see :func:`.metrics.disagreement_map`) as a lazy dask array."""
    import dask.array as da

    labels = _checked_2d(truth)
    t = _as_dask(labels, chunk)
    p = _as_dask(pred, t.chunks)
    return da.map_blocks(_disagreement_block, t, p, truth=truth, dtype=np.uint8)


def _as_dask(array: Any, chunks: Any) -> Any:
    """``array`` as a dask array of ``chunks`` (rechunked when it is one already)."""
    import dask.array as da

    if isinstance(array, da.Array):
        return array.rechunk(chunks)
    return da.from_array(array, chunks=chunks, asarray=False)


def _disagreement_block(t: np.ndarray, p: np.ndarray, truth: Sample, block_info=None):
    """One chunk of :func:`lazy_disagreement`: its usable mask from its place in the image."""
    (y0, y1), (x0, x1) = block_info[0]["array-location"]
    keep = np.ones(t.shape, bool)
    if truth.valid is not None:
        keep &= np.asarray(truth.valid[y0:y1, x0:x1], bool)
    if truth.data_bar_row is not None and truth.data_bar_row < y1:
        keep[max(truth.data_bar_row - y0, 0) :] = False
    return disagreement_map(t, p, keep)
