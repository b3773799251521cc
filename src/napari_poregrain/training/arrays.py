"""Training on (image, labels) arrays: :func:`train` wraps them in Samples for the Trainer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..model import LoadedModel
from .config import TrainConfig, TrainResult
from .data import samples_from_pairs
from .guards import check_output
from .trainer import Trainer


def train(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig | None = None,
    init: LoadedModel | None = None,
    out_path: str | Path = "model.safetensors",
    *,
    val_pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    names: Sequence[str] | None = None,
    val_names: Sequence[str] | None = None,
    **options,
) -> TrainResult:
    """:class:`Trainer` on (image, labels) arrays: wraps them in Samples and fits.

    The arrays hold only usable rows (no data bar). ``options`` are the Trainer's keywords
    (``progress``, ``should_stop``, ``name``, ``half``, ``provenance``). The config and the
    output are checked first, as the Trainer does, so errors come in the same order.
    """
    (config or TrainConfig()).validate()
    check_output(out_path, init)
    samples = samples_from_pairs(pairs, names)
    val = samples_from_pairs(val_pairs, val_names, "validation image") if val_pairs else None
    return Trainer(samples, config, init, out_path, val_samples=val, **options).fit()
