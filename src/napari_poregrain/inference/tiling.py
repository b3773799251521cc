"""Overlapping-tile inference: tile grids, blend weights, the plan, streamed blending, padding.

:func:`blend_tiles` runs the tiles row by row, left to right, blends the class
probabilities of overlapping tiles with smooth weights and hands each block that
no later tile touches to a sink at once: ``predict`` turns blocks into classes,
training's validation scores them. Besides one tile of sums, only a band as high
as the overlap and as wide as the image is held, so memory stays far below the
uint8 output however large the image is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..callbacks import StopFn, check_stop
from ..classes import N_CLASSES
from .device import default_batch, default_tile, forward
from .options import DEFAULT_OVERLAP, MULTIPLE


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
    if largest - overlap <= 0:  # the CLI refuses this at parse time; the API says why
        raise ValueError(f"an overlap of {overlap} px leaves no step between tiles of {tile} px")
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
    return np.outer(_ramp(height, overlap), _ramp(width, overlap))


def _ramp(n: int, overlap: int) -> np.ndarray:
    w = np.ones(n, dtype=np.float32)
    r = min(overlap, n // 2)
    if r > 0:
        t = (np.arange(r, dtype=np.float32) + 0.5) / r
        edge = 0.5 - 0.5 * np.cos(np.pi * t)
        w[:r] = edge
        w[n - r :] = edge[::-1]
    return np.maximum(w, 1e-3)


@dataclass
class Plan:
    """How an image of a given size is cut into tiles and run (see :func:`make_plan`)."""

    net: torch.nn.Module
    device: torch.device
    dtype: torch.dtype | None
    tile_h: int
    tile_w: int
    ys: list[int]
    xs: list[int]
    window: torch.Tensor
    batch_size: int


def make_plan(
    net: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    rows: int,
    width: int,
    tile: int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int | None = None,
) -> Plan:
    """The tile grid, blend window and batch for a ``rows`` x ``width`` image.

    ``dtype``: autocast precision (None or float32: none); ``tile`` defaults to
    :func:`~.device.default_tile`, ``batch_size`` to :func:`~.device.default_batch`.
    """
    tile = tile or default_tile(device)
    ov = overlap_pixels(tile, overlap)
    (th, ys), (tw, xs) = layout(rows, tile, ov), layout(width, tile, ov)
    return Plan(
        net=net,
        device=device,
        dtype=dtype,
        tile_h=th,
        tile_w=tw,
        ys=ys,
        xs=xs,
        window=torch.from_numpy(blend_window(th, tw, ov)),
        batch_size=batch_size or default_batch(device),
    )


TileFn = Callable[[int, int], np.ndarray]
"""``(y0, x0) -> (tile_h, tile_w)`` float32 network input of the tile starting there."""
BlockFn = Callable[[int, int, torch.Tensor, torch.Tensor], None]
"""``(y0, x0, sums (C, h, w), weights (h, w))``: a final block; probabilities = sums / weights."""


def blend_tiles(
    tile_input: TileFn,
    shape: tuple[int, int],
    plan: Plan,
    sink: BlockFn,
    tick: Callable[[int], None] | None = None,
    should_stop: StopFn | None = None,
) -> None:
    """Run every tile of ``plan`` and hand blended, final blocks of the image to ``sink``.

    Tiles run left to right within a row of tiles, rows top to bottom. Columns
    left of the next tile's start are final within the row: their top rows (above
    the next tile row) go to ``sink`` at once, their bottom rows join a
    full-width ``band`` that the next tile row adds in. Only one tile of sums
    and that band are ever held. Blocks are clipped to ``shape``.
    """
    th, tw, ys, xs = plan.tile_h, plan.tile_w, plan.ys, plan.xs
    rows, width = shape
    span_w = max(width, tw)
    band = torch.zeros((N_CLASSES, 0, span_w))  # sums carried into this tile row's top rows
    band_w = torch.zeros((0, span_w))
    for j, y0 in enumerate(ys):
        final = th if j == len(ys) - 1 else ys[j + 1] - y0  # rows no later tile row touches
        new_band = torch.zeros((N_CLASSES, th - final, span_w))
        new_band_w = torch.zeros((th - final, span_w))
        acc = torch.zeros((N_CLASSES, th, tw))  # sums for columns x .. x + tw of the tile at x
        wsum = torch.zeros((th, tw))
        filled = 0  # leading columns of acc already holding earlier tiles' sums
        for k in range(0, len(xs), plan.batch_size):
            check_stop(should_stop)
            chunk = xs[k : k + plan.batch_size]
            batch = torch.from_numpy(np.stack([tile_input(y0, x) for x in chunk]))[:, None]
            probs = forward(plan.net, batch, plan.device, plan.dtype)
            for i, (x, p) in enumerate(zip(chunk, probs)):
                keep = band.shape[1]
                acc[:, :keep, filled:] += band[:, :, x + filled : x + tw]
                wsum[:keep, filled:] += band_w[:, x + filled : x + tw]
                acc += p * plan.window
                wsum += plan.window
                nxt = k + i + 1
                done = (xs[nxt] - x) if nxt < len(xs) else tw  # columns now final
                h, w = min(final, rows - y0), min(done, width - x)
                if h > 0 and w > 0:
                    sink(y0, x, acc[:, :h, :w], wsum[:h, :w])
                new_band[:, :, x : x + done] = acc[:, final:, :done]
                new_band_w[:, x : x + done] = wsum[final:, :done]
                filled = tw - done
                acc[:, :, :filled] = acc[:, :, done:].clone()
                acc[:, :, filled:] = 0
                wsum[:, :filled] = wsum[:, done:].clone()
                wsum[:, filled:] = 0
            if tick is not None:
                tick(len(chunk))
        band, band_w = new_band, new_band_w


def padded(x: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Reflection-pad a 2-D array at the bottom and right to ``(th, tw)``."""
    pad = ((0, th - x.shape[0]), (0, tw - x.shape[1]))
    if pad[0][1] or pad[1][1]:
        x = np.pad(x, pad, mode="reflect" if min(x.shape) > 1 else "edge")
    return x
