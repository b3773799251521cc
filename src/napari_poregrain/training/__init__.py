"""Training and fine-tuning: the recipe (:mod:`.config`), data and crops (:mod:`.data`), the loss
(:mod:`.loss`), validation (:mod:`.validation`), the :class:`Trainer` and training recipes."""

from .arrays import train
from .config import (
    TrainConfig,
    TrainEvent,
    TrainResult,
    finetune_config,
    load_training_log,
    log_path_for,
)
from .trainer import Trainer

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
