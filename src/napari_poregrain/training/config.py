"""What a training run is told and what it reports: the recipe, events, the result, the CSV log."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..inference.options import MULTIPLE
from ..io.atomic import atomic_write_bytes

DEFAULT_STEPS = 300
"""Optimisation steps when a config gives neither ``steps`` nor ``epochs``."""
MIN_STEPS_PER_EPOCH = 10
MAX_BAD_STEPS = 20
"""Training stops with an error after this many steps in a row with a non-finite loss."""


@dataclass
class TrainConfig:
    """The training recipe (stored in the checkpoint's provenance)."""

    crop: int = 256
    """Side of the square training crops (a multiple of 16)."""
    batch: int = 4
    steps: int | None = None
    """Total optimisation steps; give this or ``epochs`` (neither: ``DEFAULT_STEPS``)."""
    epochs: int | None = None
    steps_per_epoch: int | None = None
    """Steps between validations; None: enough crops to cover the labelled area once (>= 10)."""
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int | None = None
    """Linear warm-up steps; None: a tenth of the run, at most 200."""
    min_lr_ratio: float = 0.01
    """The cosine decay ends at ``lr * min_lr_ratio``."""
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    """Mixed precision: bf16 (or fp16 with loss scaling) on CUDA, bf16 on CPUs with native bf16
    (about 2x the crops per second of fp32 there); other CPUs run fp32."""
    val_fraction: float = 0.2
    """Without explicit validation pairs: the share of each image's labelled pixels held out."""
    patience: int | None = 10
    """Stop after this many epochs without a better validation score (None: never)."""
    encoder: str = "resnet18"
    """Encoder of a model trained from scratch (ignored when fine-tuning)."""
    refine: bool = True
    """From scratch: add the full-resolution refinement head (ignored when fine-tuning)."""
    class_balance: float = 0.75
    """Probability that a crop centre's class is drawn uniformly rather than by frequency."""
    flip: bool = True
    rotate90: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.15
    contrast: float = 0.2
    gamma: float = 0.2
    noise: float = 0.03
    """Standard deviation of the added Gaussian noise (stretched intensities span 0..1)."""
    freeze_bn: bool = False
    """Keep BatchNorm statistics fixed (useful when fine-tuning with tiny batches)."""
    num_workers: int = 0
    eval_tile: int = 512
    ema: float = 0.0
    """Decay of an exponential moving average of the weights, which is validated and saved
    instead of the raw weights (0: off). Steadies long runs; e.g. 0.995 for 2,000+ steps."""
    focus: float = 0.0
    """Fine-tuning: share of crops centred on a corrected pixel (labels differ from the starting
    model's prediction); the rest are drawn class-balanced. 0: off."""
    focus_weight: float = 1.0
    """Fine-tuning: loss weight of corrected pixels (1: same as the others)."""
    encoder_lr: float = 1.0
    """The encoder's learning rate as a fraction of ``lr`` (decoder and head get ``lr``)."""
    freeze_encoder: int = 0
    """Fine-tuning: steps at the start during which the encoder's weights are not updated."""
    mix: float = 1.0
    """Fine-tuning: share of the fine-tuned weights in the model validated and saved; the rest
    is the starting model's (weight-space interpolation, :mod:`.averaging`). 1: off."""
    distill: float = 0.0
    """From a starting model: weight of the term keeping predictions close to its own
    (:mod:`.distill`, learning without forgetting). 0: off."""
    distill_labelled: float = 1.0
    """Weight of that term on labelled pixels (unlabelled ones: 1); 0: only where unlabelled."""

    def validate(self) -> None:
        """Raise ValueError naming the first unusable setting."""
        for problem in (self._run_problem(), self._sampling_problem(), self._other_problem()):
            if problem:
                raise ValueError(problem)

    def _run_problem(self) -> str | None:
        if self.crop < 2 * MULTIPLE or self.crop % MULTIPLE:
            return f"the crop size must be a multiple of 16 and at least 32, not {self.crop}"
        if self.batch < 1:
            return f"the batch size must be at least 1, not {self.batch}"
        if self.steps is not None and self.epochs is not None:
            return "give the number of steps or of epochs, not both"
        for name in ("steps", "epochs", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                return f"{name} must be at least 1, not {value}"
        if not self.lr > 0 or self.weight_decay < 0:
            return "the learning rate must be positive and the weight decay >= 0"
        return None

    def _sampling_problem(self) -> str | None:
        if not 0 <= self.val_fraction <= 0.9:
            return f"the validation fraction must be in [0, 0.9], not {self.val_fraction}"
        if not 0 <= self.class_balance <= 1:
            return f"class_balance must be in [0, 1], not {self.class_balance}"
        lo, hi = self.scale_range
        if not 0 < lo <= hi <= 4:
            return f"the scale range must satisfy 0 < low <= high <= 4, not {lo}..{hi}"
        return None

    def _other_problem(self) -> str | None:
        if self.patience is not None and self.patience < 1:
            return f"patience must be at least 1 epoch, not {self.patience}"
        if min(self.brightness, self.contrast, self.gamma, self.noise) < 0:
            return "augmentation strengths must be >= 0"
        if self.num_workers < 0:
            return "num_workers must be >= 0"
        if not 0 <= self.ema < 1:
            return f"the EMA decay must be in [0, 1), not {self.ema}"
        return self._finetune_problem()

    def _finetune_problem(self) -> str | None:
        if not 0 <= self.focus <= 1:
            return f"the corrected-pixel share must be in [0, 1], not {self.focus}"
        if not self.focus_weight > 0:
            return f"the corrected-pixel loss weight must be positive, not {self.focus_weight}"
        if not 0 <= self.encoder_lr <= 1:
            return f"the encoder's learning-rate fraction must be in [0, 1], not {self.encoder_lr}"
        if not 0 < self.mix <= 1:
            return f"the fine-tuned share of the weights (mix) must be in (0, 1], not {self.mix}"
        if self.distill < 0 or not 0 <= self.distill_labelled <= 1:
            return "the distillation weight must be >= 0 and its labelled share in [0, 1]"
        if self.freeze_encoder < 0:
            return f"freeze_encoder must be >= 0 steps, not {self.freeze_encoder}"
        return None


FINETUNE_DEFAULTS: dict = {"steps": 120, "lr": 1e-3, "crop": 256, "batch": 4, "mix": 0.7}
"""The default fine-tune settings (one corrected image, about 2 CPU minutes); see
``benchmarks/finetune.py`` for how they were chosen."""


def finetune_config(**overrides) -> TrainConfig:
    """The default fine-tune :class:`TrainConfig` (widget and ``train --init``), checked.

    ``overrides`` replace single fields; giving ``epochs`` drops the default ``steps``.
    """
    settings = dict(FINETUNE_DEFAULTS)
    if overrides.get("epochs") is not None and "steps" not in overrides:
        settings.pop("steps")
    settings.update(overrides)
    config = TrainConfig(**settings)
    config.validate()
    return config


@dataclass
class TrainEvent:
    """What a running training reports through its ``progress`` callback.

    ``kind`` is ``"step"`` after every optimisation step (``loss`` of that step) or
    ``"epoch"`` after each validation (``train_loss`` = mean of the epoch, ``val_iou``
    per class with None for an undefined class, ``best`` when the model was saved).
    Epoch 0 is the starting model's validation (fine-tuning only).
    """

    kind: str
    step: int
    total_steps: int
    epoch: int
    lr: float = 0.0
    loss: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    val_iou: list[float | None] | None = None
    val_miou: float | None = None
    best: bool = False


@dataclass
class TrainResult:
    """The outcome of a run (:meth:`Trainer.fit`, :func:`train`).

    ``path`` is the best checkpoint (None when a cancelled run saved none yet);
    ``history`` holds one dict per epoch (the CSV rows).
    """

    path: Path | None
    log_path: Path
    best_epoch: int | None
    best_metrics: dict | None
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    stopped_early: bool = False
    improved: bool = False
    """Whether a model was saved: one that beat the starting model's validation score (or,
    without validation data or a starting model, the latest one)."""
    message: str = ""
    """One sentence on how the run ended (what was saved, or why nothing was)."""
    notes: list[str] = field(default_factory=list)
    """Remarks on the training data (e.g. a class with no labelled pixel)."""


def outcome_message(result: TrainResult, baseline: float | None, fine_tune: bool) -> str:
    """One sentence on how a run ended, for the widget and the command line."""
    start = "" if baseline is None else f" (starting model {baseline:.3f})"
    if result.path is not None:
        m = result.best_metrics or {}
        score = "" if m.get("mean_iou") is None else f", validation mean IoU {m['mean_iou']:.3f}"
        return f"Saved {result.path.name} from epoch {result.best_epoch}{score}{start}."
    if fine_tune and baseline is not None and result.history[1:]:
        how = "was cancelled before any epoch" if result.cancelled else "no epoch"
        return (
            f"Nothing was saved: {how} beat the starting model's validation mean IoU of "
            f"{baseline:.3f}; try more steps or correct more pixels."
        )
    return "Nothing was saved: the run was cancelled before its first validation."


ProgressCallback = Callable[[TrainEvent], None]


def log_path_for(out_path: str | Path) -> Path:
    """The per-epoch CSV log written beside a model: ``NAME.csv``."""
    return Path(out_path).with_suffix(".csv")


def write_training_log(path: Path, history: list[dict]) -> None:
    """Write the per-epoch rows as CSV (None as a blank), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def load_training_log(path: str | Path) -> list[dict]:
    """Read a CSV log written by a training run (numbers as floats, blanks as None)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]
