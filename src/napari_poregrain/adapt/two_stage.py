"""Fine-tuning in two stages from one correction: the head in seconds, then the network.

Stage 1 fits the pixel head on the painted pixels. Stage 2 trains the network (the
:class:`~napari_poregrain.training.Trainer`, :func:`~napari_poregrain.training.finetune_config`)
on the head's confident dense prediction plus the strokes, then refits the head over the new
network. A held-out block of each correction scores every candidate — the starting model
(zero-shot), start + head, the new network, new network + head — and the best is kept (a tie
keeps the simpler), so the result is never worse than zero-shot on those pixels.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..analysis.metrics import ConfusionMatrix
from ..callbacks import StopFn
from ..classes import IGNORE
from ..model import LoadedModel, load_checkpoint
from ..sample import Sample
from .features import ImageFeatures
from .head import MIN_PIXELS, PixelHead, _balanced, fit_head

CONFIDENT = 0.9
"""Head probability above which a pixel becomes a pseudo-label for the network."""
VAL_FRACTION = 0.2
CANDIDATES = ("zero-shot", "head", "network", "network+head")


@dataclass
class TwoStageResult:
    """``model``: what to save (``model.head`` None when no head won); ``stage``: which
    candidate it is; ``scores``: validation mean IoU per candidate; ``seconds`` per stage."""

    model: LoadedModel
    stage: str
    scores: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in self.scores.items() if v is not None)
        return f"saved {self.stage} (validation mean IoU: {shown})"


class _Image:
    """One corrected 2-D image: its strokes split into a fitting part and a held-out block."""

    def __init__(self, sample: Sample) -> None:
        from ..training.data import _split_block

        self.sample = sample
        self.labels = sample.content(sample.masked_labels())
        self.fit = self.labels.copy()
        self.val = np.full_like(self.labels, IGNORE)
        if np.count_nonzero(self.labels != IGNORE) < 4 * MIN_PIXELS:
            return
        t, v, _ = _split_block(self.labels, VAL_FRACTION)
        if _classes(self.labels[t]) == _classes(self.labels):  # the fit part keeps every class
            self.fit[v] = IGNORE
            self.val[v] = self.labels[v]


def _classes(labels: np.ndarray) -> set[int]:
    return set(np.unique(labels).tolist()) - {IGNORE}


def two_stage(
    samples: Sequence[Sample],
    start: LoadedModel,
    *,
    config=None,
    head_only: bool = False,
    device: str = "auto",
    progress=None,
    should_stop: StopFn | None = None,
    seed: int = 0,
) -> TwoStageResult:
    """Learn ``samples``' labels (255 unlabelled) from ``start``: see the module docstring.

    ``config``: the network stage's TrainConfig (default ``finetune_config()``); ``progress``
    gets the Trainer's events. ValueError (one sentence) for a correction the head refuses.
    """
    images = [_Image(s) for sample in samples for s in sample.slices()]
    t0 = time.perf_counter()
    feats = [ImageFeatures.compute(i.sample, start, device=device) for i in images]
    _balanced(feats, [i.labels for i in images], 3 * MIN_PIXELS, np.random.default_rng(0))
    head = _fit_part(feats, images, seed)
    scores = {"zero-shot": _score(feats, images, None), "head": _score(feats, images, head)}
    result = TwoStageResult(start, "zero-shot", scores, {"head": time.perf_counter() - t0})
    if not any(np.any(i.val != IGNORE) for i in images):
        result.notes.append("too few labelled pixels to hold a block out: scored on the fit")
    tuned = None
    if not head_only:
        t1 = time.perf_counter()
        job = (config, device, progress, should_stop)
        tuned = _network_stage(images, feats, head, start, job)
        if tuned is not None:
            feats2 = [ImageFeatures.compute(i.sample, tuned, device=device) for i in images]
            head2 = _fit_part(feats2, images, seed)
            scores["network"] = _score(feats2, images, None)
            scores["network+head"] = _score(feats2, images, head2)
        else:
            result.notes.append("the network stage did not beat the starting network")
        result.seconds["network"] = time.perf_counter() - t1
    return _chosen(result, images, start, tuned, feats if tuned is None else feats2, seed)


def _fit_part(feats, images: list[_Image], seed: int) -> PixelHead:
    """A head on the fitting part of the strokes (all of them when nothing is held out)."""
    held = any(np.any(i.val != IGNORE) for i in images)
    return fit_head(feats, [i.fit if held else i.labels for i in images], seed=seed)


def _score(feats, images: list[_Image], head: PixelHead | None) -> float | None:
    """Mean IoU over the held-out strokes (all strokes when none is held out)."""
    cm = ConfusionMatrix()
    held = any(np.any(i.val != IGNORE) for i in images)
    for f, img in zip(feats, images, strict=True):
        truth = img.val if held else img.labels
        if head is None:
            pred = f.array[-3:].argmax(0).astype(np.uint8)
        else:
            pred = head.predict(f)
        cm.update(truth, pred, truth != IGNORE)
    return cm.mean_iou()


def _network_stage(images, feats, head, start, job):
    """The network trained on the head's confident prediction plus the strokes (fit part),
    validated on the held-out strokes; None when it never beat ``start``."""
    from ..training import Trainer, finetune_config

    train, val = [], []
    for f, img in zip(feats, images, strict=True):
        proba = head.predict_proba(f)
        pseudo = np.where(proba.max(0) >= CONFIDENT, proba.argmax(0), IGNORE).astype(np.uint8)
        pseudo[img.val != IGNORE] = IGNORE  # the held-out block stays unseen
        pseudo = np.where(img.fit != IGNORE, img.fit, pseudo)
        train.append(_with_rows(img.sample, pseudo))
        if np.any(img.val != IGNORE):
            val.append(_with_rows(img.sample, img.val))
    config, device, progress, should_stop = job
    cfg = config or finetune_config(device=device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            train, replace(cfg, val_fraction=0.0) if val else cfg, start,
            Path(tmp) / "stage2.safetensors", val_samples=val or None,
            progress=progress, should_stop=should_stop,
        )  # fmt: skip
        result = trainer.fit()
        return load_checkpoint(result.path) if result.improved and result.path else None


def _with_rows(sample: Sample, labels: np.ndarray) -> Sample:
    """``sample`` labelled with ``labels`` over its usable rows (255 below)."""
    full = np.full(sample.shape, IGNORE, np.uint8)
    full[: sample.rows] = labels
    return sample.with_labels(full)


def _chosen(result, images, start, tuned, feats, seed) -> TwoStageResult:
    """The best-scoring candidate (ties: the first of :data:`CANDIDATES`), its head refitted
    on every stroke."""
    best = max(
        (c for c in CANDIDATES if result.scores.get(c) is not None),
        key=lambda c: (result.scores[c], -CANDIDATES.index(c)),
    )
    net = start if best in ("zero-shot", "head") or tuned is None else tuned
    head = None
    if best.endswith("head"):
        if best == "head" and tuned is not None:
            feats = [ImageFeatures.compute(i.sample, start) for i in images]
        head = fit_head(feats, [i.labels for i in images], seed=seed)
    result.model = replace(net, head=head)
    result.stage = best
    return result
