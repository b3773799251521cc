"""Streaming confusion matrix, per-class IoU and friends over classes 0 matrix / 1 grain / 2 pore.

Rows of the confusion matrix are the reference (truth) class, columns the predicted class.
IoU of class c is ``TP / (TP + FP + FN)`` from the matrix summed over all images (the seed's
definition); a class absent from both reference and prediction has IoU ``None`` and is left out
of the mean.

Ignored pixels: reference values outside 0..2 (``IGNORE = 255`` and anything else) and pixels
outside an optional ``valid`` mask (:meth:`ConfusionMatrix.update_sample` takes it, with the
data bar, from a reference :class:`~napari_poregrain.sample.Sample`). Predictions must hold 0..2
wherever the reference is labelled: a prediction value outside 0..2 there raises ``ValueError``
(a model never produces one, so it means a wrong or foreign file; silently ignoring those pixels
would inflate the scores). Prediction values at ignored pixels are not looked at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..classes import CLASS_NAMES, GRAIN, MATRIX, N_CLASSES, PORE

if TYPE_CHECKING:
    from ..sample import Sample

# Codes of disagreement_map.
_CHUNK = 1 << 22  # pixels per bincount in ConfusionMatrix.update

AGREE = 0
FALSE_GRAIN = 1
MISSED_GRAIN = 2
FALSE_PORE = 3
MISSED_PORE = 4
DISAGREEMENT_NAMES = {
    AGREE: "agree / ignored",
    FALSE_GRAIN: "false grain",
    MISSED_GRAIN: "missed grain",
    FALSE_PORE: "false pore",
    MISSED_PORE: "missed pore",
}
DISAGREEMENT_COLOURS = {
    FALSE_GRAIN: "orange",
    MISSED_GRAIN: "magenta",
    FALSE_PORE: "cyan",
    MISSED_PORE: "blue",
}


def _as_int_array(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"the {what} must be an integer label array, not {arr.dtype}")
    return arr


def _in_range(a: np.ndarray) -> np.ndarray:
    """Boolean mask of the values that are class ids (0..2)."""
    if a.dtype.kind in "bu":
        return a < N_CLASSES
    return (a >= 0) & (a < N_CLASSES)


def _arrays(
    truth: Any, pred: Any, valid: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t = _as_int_array(truth, "reference")
    p = _as_int_array(pred, "prediction")
    if t.shape != p.shape:
        raise ValueError(f"the reference has shape {t.shape} but the prediction {p.shape}")
    v = None
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        if v.shape != t.shape:
            raise ValueError(f"the region mask has shape {v.shape} but the labels {t.shape}")
    return t, p, v


def _checked(
    truth: Any, pred: Any, valid: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays plus the mask of counted pixels; checks shapes and prediction values."""
    t, p, v = _arrays(truth, pred, valid)
    keep = _in_range(t)
    if v is not None:
        keep &= v
    bad = keep & ~_in_range(p)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        values = np.unique(p[bad])[:5].tolist()
        raise ValueError(
            f"the prediction has {n_bad} labelled pixels with values outside 0..2 (e.g. {values})"
        )
    return t, p, keep


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else float(num) / float(den)


