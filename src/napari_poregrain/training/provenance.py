"""What a trained checkpoint records about its making: model metadata, parent and recipe."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..model import LoadedModel, ModelMeta
from .config import TrainConfig


def model_meta(
    init: LoadedModel | None, config: TrainConfig, name: str
) -> tuple[ModelMeta, dict | None]:
    """The new model's metadata (empty provenance) and its parent (None: from scratch)."""
    if init is None:
        return ModelMeta(encoder=config.encoder, refine=config.refine, name=name), None
    meta = replace(init.meta, name=name, provenance={})
    parent = {"name": init.meta.name, "encoder": init.meta.encoder}
    if init.path is not None and Path(init.path).is_file():
        parent.update(file=Path(init.path).name, sha256=sha256(Path(init.path)))
    return meta, parent


def recipe_entry(
    config: TrainConfig, total: int, steps_per_epoch: int, warmup: int, device: torch.device
) -> dict:
    """The config as stored in the provenance, with the schedule the run worked out."""
    recipe = asdict(config)
    recipe.update(
        total_steps=total,
        steps_per_epoch=steps_per_epoch,
        warmup=warmup,
        device=str(device),
        loss="cross-entropy + Dice (ignore 255)",
        optimizer="AdamW",
        schedule="warm-up + cosine",
    )
    return recipe


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
