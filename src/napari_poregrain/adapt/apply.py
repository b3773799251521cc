"""``predict`` for a model with a pixel head: features band by band, the head's classes."""

from __future__ import annotations

import numpy as np
import torch

from ..callbacks import ProgressFn, StopFn, check_stop
from ..sample import Sample
from .features import ImageFeatures

BAND = 1024
"""Rows of one band: the feature stack of a band is all that is held (C x BAND x width)."""


def predict_with_head(
    sample: Sample,
    model,
    *,
    device: str | torch.device = "auto",
    return_confidence: bool = False,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    out=None,
):
    """:func:`~napari_poregrain.inference.predict.predict`'s result for ``model.head``: the
    head over the network's probabilities and the filters, band by band (``out``: a sink fed
    each band, as ``predict`` streams)."""
    from ..inference.predict import Prediction

    n = sample.shape[0] if sample.is_stack else 1
    labels = None if out is not None else np.zeros((n, sample.height, sample.width), np.uint8)
    conf = np.zeros_like(labels) if return_confidence else None
    bands = [(z, y0) for z in range(n) for y0 in range(0, sample.rows, BAND)]
    parts = list(sample.slices())
    for i, (z, y0) in enumerate(bands):
        check_stop(should_stop)
        y1 = min(y0 + BAND, sample.rows)
        f = ImageFeatures.compute(
            parts[z], model, features=model.head.features, device=device, rows=(y0, y1),
            cancel=should_stop,
        )  # fmt: skip
        proba = model.head.predict_proba(f)
        cls = proba.argmax(0).astype(np.uint8)
        if labels is None:
            out.write(y0, 0, cls)
        else:
            labels[z, y0:y1] = cls
        if conf is not None:
            conf[z, y0:y1] = np.rint(proba.max(0) * 255).astype(np.uint8)
        if progress is not None:
            progress(i + 1, len(bands))
    if labels is None:
        return Prediction(None)
    if not sample.is_stack:
        return Prediction(labels[0], None if conf is None else conf[0])
    return Prediction(labels, conf)
