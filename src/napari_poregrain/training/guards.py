"""Checks a run makes before it writes anything, its notes, and the seeded RNG it runs in."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..classes import CLASS_NAMES, N_CLASSES
from .config import log_path_for

MIN_LABELLED_SIDE = 16
"""The labelled area of the training images must span at least this many pixels each way."""


def check_output(out_path: str | Path, init, resuming: bool = False) -> Path:
    """``out_path`` as a Path; ValueError/FileExistsError unless it and its log are new (or
    ``resuming``: the resumed run's own)."""
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise ValueError(f"{out_path}: a model file must end in .safetensors")
    if init is not None and init.path is not None:
        if out_path.resolve() == Path(init.path).resolve():
            raise ValueError(f"{out_path} is the starting model; choose another output name")
    for p in (out_path, log_path_for(out_path)):
        if p.exists() and not resuming:
            raise FileExistsError(f"{p} already exists; choose another name")
    return out_path


def class_counts(label_maps: Sequence[np.ndarray]) -> np.ndarray:
    """Labelled pixels of each class over all the maps."""
    counts = np.zeros(N_CLASSES, np.int64)
    for labels in label_maps:
        counts += np.bincount(labels.ravel(), minlength=256)[:N_CLASSES]
    return counts


def check_labels(label_maps: Sequence[np.ndarray]) -> list[str]:
    """ValueError unless the labels hold two classes over a large enough area; the notes.

    A class with no labelled pixel is allowed (e.g. a rock without pores) and named in the
    returned notes.
    """
    counts = class_counts(label_maps)
    present = [CLASS_NAMES[c] for c in range(N_CLASSES) if counts[c]]
    if len(present) == 1:
        raise ValueError(
            f"the labels hold only {present[0]} pixels; label at least two classes so the "
            "model can learn to tell them apart"
        )
    span = max((_labelled_span(labels) for labels in label_maps), default=0)
    if span < MIN_LABELLED_SIDE:
        raise ValueError(
            f"the labelled area is under {MIN_LABELLED_SIDE} pixels across; label a larger area"
        )
    return [
        f"no {CLASS_NAMES[c]} pixel is labelled, so the model learns nothing new about "
        f"{CLASS_NAMES[c]}"
        for c in range(N_CLASSES)
        if not counts[c]
    ]


def _labelled_span(labels: np.ndarray) -> int:
    """The smaller side of the bounding box of the labelled pixels (0: none)."""
    rows = np.flatnonzero((labels < N_CLASSES).any(axis=1))
    cols = np.flatnonzero((labels < N_CLASSES).any(axis=0))
    if not rows.size:
        return 0
    return int(min(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


@contextlib.contextmanager
def deterministic(device: torch.device, seed: int):
    """Seed torch (restoring the caller's RNG afterwards); deterministic kernels on the CPU."""
    devices = [device.index or 0] if device.type == "cuda" else []
    was = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was, warn_only=warn)
