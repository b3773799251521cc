"""Training and fine-tuning: the recipe (:mod:`.config`), data and crops (:mod:`.data`), the loss
(:mod:`.loss`), validation (:mod:`.validation`), the :class:`Trainer` and training recipes."""

from .config import (
    TrainConfig,
    TrainEvent,
    TrainResult,
    finetune_config,
    load_training_log,
    log_path_for,
)


def __getattr__(name: str):
    """``train`` and ``Trainer`` import torch: loaded on first use, so the recipe types
    (and the Fine-tune dock) import without it."""
    if name == "train":
        from .arrays import train

        return train
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "Trainer",
    "finetune_config",
    "load_training_log",
    "log_path_for",
    "train",
]
