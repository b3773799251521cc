"""Stacks in Segment: the slice the viewer shows is predicted first and shown as soon as it is
done, then the other slices (no Qt: tested without a viewer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..sample import Sample

if TYPE_CHECKING:
    from ..inference.predict import Prediction


@dataclass(frozen=True)
class SliceDone:
    """Progress payload: slice ``z`` of a stack is segmented (``labels``: its class map)."""

    z: int
    labels: np.ndarray
    confidence: np.ndarray | None = None


class OffsetProgress:
    """``progress(done, total)`` of slice number ``k`` of ``n`` emitted as stack-wide ``(done,
    total)`` payloads."""

    def __init__(self, emit: Callable[[Any], None], k: int, n: int) -> None:
        self.emit, self.k, self.n = emit, k, n

    def __call__(self, done: int, total: int) -> None:
        self.emit((self.k * total + done, self.n * total))


def slice_order(n: int, first: int) -> list[int]:
    """The slices of a stack of ``n``: ``first`` (clipped to the stack), then the others."""
    first = min(max(int(first), 0), n - 1)
    return [first, *(z for z in range(n) if z != first)]


def predict_stack(
    sample: Sample, model, emit, should_stop, first: int = 0, **options
) -> Prediction:
    """Segment a (Z, Y, X) Sample slice by slice, ``first`` first; after each slice emit a
    :class:`SliceDone` (the first one lets the viewer show that slice at once)."""
    from ..inference.predict import Prediction, predict  # torch: in the worker, not at import

    n = sample.shape[0]
    parts = list(sample.slices())
    labels = np.zeros((n, sample.height, sample.width), np.uint8)
    conf = np.zeros_like(labels) if options.get("return_confidence") else None
    for k, z in enumerate(slice_order(n, first)):
        ticks = OffsetProgress(emit, k, n)
        part = predict(parts[z], model, progress=ticks, should_stop=should_stop, **options)
        labels[z] = part.labels
        if conf is not None:
            conf[z] = part.confidence
        emit(SliceDone(z, part.labels, part.confidence))
    return Prediction(labels, conf)


def partial_stack(shape: tuple[int, ...], done: SliceDone) -> np.ndarray:
    """A class map of the whole stack holding only the slice of ``done`` (the rest 0: matrix)."""
    out = np.zeros(shape, np.uint8)
    out[done.z] = done.labels
    return out
