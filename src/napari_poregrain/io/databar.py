"""Finding the burned-in data bar at the bottom of an SEM image (row statistics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..preprocess import to_grey

# Data-bar heuristic thresholds (fractions of a row's pixels sharing one grey level).
BAR_ROW_DOMINANCE = 0.5  # every bar row (text rows included) is at least this uniform
BAR_SOLID_DOMINANCE = 0.75  # the bar's top row and its median row are at least this uniform
BAR_EDGE_DOMINANCE = 0.95  # some bar rows (between text lines) are nearly flat
BAR_MIN_FRACTION = 0.02  # plausible bar height, as a fraction of the image height
BAR_MAX_FRACTION = 0.30
BLOCK_PIXELS = 1 << 21  # pixels read at a time (a bounded block of rows)
BLOCK_ROWS = 256


def detect_data_bar(
    image: Any, scan_rows: int | None = None, rgb: bool | None = None
) -> int | None:
    """First row of the burned-in data bar at the bottom of ``image``, or None.

    ``scan_rows`` (from metadata, e.g. FEI ``ResolutionY``) gives the answer exactly when it is
    smaller than the image height. Otherwise a row-statistics heuristic: a band of rows each
    dominated by one grey level, contiguous from the bottom (a few stray rows allowed), that starts
    with a sharp edge below image content, 2-30% of the image height. Stacks use
    their first plane; colour is turned grey by :func:`~napari_poregrain.preprocess.to_grey`.
    ``image`` may be lazy (zarr, dask): rows are read in bounded blocks from the bottom up, only
    as far as the bar's band of flat rows reaches, and never copied whole.
    """
    if not hasattr(image, "ndim"):
        image = np.asarray(image)
    if rgb is None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    while image.ndim > (3 if rgb else 2):
        image = image[0]
    shape = image.shape[:2] if rgb else image.shape
    if len(shape) != 2 or shape[0] < 8 or shape[1] < 8:
        return None
    height = shape[0]
    if scan_rows is not None and 0 < scan_rows < height:
        return int(scan_rows)
    return _bar_top(_RowReader(image, rgb).dominance_from_bottom())


class _RowReader:
    """Per-row dominance of an image read in blocks of rows (grey, quantised to 256 levels)."""

    def __init__(self, image: Any, rgb: bool) -> None:
        self.image, self.rgb = image, rgb
        self.height, self.width = image.shape[0], image.shape[1]
        self.block = max(8, min(BLOCK_ROWS, BLOCK_PIXELS // max(1, self.width)))
        self.levels: tuple[float, float] | None = None
        if not (not rgb and image.dtype == np.uint8):
            self.levels = self._range()

    def rows(self, r0: int, r1: int) -> np.ndarray:
        part = self.image[r0:r1]
        return to_grey(part, rgb=True) if self.rgb else np.asarray(part)

    def _range(self) -> tuple[float, float]:
        """Finite min and max over the whole image, one block of rows at a time."""
        lo, hi = np.inf, -np.inf
        for r0 in range(0, self.height, self.block):
            g = self.rows(r0, r0 + self.block).astype(np.float64, copy=False)
            g = g[np.isfinite(g)]
            if g.size:
                lo, hi = min(lo, float(g.min())), max(hi, float(g.max()))
        return lo, hi

    def dominance_from_bottom(self) -> np.ndarray:
        """Row dominance, filled from the bottom up until the bar's flat run is closed.

        Rows not read stay 0 (not flat); they lie above a gap that ends the run, so the
        heuristic's answer is the same as on the whole image.
        """
        dom = np.zeros(self.height)
        slack = max(3, self.height // 40)
        start = self.height
        while start > 0:
            r0 = max(0, start - self.block)
            dom[r0:start] = row_dominance(self.rows(r0, start), levels=self.levels)
            start = r0
            if _run_closed(dom >= BAR_ROW_DOMINANCE, start, slack):
                break
        return dom


def _run_closed(flat: np.ndarray, start: int, slack: int) -> bool:
    """True when rows above ``start`` cannot change the flat run that ends at the bottom."""
    height = len(flat)
    bottom = height - 1
    while bottom >= height - slack and not flat[bottom]:
        bottom -= 1
    if bottom < height - slack:
        return bottom >= start  # no bar, decided by rows already read
    return _flat_run_top(flat, bottom, slack) - slack - 1 >= start


def _bar_top(dominance: np.ndarray) -> int | None:
    """The data bar's first row from the rows' dominance, or None when there is no bar."""
    height = len(dominance)
    flat = dominance >= BAR_ROW_DOMINANCE
    solid = dominance >= BAR_SOLID_DOMINANCE
    slack = max(3, height // 40)  # stray rows below the bar / text rows inside it
    bottom = height - 1
    while bottom >= height - slack and not flat[bottom]:
        bottom -= 1
    if bottom < height - slack:
        return None
    run_top = _flat_run_top(flat, bottom, slack)
    # The bar starts with a sharp edge: a mostly flat row right below a row of image content.
    tops = [r for r in range(max(run_top, 1), bottom) if not flat[r - 1] and solid[r]]
    if not tops:
        return None
    top = tops[0]
    if not BAR_MIN_FRACTION * height <= height - top <= BAR_MAX_FRACTION * height:
        return None
    bar = dominance[top : bottom + 1]
    if np.median(bar) < BAR_SOLID_DOMINANCE or not (bar >= BAR_EDGE_DOMINANCE).any():
        return None
    return int(top)


def _flat_run_top(flat: np.ndarray, bottom: int, slack: int) -> int:
    """Top row of the run of flat rows ending at ``bottom``, allowing ``slack`` stray rows."""
    run_top, gap = bottom, 0
    for r in range(bottom - 1, -1, -1):
        if flat[r]:
            run_top, gap = r, 0
        else:
            gap += 1
            if gap > slack:
                break
    return run_top


def row_dominance(
    grey: np.ndarray, tolerance: int = 2, levels: tuple[float, float] | None = None
) -> np.ndarray:
    """Per row, the largest fraction of pixels within ``tolerance`` of one grey level.

    Levels are the 256 steps of uint8; other dtypes are scaled from ``levels`` (min, max: by
    default the array's own finite range) first. The tolerance absorbs JPEG ringing and noise
    in flat areas.
    """
    grey = np.asarray(grey)
    h, w = grey.shape
    if grey.dtype == np.uint8 and levels is None:
        q = grey
    else:
        g = grey.astype(np.float64)
        finite = np.isfinite(g)
        if levels is None:
            if not finite.any():
                return np.ones(h)
            levels = float(g[finite].min()), float(g[finite].max())
        lo, hi = levels
        if not hi > lo:
            return np.ones(h)
        q = np.where(finite, np.round((g - lo) / (hi - lo) * 255), 0).astype(np.uint8)
    offsets = (np.arange(h, dtype=np.int64) * 256)[:, None]
    counts = np.bincount((q.astype(np.int64) + offsets).ravel(), minlength=256 * h)
    counts = counts.reshape(h, 256)
    if tolerance > 0:
        cum = np.pad(np.cumsum(counts, axis=1), ((0, 0), (tolerance + 1, tolerance)), mode="edge")
        cum[:, : tolerance + 1] = 0
        counts = cum[:, 2 * tolerance + 1 :] - cum[:, : -2 * tolerance - 1]
    return counts.max(axis=1) / w
