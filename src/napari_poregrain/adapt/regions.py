"""Where to correct next: the boxes where the head is least sure, most informative first."""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]
"""``(y0, x0, y1, x1)``."""


def uncertainty(proba: np.ndarray) -> np.ndarray:
    """(H, W) normalised entropy in [0, 1] of (C, H, W) class probabilities."""
    p = np.clip(np.asarray(proba, np.float32), 1e-6, 1.0)
    return -(p * np.log(p)).sum(0) / np.log(p.shape[0])


def rank_regions(proba: np.ndarray, box: int = 256, k: int = 5) -> list[Box]:
    """The ``k`` boxes (a grid of ``box``-sided cells, half-cell steps, none overlapping a
    better one by more than half) of highest mean entropy, most uncertain first."""
    if proba.ndim != 3 or proba.shape[0] < 2:
        raise ValueError(f"expected (classes, H, W) probabilities, got shape {proba.shape}")
    if box < 1 or k < 1:
        raise ValueError("the box side and the number of regions must be positive")
    u = uncertainty(proba)
    h, w = u.shape
    bh, bw = min(box, h), min(box, w)
    integral = np.pad(u.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = _starts(h, bh)
    xs = _starts(w, bw)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    sums = (
        integral[y0 + bh, x0 + bw]
        - integral[y0, x0 + bw]
        - integral[y0 + bh, x0]
        + integral[y0, x0]
    )
    picked: list[Box] = []
    for i in np.argsort(-sums, axis=None, kind="stable"):
        cand = (int(y0.flat[i]), int(x0.flat[i]), int(y0.flat[i]) + bh, int(x0.flat[i]) + bw)
        if all(_overlap(cand, b) <= 0.5 * bh * bw for b in picked):
            picked.append(cand)
            if len(picked) == k:
                break
    return picked


def _starts(n: int, side: int) -> np.ndarray:
    step = max(1, side // 2)
    starts = list(range(0, n - side + 1, step))
    if starts[-1] != n - side:
        starts.append(n - side)
    return np.array(starts)


def _overlap(a: Box, b: Box) -> int:
    dy = min(a[2], b[2]) - max(a[0], b[0])
    dx = min(a[3], b[3]) - max(a[1], b[1])
    return max(dy, 0) * max(dx, 0)
