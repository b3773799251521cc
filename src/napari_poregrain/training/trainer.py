"""Training and fine-tuning from labelled Samples: the :class:`Trainer`.

Labels use the package encoding 0 matrix / 1 grain / 2 pore / 255 ignore; ignored pixels (and
those outside a Sample's region or below its data bar) count in neither the loss nor the
metrics, so partly labelled images work. Crops and augmentation: :mod:`.data`; the loss
(cross-entropy + Dice) and the schedule (linear warm-up, cosine decay): :mod:`.loss`; AdamW.

Every "epoch" (a fixed number of steps) the model is evaluated on validation data — explicit
Samples, or a contiguous held-out block of every image that is never trained on — with per-class
IoU; the best model is written atomically to ``out_path`` (only that file, which this run
creates, is ever replaced), a CSV log beside it, and training stops early after ``patience``
epochs without a gain. ``should_stop()`` and :meth:`Trainer.cancel` are checked before every
step: a cancelled run returns with the last best checkpoint intact, and the starting model (file
and object) is never modified.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..callbacks import Cancelled, StopFn, check_stop
from ..classes import CLASS_NAMES, IGNORE, N_CLASSES
from ..inference.device import autocast, resolve_device, resolve_precision
from ..model import LoadedModel, build_model, save_checkpoint
from ..preprocess import Normalization
from ..sample import Sample
from .averaging import WeightMix
from .config import (
    DEFAULT_STEPS,
    MAX_BAD_STEPS,
    MIN_STEPS_PER_EPOCH,
    ProgressCallback,
    TrainConfig,
    TrainEvent,
    TrainResult,
    log_path_for,
    outcome_message,
    write_training_log,
)
from .data import CropSampler, prepare_data
from .distill import Teacher
from .focus import corrected_map
from .guards import check_output, deterministic
from .loss import SegmentationLoss, adamw, encoder_parameters, freeze_batchnorm, lr_factor
from .provenance import model_meta, recipe_entry
from .resume import RunState
from .validation import evaluate_regions, predict_regions, truth_class_mean


class Trainer:
    """One training run (``init=None``: from scratch) or fine-tune of ``init``.

    ``samples`` carry labels (0/1/2/255); ``val_samples`` are explicit validation data
    (default: a held-out block of each sample). Bad input raises ValueError (FileExistsError
    for an existing output) in one sentence here, before anything is written. :meth:`fit`
    runs; the state (``net``, ``optimizer``, ``step``, ``epoch``, ``best_score``,
    ``history``, ...) lives on the object. ``name`` is the model's name (default: the file's
    stem), ``half`` stores fp16 weights, ``provenance`` adds entries to the checkpoint's.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        config: TrainConfig | None = None,
        init: LoadedModel | None = None,
        out_path: str | Path = "model.safetensors",
        *,
        val_samples: Sequence[Sample] | None = None,
        progress: ProgressCallback | None = None,
        should_stop: StopFn | None = None,
        name: str | None = None,
        half: bool = False,
        provenance: dict | None = None,
        run: RunState | None = None,
    ) -> None:
        self.config = cfg = copy.deepcopy(config) if config is not None else TrainConfig()
        cfg.validate()
        self.init = init
        self.run = run  # resumable: its state is written to (and read from) a run folder
        self.out_path = check_output(out_path, init, run is not None and run.resuming)
        self.log_path = log_path_for(self.out_path)
        self.progress, self.should_stop = progress, should_stop
        self.half, self.extra = half, dict(provenance or {})
        self.norm = init.meta.normalization if init is not None else Normalization()
        self.train_regions, self.val_regions, self.data = prepare_data(
            samples, cfg, self.norm, val_samples
        )
        self.device = resolve_device(cfg.device)
        self.sampler = CropSampler(self.train_regions, cfg, self.norm)
        self.dtype = resolve_precision("auto", self.device) if cfg.amp else None
        self.amp = self.dtype not in (None, torch.float32)  # bf16 on CPUs that have it natively
        self.steps_per_epoch, self.total_steps, self.warmup = self._schedule()
        self.meta, self.parent = model_meta(init, cfg, name or self.out_path.stem)
        self.recipe = recipe_entry(
            cfg, self.total_steps, self.steps_per_epoch, self.warmup, self.device
        )
        self.recipe["precision"] = str(self.dtype or torch.float32).removeprefix("torch.")
        self.net: nn.Module | None = None
        self.kept: nn.Module | None = None  # the weights validated and saved (EMA or net)
        self.ema = self.optimizer = self.scheduler = self.scaler = self.loader = None
        self.teacher: Teacher | None = None  # with ``distill``: the frozen starting model
        self.loss_fn: SegmentationLoss | None = None
        self.step, self.epoch, self.bad_steps = 0, 0, 0
        self.losses: list[float] = []  # this epoch's step losses
        self.best_score, self.since_best, self.saved = -math.inf, 0, False
        self.metrics: dict | None = None  # the latest validation's
        self.history: list[dict] = []
        self.result = TrainResult(None, self.log_path, None, None, self.history)
        self.result.total_steps, self.result.notes = self.total_steps, list(self.data["notes"])
        self.baseline: float | None = None  # the starting model's validation mean IoU
        self.selection_score: float | None = None  # mean IoU over the truth's classes
        self.encoder_params: list[nn.Parameter] = []
        self._cancelled = False
        self._start = time.perf_counter()

    # -- set-up --------------------------------------------------------------------------------
    def _schedule(self) -> tuple[int, int, int]:
        """Steps per epoch, total steps and warm-up steps."""
        cfg = self.config
        labelled = sum(int(np.count_nonzero(r.labels != IGNORE)) for r in self.train_regions)
        spe = cfg.steps_per_epoch or max(
            MIN_STEPS_PER_EPOCH, math.ceil(labelled / (cfg.crop**2 * cfg.batch))
        )
        total = cfg.epochs * spe if cfg.epochs is not None else cfg.steps or DEFAULT_STEPS
        warmup = cfg.warmup if cfg.warmup is not None else min(200, total // 10)
        return min(spe, total), total, warmup

    def _setup(self) -> None:
        """Network, optimiser, EMA, schedule, loss scaler and loader (inside the seeded RNG)."""
        cfg, device = self.config, self.device
        init = self.init
        net = copy.deepcopy(init.net) if init is not None else build_model(cfg.encoder, cfg.refine)
        net = net.to(device).train()
        self.mixer = WeightMix(init.net if init is not None else None, cfg.mix)
        if init is not None and cfg.distill > 0:
            self.teacher = Teacher(init.net, device, self.dtype, cfg.distill_labelled)
        if cfg.freeze_bn:
            freeze_batchnorm(net)
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.encoder_params = encoder_parameters(net)
        if init is not None and (cfg.focus > 0 or cfg.focus_weight != 1):
            self.mark_corrections()
        self.optimizer = adamw(net, cfg, device)
        if cfg.ema:
            multi = get_ema_multi_avg_fn(cfg.ema)
            self.ema = AveragedModel(net, multi_avg_fn=multi, use_buffers=True)
        self.kept = net if self.ema is None else self.ema.module
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        use_scaler = self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.loss_fn = SegmentationLoss()
        self.loader = torch.utils.data.DataLoader(
            self.sampler,
            batch_size=cfg.batch,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=False,
        )

    def mark_corrections(self) -> None:
        """Predict the training regions once with the starting model; mark where labels differ."""
        predicted = predict_regions(
            self.net, self.train_regions, self.norm, self.device, dtype=self.dtype,
            tile=self.config.eval_tile, should_stop=self.stop_requested,
        )  # fmt: skip
        for region, labels in zip(self.train_regions, predicted, strict=True):
            region.corrected = corrected_map(region.labels, labels)
        self.sampler = CropSampler(self.train_regions, self.config, self.norm)
        corrected = sum(int(r.corrected.sum()) for r in self.train_regions)
        self.data["corrected_pixels"] = self.recipe["corrected_pixels"] = corrected

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier at ``step`` (warm-up, then cosine)."""
        return lr_factor(step, self.total_steps, self.warmup, self.config.min_lr_ratio)

    # -- the run -------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the run to stop before its next step (the best checkpoint so far is kept)."""
        self._cancelled = True

    def stop_requested(self) -> bool:
        """True once :meth:`cancel` was called or ``should_stop()`` says so."""
        return self._cancelled or (self.should_stop is not None and bool(self.should_stop()))

    def fit(self) -> TrainResult:
        """Run to the end, an early stop or a cancel; returns the :class:`TrainResult`."""
        if self.net is not None:
            raise RuntimeError("this Trainer has already run; make a new one")
        self._start = time.perf_counter()
        with deterministic(self.device, self.config.seed):
            self._setup()
            if self.run is not None:
                self.run.begin(self)
            try:
                if self.init is not None and self.val_regions and self.step == 0:
                    self.validate()  # epoch 0: the starting model is the first candidate
                self._epochs()
                self.mixer.settle(self)
            except Cancelled:
                self.result.cancelled = True
                self.mixer.settle(self, stoppable=False)  # the saved weights are checked too
        self.result.seconds = time.perf_counter() - self._start
        self._conclude()
        return self.result

    def _conclude(self) -> None:
        """Say how the run ended; without a saved model, remove this run's log too."""
        result = self.result
        result.improved = self.saved
        if not self.saved and self.log_path.exists():
            self.log_path.unlink()  # this run's own file: nothing is left under the new name
        result.message = outcome_message(result, self.baseline, self.init is not None)

    def _epochs(self) -> None:
        batches = iter(self.loader)
        if self.step == 0:  # else resumed mid-run
            self.epoch, self.losses = 1, []
        while self.step < self.total_steps:
            check_stop(self.stop_requested)
            if self.train_step(next(batches)) is None:
                continue
            validated = self.step % self.steps_per_epoch == 0 or self.step == self.total_steps
            if validated:
                self.validate()
                self.epoch, self.losses = self.epoch + 1, []
                patience = self.config.patience
                if patience is not None and self.since_best >= patience:
                    self.result.stopped_early = True
                    break
            if self.run is not None:
                self.run.after_step(self, validated)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> float | None:
        """One optimisation step on ``(inputs, targets)``; its loss (None: skipped, not finite)."""
        x, y, *weight = (t.to(self.device, non_blocking=True) for t in batch)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.dtype):
            logits = self.net(x)
        loss = self.loss_fn(logits, y, weight[0] if weight else None)
        if self.teacher is not None:
            loss = loss + self.config.distill * self.teacher.loss(x, logits, y)
        if not torch.isfinite(loss):
            self.bad_steps += 1
            if self.bad_steps > MAX_BAD_STEPS:
                raise FloatingPointError(
                    f"the loss was not finite in {self.bad_steps} steps in a row; lower the "
                    "learning rate"
                )
            return None  # skip this batch, keep the weights
        self.bad_steps = 0
        self._optimise(loss)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.step = self.result.steps = self.step + 1
        value = float(loss.detach())
        self.losses.append(value)
        self._emit(TrainEvent("step", self.step, self.total_steps, self.epoch, lr, value))
        return value

    def _optimise(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.step < self.config.freeze_encoder:
            for p in self.encoder_params:  # AdamW leaves parameters without a gradient alone
                p.grad = None
        nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    # -- validation and saving -----------------------------------------------------------------
    def validate(self) -> bool:
        """Score the kept weights, log the epoch, save them if best; True when saved."""
        train_loss = float(np.mean(self.losses)) if self.losses else None
        row = {
            "epoch": self.epoch,
            "step": self.step,
            "seconds": round(time.perf_counter() - self._start, 2),
            "lr": _round(self.optimizer.param_groups[0]["lr"], 8),
            "train_loss": _round(train_loss),
        }
        iou, miou, val_loss = self._score() if self.val_regions else (None, None, None)
        best = self._improved(miou)
        if self.epoch == 0:  # the starting model: the score to beat, never saved as a new one
            self.baseline, best = miou, False
            self.mixer.baseline = self.selection_score
        row.update(val_loss=_round(val_loss))
        for name, v in zip(CLASS_NAMES, iou or [None] * N_CLASSES, strict=True):
            row[f"val_iou_{name}"] = _round(v)
        row.update(val_miou=_round(miou), best=int(best))
        self.history.append(row)
        if best:
            self.save_best()
        write_training_log(self.log_path, self.history)
        event = TrainEvent(
            "epoch", self.step, self.total_steps, self.epoch, lr=row["lr"], train_loss=train_loss,
            val_loss=val_loss, val_iou=iou, val_miou=miou, best=best,
        )  # fmt: skip
        self._emit(event)
        return best

    def _score(
        self, net: nn.Module | None = None, stoppable: bool = True
    ) -> tuple[list[float | None], float | None, float]:
        """Per-class IoU, mean IoU and loss on the validation regions (sets ``metrics``)."""
        cm, val_loss = evaluate_regions(
            self.kept if net is None else net, self.val_regions, self.norm, self.device,
            dtype=self.dtype, tile=self.config.eval_tile,
            should_stop=self.stop_requested if stoppable else None,
        )  # fmt: skip
        iou, miou = cm.per_class_iou(), cm.mean_iou()
        self.selection_score = truth_class_mean(cm)
        self.metrics = {
            "epoch": self.epoch,
            "per_class_iou": dict(zip(CLASS_NAMES, map(_round, iou), strict=True)),
            "mean_iou": _round(miou),
            "loss": _round(val_loss),
            "pixels": cm.total,
        }
        return iou, miou, val_loss

    def _improved(self, miou: float | None) -> bool:
        """Whether this epoch's model is the best so far (updates ``since_best``).

        The model is chosen on the mean IoU of the classes the validation truth holds: a class
        absent from the truth (no grain in a pore-only correction) must not reward a model for
        merely ceasing to predict it.
        """
        if not self.val_regions:
            return self.epoch > 0  # no validation data: keep the latest model
        score = self.selection_score
        score = -math.inf if score is None else score
        if score > self.best_score:
            self.best_score, self.since_best = score, 0
            return True
        if self.epoch > 0:
            self.since_best += 1
        return False

    def save_best(self, net: nn.Module | None = None) -> Path:
        """Write the kept weights (with ``mix``: their interpolation towards the start; or
        ``net``) to ``out_path`` with the provenance of this epoch."""
        self.meta.provenance = {
            "kind": "fine-tune" if self.init is not None else "scratch",
            "parent": self.parent,
            "data": self.data["train"],
            "split": self.data["split"],
            "recipe": self.recipe,
            "validation": self.metrics,
            "epoch": self.epoch,
            "step": self.step,
            **self.extra,
        }
        # save_checkpoint copies the tensors to the CPU; the file is this run's own
        net = self.mixer.for_saving(self.kept, self.step) if net is None else net
        model = LoadedModel(net, self.meta)
        # the first save claims the name atomically: a concurrent run that took it meanwhile
        # leaves this one a free name (``<stem>-2``), reported in the result
        path = save_checkpoint(
            model, self.out_path, half=self.half, overwrite=self.saved, exclusive=not self.saved
        )
        if path != self.out_path:
            self.result.notes.append(f"{self.out_path.name} was taken meanwhile; saved as {path}")
            self.out_path, self.log_path = path, log_path_for(path)
            self.result.log_path = self.log_path
        self.saved = True
        self.result.path = self.out_path
        self.result.best_epoch, self.result.best_metrics = self.epoch, self.metrics
        return self.out_path

    def _emit(self, event: TrainEvent) -> None:
        if self.progress is not None:
            self.progress(event)


# ---------------------------------------------------------------------------------------------
# Helpers


def _round(v: float | None, digits: int = 5) -> float | None:
    return None if v is None else round(float(v), digits)
