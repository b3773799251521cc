"""Validation: a network scored on labelled regions, tiled and blended exactly as ``predict``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..analysis.metrics import ConfusionMatrix
from ..callbacks import StopFn
from ..classes import IGNORE
from ..inference.device import default_batch
from ..inference.tiling import Plan, blend_tiles, make_plan, padded
from ..preprocess import Normalization
from .data import Region, unit_to_input


class RegionScore:
    """Confusion matrix and summed negative log-likelihood over the labelled pixels seen."""

    def __init__(self) -> None:
        self.cm = ConfusionMatrix()
        self.nll = 0.0
        self.count = 0

    def add(self, truth: np.ndarray, probs: torch.Tensor) -> None:
        """Score class probabilities ``probs`` (C, h, w) against ``truth`` (h, w)."""
        self.cm.update(truth, probs.argmax(0).numpy().astype(np.uint8))
        keep = torch.from_numpy(truth != IGNORE)
        target = torch.from_numpy(truth.astype(np.int64))
        p_true = probs.gather(0, torch.where(keep, target, 0)[None])[0][keep]
        self.nll += float(-torch.log(p_true.clamp_min(1e-7)).sum())
        self.count += int(keep.sum())

    @property
    def mean_nll(self) -> float:
        return self.nll / max(self.count, 1)


class _RegionTiles:
    """The tile inputs of one region and the sink that scores its blended blocks."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, plan: Plan, score: RegionScore):
        self.x, self.labels, self.plan, self.score = x, labels, plan, score

    def tile_input(self, y0: int, x0: int) -> np.ndarray:
        part = self.x[y0 : y0 + self.plan.tile_h, x0 : x0 + self.plan.tile_w]
        return padded(part, self.plan.tile_h, self.plan.tile_w)

    def sink(self, y0: int, x0: int, sums: torch.Tensor, weights: torch.Tensor) -> None:
        h, w = weights.shape
        self.score.add(self.labels[y0 : y0 + h, x0 : x0 + w], sums / weights)


def _tiled(net, regions, norm, device, dtype, tile, should_stop, tiles_for) -> list:
    """Run ``net`` over the tiles of each region as ``predict`` does; modes restored after.

    ``tiles_for(region, x, plan)`` gives a region's tile source and sink (None: skip it).
    """
    modes = [(m, m.training) for m in net.modules()]  # e.g. frozen BatchNorm stays frozen
    net.eval()
    out = []
    try:
        for r in regions:
            x = unit_to_input(torch.from_numpy(r.u), norm).numpy()
            plan = make_plan(
                net, device, dtype or torch.float32, *x.shape, tile=tile,
                batch_size=default_batch(device),
            )  # fmt: skip
            tiles = tiles_for(r, x, plan)
            if tiles is not None:
                blend_tiles(tiles.tile_input, x.shape, plan, tiles.sink, should_stop=should_stop)
                out.append(tiles)
    finally:
        for m, mode in modes:
            m.training = mode
    return out


class _Scored:
    """Makes the scoring tiles of labelled regions (a picklable callable, no closure)."""

    def __init__(self) -> None:
        self.score = RegionScore()

    def __call__(self, r: Region, x: np.ndarray, plan: Plan) -> _RegionTiles | None:
        if not (r.labels != IGNORE).any():
            return None
        return _RegionTiles(x, r.labels, plan, self.score)


def evaluate_regions(
    net: nn.Module,
    regions: Sequence[Region],
    norm: Normalization,
    device: torch.device,
    *,
    dtype: torch.dtype | None = None,
    tile: int = 512,
    should_stop: StopFn | None = None,
) -> tuple[ConfusionMatrix, float]:
    """Confusion matrix and mean cross-entropy of ``net`` over labelled validation pixels.

    Regions are tiled and blended exactly as ``predict`` does, under autocast to ``dtype``
    (None: float32). Train/eval modes of ``net``'s modules are restored afterwards.
    """
    scored = _Scored()
    _tiled(net, regions, norm, device, dtype, tile, should_stop, scored)
    return scored.score.cm, scored.score.mean_nll


class _RegionLabels(_RegionTiles):
    """The tiles of one region, blended into the predicted labels."""

    def __init__(self, r: Region, x: np.ndarray, plan: Plan) -> None:
        super().__init__(x, np.empty(0), plan, RegionScore())
        self.out = np.zeros(x.shape, np.uint8)

    def sink(self, y0: int, x0: int, sums: torch.Tensor, weights: torch.Tensor) -> None:
        h, w = weights.shape
        self.out[y0 : y0 + h, x0 : x0 + w] = sums.argmax(0).numpy()


@torch.inference_mode()
def predict_regions(net: nn.Module, regions: Sequence[Region], norm, device, **options) -> list:
    """``net``'s labels (0/1/2) of each region, tiled and blended as ``predict`` does.

    ``options``: ``dtype``, ``tile`` and ``should_stop``, as for :func:`evaluate_regions`.
    """
    dtype, tile = options.get("dtype"), options.get("tile", 512)
    tiles = _tiled(
        net, regions, norm, device, dtype, tile, options.get("should_stop"), _RegionLabels
    )
    return [t.out for t in tiles]


def truth_class_mean(cm) -> float | None:
    """Mean IoU over the classes that have pixels in the reference (None when none has)."""
    present = cm.matrix.sum(axis=1) > 0
    values = [v for v, p in zip(cm.per_class_iou(), present, strict=True) if p and v is not None]
    return float(np.mean(values)) if values else None
