"""Strokes as the user makes them: every pixel under the brush, changed or not.

napari's ``paint`` event lists only the pixels a stroke changed, so a stroke that repaints the
predicted class (it *confirms* it) would leave no trace. :class:`StrokeTracker` follows the
mouse on a class layer in paint or erase mode and reports the brush's footprint along the drag
(a disc of ``brush_size`` at each position, interpolated between positions).
"""

from __future__ import annotations

import numpy as np

from ._layers import spatial_shape

PAINT_MODES = ("paint", "erase")


class StrokeTracker:
    """A mouse-drag callback that calls ``record(layer, indices)`` with each stroke's pixels."""

    def __init__(self, record) -> None:
        self.record = record

    def attach(self, layer) -> None:
        """Follow strokes on ``layer`` (once)."""
        if self.drag not in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.append(self.drag)

    def drag(self, layer, event):
        """napari's generator protocol: press, then moves until release."""
        if str(layer.mode) not in PAINT_MODES or layer.ndim != 2:
            return
        last = self._point(layer, event)
        self._footprint(layer, last, last)
        yield
        while event.type == "mouse_move":
            point = self._point(layer, event)
            self._footprint(layer, last, point)
            last = point
            yield

    @staticmethod
    def _point(layer, event) -> np.ndarray:
        return np.asarray(layer.world_to_data(event.position)[-2:], float)

    def _footprint(self, layer, a: np.ndarray, b: np.ndarray) -> None:
        indices = stroke_pixels(a, b, float(layer.brush_size), spatial_shape(layer)[-2:])
        if len(indices[0]):
            self.record(layer, indices)


def stroke_pixels(a, b, size: float, shape) -> tuple[np.ndarray, np.ndarray]:
    """Pixels within ``size / 2`` of the segment ``a``-``b`` (row, column) inside ``shape``."""
    radius = max(size / 2.0, 0.5)
    lo = np.floor(np.minimum(a, b) - radius).astype(int)
    hi = np.ceil(np.maximum(a, b) + radius).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(hi <= lo):
        return np.array([], int), np.array([], int)
    ys, xs = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    p = np.stack([ys, xs], -1).astype(float)
    d = b - a
    t = np.clip(((p - a) @ d) / max(float(d @ d), 1e-12), 0, 1)
    dist = np.linalg.norm(p - (a + t[..., None] * d), axis=-1)
    keep = dist <= radius
    return ys[keep], xs[keep]
