"""Tile grids and blending weights for overlapping-tile inference."""

from __future__ import annotations

import numpy as np

MULTIPLE = 16
"""DeepLabV3+ (output stride 16) needs tile sides divisible by this."""


def round_up(n: int, multiple: int = MULTIPLE) -> int:
    return -(-n // multiple) * multiple


GROWTH = 1.125
"""Tiles may grow up to this factor over the nominal size to avoid one extra row of tiles."""


def check_tile(tile: int) -> None:
    if tile < MULTIPLE or tile % MULTIPLE:
        raise ValueError(f"tile size must be a multiple of {MULTIPLE} and at least {MULTIPLE}")


def overlap_pixels(tile: int, overlap: float) -> int:
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap}")
    return int(round(tile * overlap))


def layout(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Tile side and start offsets covering an axis of ``length`` pixels.

    An axis that fits one tile gets one tile of ``length`` rounded up to a
    multiple of 16 (padded by the caller). Otherwise the fewest tiles of at most
    ``GROWTH * tile`` pixels that overlap by at least ``overlap`` pixels are
    spread evenly, the first starting at 0 and the last ending at ``length``:
    this keeps the extra work of tiling close to the overlap itself instead of
    wasting most of a tile on the last one.
    """
    check_tile(tile)
    if length <= tile:
        return round_up(length), [0]
    largest = int(tile * GROWTH) // MULTIPLE * MULTIPLE
    n = -(-(length - overlap) // (largest - overlap))
    while (side := round_up(-(-(length + (n - 1) * overlap) // n))) > largest:
        n += 1
    if side >= length:
        return round_up(length), [0]
    starts = [round(i * (length - side) / (n - 1)) for i in range(n)]
    return side, starts


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
