"""Corrected pixels: where the user's labels differ from the starting model's prediction.

A correction carries more information than an accepted prediction, so when fine-tuning a
share of the crops (``TrainConfig.focus``) is centred on corrected pixels, and their loss can
weigh more (``TrainConfig.focus_weight``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..classes import N_CLASSES

_MAX_CENTRES = 250_000  # candidate crop centres kept per image


def corrected_map(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """True where a labelled pixel's class differs from the prediction."""
    return (labels < N_CLASSES) & (labels != predicted)


class Corrections:
    """Crop centres on the corrected pixels of regions (``region.corrected``; None: none)."""

    def __init__(self, regions: Sequence) -> None:
        self.centres: list[np.ndarray] = []
        counts = []
        for r in regions:
            idx = np.zeros(0, np.int64) if r.corrected is None else np.flatnonzero(r.corrected)
            counts.append(idx.size)
            if idx.size > _MAX_CENTRES:
                idx = idx[:: int(math.ceil(idx.size / _MAX_CENTRES))]
            self.centres.append(idx)
        self.total = int(sum(counts))
        self.region_p = np.asarray(counts, float) / max(self.total, 1)

    def pick(self, rng: np.random.Generator) -> tuple[int, int]:
        """A region index and a flat pixel index of one of its corrected pixels."""
        j = int(rng.choice(len(self.centres), p=self.region_p))
        idx = self.centres[j]
        return j, int(idx[rng.integers(idx.size)])
