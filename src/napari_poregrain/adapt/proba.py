"""The network's blended class probabilities over a band of a Sample (tiled inference)."""

from __future__ import annotations

import numpy as np
import torch

from ..callbacks import StopFn
from ..classes import CLASS_NAMES
from ..inference.backend import resolve_backend
from ..inference.device import LentModel
from ..inference.predict import _SliceJob
from ..inference.tiling import blend_tiles, make_plan
from ..model import LoadedModel
from ..sample import Sample

CONTEXT_ROWS = 128
"""Rows of context above and below a band, so the network sees what the whole image shows."""


class _ProbaJob(_SliceJob):
    """A slice job that keeps the blended probabilities (float16) instead of the classes."""

    def write(self, y0: int, x0: int, sums: torch.Tensor, weights: torch.Tensor) -> None:
        h, w = weights.shape
        self.labels[:, y0 : y0 + h, x0 : x0 + w] = (sums / weights).numpy()


def network_proba(
    sample: Sample,
    model: LoadedModel,
    rows: tuple[int, int],
    intensity: tuple[float, float],
    device: torch.device,
    cancel: StopFn | None = None,
) -> np.ndarray:
    """(3, y1 - y0, width) float16 probabilities of the usable rows ``y0:y1`` of ``sample``.

    ``intensity``: the whole image's (low, high) stretch, so a band is normalised as the image.
    """
    y0, y1 = rows
    a, b = max(y0 - CONTEXT_ROWS, 0), min(y1 + CONTEXT_ROWS, sample.rows)
    band = Sample(sample.content()[a:b], rgb=sample.rgb, name=sample.name)
    out = np.empty((len(CLASS_NAMES), b - a, sample.width), np.float16)
    engine = resolve_backend("auto", device, "auto")  # the same exact backend as predict
    with LentModel(model.net, device) as net:
        plan = make_plan(engine.network(net), device, engine.dtype, b - a, sample.width)
        job = _ProbaJob(band, plan, model.meta.normalization, out, None, intensity)
        blend_tiles(job.tile_input, (b - a, sample.width), plan, job.write, None, cancel)
    return out[:, y0 - a : y1 - a]
