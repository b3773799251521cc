"""Tile grids and blending weights for overlapping-tile inference."""

from __future__ import annotations

import numpy as np

MULTIPLE = 16
"""DeepLabV3+ (output stride 16) needs tile sides divisible by this."""


def round_up(n: int, multiple: int = MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def tile_size(length: int, tile: int) -> int:
    """The tile side used along an axis of ``length`` pixels (shrunk for small images)."""
    if tile < MULTIPLE or tile % MULTIPLE:
        raise ValueError(f"tile size must be a multiple of {MULTIPLE} and at least {MULTIPLE}")
    return min(tile, round_up(length))


def overlap_pixels(tile: int, overlap: float) -> int:
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap}")
    return int(round(tile * overlap))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``max(length, tile)`` pixels.

    Consecutive tiles overlap by at least ``overlap`` pixels; the last tile ends
    exactly at the end of the axis.
    """
    span = max(length, tile)
    stride = max(1, tile - overlap)
    starts = list(range(0, span - tile + 1, stride))
    if starts[-1] != span - tile:
        starts.append(span - tile)
    return starts


def blend_window(height: int, width: int, overlap: int) -> np.ndarray:
    """A (height, width) float32 weight that ramps smoothly over ``overlap`` pixels.

    Weights rise as a raised cosine from a small positive floor at the tile
    edges to 1 inside, so overlapping tiles cross-fade without seams while a
    tile edge that lies on the image border still counts.
    """

    def ramp(n: int) -> np.ndarray:
        w = np.ones(n, dtype=np.float32)
        r = min(overlap, n // 2)
        if r > 0:
            t = (np.arange(r, dtype=np.float32) + 0.5) / r
            edge = 0.5 - 0.5 * np.cos(np.pi * t)
            w[:r] = edge
            w[n - r :] = edge[::-1]
        return np.maximum(w, 1e-3)

    return np.outer(ramp(height), ramp(width))
