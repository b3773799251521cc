"""The work behind the Live mode (:mod:`._live`): features, refits, accepted pixels, regions.

Jobs are called as ``job(emit, should_stop)`` in a background task; the helpers read layers on
the GUI thread and hand arrays over.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..classes import GRAIN, IGNORE, PORE
from ..sample import Sample
from ._layers import labels_from_layers, layer_pixels

LIVE_STEPS = 200
"""Optimiser steps of a live refit (the saved head takes the engine's default): a preview
within seconds of a stroke; measured in benchmarks/live.py."""
REGION_BOX = 256
REGIONS = 5
WHOLE_IMAGE_RANKED = 1 << 24
"""Images up to this many pixels are ranked whole for "where next"; larger: the preview window."""


class FeaturesJob:
    """Load the starting model and compute the image's feature stack."""

    def __init__(self, sample: Sample, model_path: Path, key: tuple) -> None:
        self.sample, self.model_path, self.key = sample, model_path, key

    def __call__(self, emit, should_stop):
        from ..adapt.features import ImageFeatures
        from ..model import load_checkpoint

        model = load_checkpoint(self.model_path)
        features = ImageFeatures.compute(self.sample, model, cancel=should_stop)
        return self.key, features


class RefitJob:
    """Fit the head on the painted pixels; its classes over ``window``."""

    def __init__(self, features, labels: np.ndarray, window: tuple[int, int, int, int]) -> None:
        self.features, self.labels, self.window = features, labels, window

    def __call__(self, emit, should_stop) -> dict:
        from ..adapt.head import fit_head

        start = time.perf_counter()
        head = fit_head(self.features, self.labels, steps=LIVE_STEPS)
        labels = head.predict(self.features, self.window)
        return {
            "window": self.window,
            "labels": np.asarray(labels, np.uint8),
            "head": head,
            "pixels": int(np.count_nonzero(self.labels != IGNORE)),
            "seconds": time.perf_counter() - start,
        }


class RegionsJob:
    """The head's most uncertain boxes, most informative first."""

    def __init__(self, features, head, window=None) -> None:
        self.features, self.head, self.window = features, head, window

    def __call__(self, emit, should_stop) -> list:
        from ..adapt.regions import rank_regions

        rows, width = self.features.shape
        window = None if rows * width <= WHOLE_IMAGE_RANKED else self.window
        proba = self.head.predict_proba(self.features, window)
        boxes = rank_regions(proba, box=REGION_BOX, k=REGIONS)
        y, x = (0, 0) if window is None else window[:2]
        return [(y0 + y, x0 + x, y1 + y, x1 + x) for y0, x0, y1, x1 in boxes]


def painted_labels(grains, pores, painted: np.ndarray | None) -> np.ndarray | None:
    """The pair's classes where the user painted, 255 elsewhere; None when nothing painted.

    The un-painted prediction enters the head only through the network's probabilities.
    """
    if painted is None or not painted.any():
        return None
    classes = labels_from_layers(layer_pixels(grains), layer_pixels(pores))
    return np.where(painted, classes, IGNORE).astype(np.uint8)


def accepted_pixels(preview: dict, grains, pores, painted: np.ndarray | None) -> list:
    """``[(indices, values)]`` for grains and pores: the preview's classes over its window,
    leaving every painted pixel as it is (only pixels that change are listed)."""
    y0, x0, y1, x1 = preview["window"]
    pred = preview["labels"]
    keep = np.zeros(pred.shape, bool) if painted is None else painted[y0:y1, x0:x1]
    out = []
    for layer, cls in ((grains, GRAIN), (pores, PORE)):
        now = np.asarray(layer_pixels(layer)[y0:y1, x0:x1])
        target = (pred == cls).astype(now.dtype)
        change = ~keep & (now != target)
        ys, xs = np.nonzero(change)
        out.append(((ys + y0, xs + x0), target[ys, xs]))
    return out


class TwoStageJob:
    """The Fine-tune button in Live mode: the head, then the network distilled from it
    (:func:`..adapt.two_stage.two_stage`), on the painted pixels; the best candidate saved."""

    def __init__(self, samples: list[Sample], model_path: Path, out: Path, config) -> None:
        self.samples, self.model_path, self.out, self.config = samples, model_path, out, config

    def describe(self) -> str:
        return f"Live fine-tune of {self.model_path.stem}: head, then network → {self.out.stem}…"

    def __call__(self, emit, should_stop) -> TwoStageOutcome:
        from ..adapt.two_stage import two_stage
        from ..model import load_checkpoint, save_checkpoint

        start = load_checkpoint(self.model_path)
        result = two_stage(
            self.samples, start, config=self.config, progress=emit, should_stop=should_stop
        )
        if result.stage == "zero-shot":
            text = "No candidate beat the starting model: nothing was saved."
            return TwoStageOutcome(None, text)
        path = save_checkpoint(result.model, self.out, exclusive=True)
        return TwoStageOutcome(path, f"Saved {path.stem}: {result.message}.")


class TwoStageOutcome:
    """What a Live fine-tune saved (``path`` None: nothing) and its sentence."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.path, self.text = path, text


def painted_samples(samples: list[Sample], grains, pores, painted) -> list[Sample]:
    """The pair's Samples with only the painted pixels labelled (a 2-D image)."""
    labels = painted_labels(grains, pores, painted)
    if labels is None:
        raise ValueError("paint some strokes first (Live mode learns from painted pixels)")
    return [s.with_labels(labels) for s in samples]
