"""The adaptation protocol of ``finetune.py --heads``: heads over features vs the network.

Per case (the same corrected pixels for every method): zero-shot; a random forest (scikit-learn,
ilastik's method) on the filter bank alone and on filters + the network's probabilities; the
shipped head (``adapt.head.fit_head``); the two-stage fine-tune (``adapt.two_stage``, whatever
it saved); the network fine-tune alone (``training.Trainer``). Per-class IoU and seconds. Also
the live refit: features cached, a head fitted on ~200k pixels, a 1024² window predicted.
"""

from __future__ import annotations

import time

import numpy as np

from napari_poregrain.adapt.features import ImageFeatures
from napari_poregrain.adapt.head import _balanced, fit_head
from napari_poregrain.adapt.two_stage import two_stage
from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.inference.predict import predict
from napari_poregrain.sample import Sample

FOREST_TREES = 50


def features_of(samples: list[Sample], model, device: str) -> list[ImageFeatures]:
    return [ImageFeatures.compute(s, model, device=device) for s in samples]


def iou_of(preds: list[np.ndarray], samples: list[Sample]) -> list[float | None]:
    """Per-class IoU of usable-row predictions over the Samples' labelled pixels."""
    cm = ConfusionMatrix()
    for p, s in zip(preds, samples, strict=True):
        full = np.zeros(s.shape, np.uint8)
        full[: s.rows] = p
        cm.update_sample(s, full)
    present = cm.matrix.sum(axis=1) > 0
    return [v if present[c] else None for c, v in enumerate(cm.per_class_iou())]


def _strokes(sample: Sample) -> np.ndarray:
    return sample.content(sample.masked_labels())


def forest(train_f, labels, test_f, with_network: bool, seed: int = 0):
    """A random forest on the same balanced pixels as the head; predictions and seconds."""
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    x, y = _balanced(train_f, labels, 200_000, np.random.default_rng(seed))
    cols = slice(None) if with_network else slice(0, x.shape[1] - 3)
    rf = RandomForestClassifier(FOREST_TREES, n_jobs=2, min_samples_leaf=2, random_state=seed)
    rf.fit(x[:, cols].astype(np.float32), y)
    preds = []
    for f in test_f:
        flat = f.array.reshape(f.array.shape[0], -1)[cols].T.astype(np.float32)
        preds.append(rf.predict(flat).reshape(f.shape).astype(np.uint8))
    return preds, time.perf_counter() - t0


def run_case(case, start, device: str, network_row, cfg=None) -> list[dict]:
    """Every method on one case; ``network_row(case)``: today's fine-tune row (finetune.py)."""
    corr, scored = case.correction, case.scored
    t0 = time.perf_counter()
    train_f = features_of([corr], start, device)
    t_feat = time.perf_counter() - t0
    test_f = features_of(scored, start, device)
    rows = [_row(case, "zero-shot", [f.array[-3:].argmax(0) for f in test_f], 0.0)]
    for net in (False, True):
        preds, sec = forest(train_f, [_strokes(corr)], test_f, net)
        name = "forest: filters + network" if net else "forest: filters"
        rows.append(_row(case, name, preds, sec + t_feat))
    t0 = time.perf_counter()
    head = fit_head(train_f, _strokes(corr))
    rows.append(_row(case, "head (shipped)", [head.predict(f) for f in test_f],
                     time.perf_counter() - t0 + t_feat))  # fmt: skip
    t0 = time.perf_counter()
    result = two_stage([corr], start, config=cfg, device=device)
    sec = time.perf_counter() - t0
    preds = [predict(s, result.model, device=device).labels[: s.rows] for s in scored]
    row = _row(case, "two-stage (saved)", preds, sec)
    row.update(stage=result.stage, val_scores=result.scores, stage_seconds=result.seconds)
    rows.append(row)
    net = network_row(case)
    rows.append({"case": case.name, "method": "network fine-tune", "seconds": net["seconds"],
                 "iou": net["tuned"], "iou_per_class": net["tuned_iou"]})  # fmt: skip
    return rows


def _row(case, method: str, preds, seconds: float) -> dict:
    iou = iou_of(preds, case.scored)
    return {
        "case": case.name,
        "method": method,
        "seconds": round(seconds, 1),
        "iou": "/".join("-" if v is None else f"{v:.2f}" for v in iou),
        "iou_per_class": iou,
    }


def live_refit(start, device: str, repeats: int = 3) -> dict:
    """Seconds of a live refit: a head on 200k of a 1024² image's pixels + a 1024² window."""
    from napari_poregrain.synthetic import make_sample

    image, truth = make_sample((1024, 1024), seed=77)
    feats = ImageFeatures.compute(Sample(image), start, device=device)
    labels = np.full(truth.shape, 255, np.uint8)
    labels[::2, ::2] = truth[::2, ::2]  # 262k labelled pixels: the 200k cap applies
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        head = fit_head(feats, labels)
        t1 = time.perf_counter()
        head.predict(feats, (0, 0, 1024, 1024))
        times.append((t1 - t0, time.perf_counter() - t1))
    fit, pred = (float(np.median(v)) for v in zip(*times, strict=True))
    return {"fit_s": round(fit, 2), "predict_1024_s": round(pred, 2),
            "total_s": round(fit + pred, 2), "repeats": repeats}  # fmt: skip