class ConfusionMatrix:
    """A 3×3 int64 confusion matrix (rows reference, columns prediction), image by image.

    ``update`` keeps only the counts, so any number of images can be streamed through it.
    """

    def __init__(self) -> None:
        self.matrix = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
        self.n_images = 0

    def update(self, truth: Any, pred: Any, valid: Any | None = None) -> ConfusionMatrix:
        """Add one reference/prediction pair of the same shape (a 3-D pair counts N images).

        ``valid``: optional boolean mask; pixels where it is False are ignored (e.g. a region).
        Returns ``self``.
        """
        t, p, v = _arrays(truth, pred, valid)
        tf, pf = t.reshape(-1), p.reshape(-1)
        vf = None if v is None else v.reshape(-1)
        skip = N_CLASSES * N_CLASSES  # the extra bin of ignored pixels
        counts = np.zeros(skip + 1, np.int64)
        # Bounded temporaries: one chunk of uint8 codes (and bincount's intp copy) at a time.
        for start in range(0, tf.size, _CHUNK):
            tc, pc = tf[start : start + _CHUNK], pf[start : start + _CHUNK]
            keep = _in_range(tc)
            if vf is not None:
                keep &= vf[start : start + _CHUNK]
            if not _in_range(pc)[keep].all():
                _checked(truth, pred, valid)  # raises with the full count
            codes = tc.astype(np.uint8) * np.uint8(N_CLASSES)  # wraps where ignored
            codes += pc.astype(np.uint8)
            codes[~keep] = skip
            counts += np.bincount(codes, minlength=skip + 1)
        self.matrix += counts[:skip].reshape(N_CLASSES, N_CLASSES)
        self.n_images += int(t.shape[0]) if t.ndim == 3 else 1
        return self

    def update_sample(self, truth: Sample, pred: Any) -> ConfusionMatrix:
        """Add a predicted class map scored against a Sample's labels (the reference).

        Only the pixels of ``truth.usable_mask()`` count: the data bar, the region (``valid``)
        and 255 are left out by the Sample. ``pred`` has the Sample's spatial shape; a stack
        Sample counts one image per slice. Returns ``self``.
        """
        if truth.labels is None:
            raise ValueError(f"{truth.name or 'the reference sample'} has no labels to score")
        return self.update(truth.labels, pred, truth.usable_mask())

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of another matrix (e.g. from a parallel worker). Returns ``self``."""
        self.matrix += other.matrix
        self.n_images += other.n_images
        return self

    def reset(self) -> None:
        self.matrix[:] = 0
        self.n_images = 0

    @property
    def total(self) -> int:
        """Number of counted (labelled) pixels."""
        return int(self.matrix.sum())

    def _tp_fp_fn(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tp = np.diag(self.matrix)
        fp = self.matrix.sum(axis=0) - tp
        fn = self.matrix.sum(axis=1) - tp
        return tp, fp, fn

    def per_class_iou(self) -> list[float | None]:
        """IoU per class (index = class id); ``None`` for a class absent from both sides."""
        tp, fp, fn = self._tp_fp_fn()
        return [_ratio(int(tp[c]), int(tp[c] + fp[c] + fn[c])) for c in range(N_CLASSES)]

    def mean_iou(self) -> float | None:
        """Mean of the defined per-class IoUs; ``None`` when no class is defined."""
        ious = [v for v in self.per_class_iou() if v is not None]
        return float(np.mean(ious)) if ious else None

    def pixel_accuracy(self) -> float | None:
        """Correct pixels / counted pixels; ``None`` when nothing was counted."""
        return _ratio(int(np.trace(self.matrix)), self.total)

    def precision(self) -> list[float | None]:
        """TP / (TP + FP) per class; ``None`` where the class was never predicted."""
        tp, fp, _ = self._tp_fp_fn()
        return [_ratio(int(tp[c]), int(tp[c] + fp[c])) for c in range(N_CLASSES)]

    def recall(self) -> list[float | None]:
        """TP / (TP + FN) per class; ``None`` where the class is absent from the reference."""
        tp, _, fn = self._tp_fp_fn()
        return [_ratio(int(tp[c]), int(tp[c] + fn[c])) for c in range(N_CLASSES)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``poregrain evaluate --json`` (``None`` for undefined values)."""
        return {
            "per_class_iou": dict(zip(CLASS_NAMES, self.per_class_iou(), strict=True)),
            "mean_iou": self.mean_iou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "confusion_matrix": self.matrix.tolist(),
            "n_images": self.n_images,
        }

    def summary(self) -> dict[str, Any]:
        """``to_dict()`` plus per-class precision and recall (for tables and CSV history)."""
        out = self.to_dict()
        out["precision"] = dict(zip(CLASS_NAMES, self.precision(), strict=True))
        out["recall"] = dict(zip(CLASS_NAMES, self.recall(), strict=True))
        return out

    def __repr__(self) -> str:
        return f"ConfusionMatrix(n_images={self.n_images}, matrix={self.matrix.tolist()})"


def confusion_matrix(truth: Any, pred: Any, valid: Any | None = None) -> ConfusionMatrix:
    """A :class:`ConfusionMatrix` of one pair."""
    return ConfusionMatrix().update(truth, pred, valid)


def disagreement_map(truth: Any, pred: Any, valid: Any | None = None) -> np.ndarray:
    """uint8 map of where prediction and reference disagree.

    Codes: 0 agree or ignored, 1 false grain, 2 missed grain, 3 false pore, 4 missed pore.
    Precedence: the reference class decides. Where the reference is grain (pore) and the
    prediction is not, the pixel is *missed grain* (*missed pore*) — including reference-pore
    pixels predicted as grain, which are "missed pore", not "false grain". *False grain* /
    *false pore* are reference-matrix pixels predicted as grain / pore. Ignored pixels
    (reference outside 0..2, or outside ``valid``) are 0.
    """
    t, p, keep = _checked(truth, pred, valid)
    out = np.zeros(t.shape, dtype=np.uint8)
    wrong = keep & (t != p)
    out[wrong & (t == MATRIX) & (p == GRAIN)] = FALSE_GRAIN
    out[wrong & (t == MATRIX) & (p == PORE)] = FALSE_PORE
    out[wrong & (t == GRAIN)] = MISSED_GRAIN
    out[wrong & (t == PORE)] = MISSED_PORE
    return out


def format_table(cm: ConfusionMatrix) -> str:
    """A plain-text report like the seed's evaluate.py: per-class IoU lines, then mean IoU."""

    def f(v: float | None) -> str:
        return "   n/a" if v is None else f"{v:.4f}"

    lines = [f"images: {cm.n_images}   labelled pixels: {cm.total}"]
    iou, prec, rec = cm.per_class_iou(), cm.precision(), cm.recall()
    lines.append(f"{'class':<8} {'IoU':>7} {'precision':>10} {'recall':>7}")
    for c, name in enumerate(CLASS_NAMES):
        lines.append(f"{name:<8} {f(iou[c]):>7} {f(prec[c]):>10} {f(rec[c]):>7}")
    lines.append(f"mean IoU: {f(cm.mean_iou())}")
    lines.append(f"pixel accuracy: {f(cm.pixel_accuracy())}")
    lines.append("confusion matrix (rows reference, columns prediction: matrix grain pore):")
    width = max(len(str(int(v))) for v in cm.matrix.flat)
    for c, name in enumerate(CLASS_NAMES):
        row = " ".join(f"{int(v):>{width}}" for v in cm.matrix[c])
        lines.append(f"  {name:<7} {row}")
    return "\n".join(lines)
