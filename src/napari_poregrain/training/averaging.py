"""Weight-space interpolation of a fine-tuned model towards its starting model (WiSE-FT).

A fine-tune on one corrected image fits that image and forgets some of what the starting model
knew. Keeping a share ``mix`` of the fine-tuned weights and ``1 - mix`` of the starting ones
(every floating-point parameter and buffer, BatchNorm statistics included) keeps most of the gain
on the correction and loses less elsewhere (Wortsman et al., "Robust fine-tuning of zero-shot
models", 2022). Measured here in ``benchmarks/finetune.py`` (README, Performance).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def interpolate(start: dict[str, torch.Tensor], tuned: nn.Module, mix: float) -> nn.Module:
    """A copy of ``tuned`` whose floating-point tensors are ``mix * tuned + (1 - mix) * start``.

    ``start`` is the starting model's ``state_dict`` (same keys); integer buffers (BatchNorm's
    batch counters) are the tuned model's.
    """
    out = copy.deepcopy(tuned)
    state = out.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if value.is_floating_point():
                first = start[key].to(device=value.device, dtype=value.dtype)
                value.mul_(mix).add_(first, alpha=1.0 - mix)
    return out


class WeightMix:
    """The weights a fine-tune saves: the kept ones, or with ``mix`` < 1 that share of them plus
    the rest of the starting model's; :meth:`settle` checks the saved ones at the end."""

    def __init__(self, start: nn.Module | None, mix: float) -> None:
        self.mix = mix
        self.start = None
        if start is not None and mix < 1:
            self.start = {k: v.detach().clone() for k, v in start.state_dict().items()}
        self.saved: nn.Module | None = None  # the interpolation last saved
        self.tuned: dict[str, torch.Tensor] | None = None  # the fine-tuned weights behind it
        self.baseline: float | None = None  # the starting model's validation score

    def of(self, kept: nn.Module, step: int) -> nn.Module:
        """``kept`` itself (no starting model, ``mix`` 1, or step 0), else the interpolation."""
        if self.start is None or step == 0:
            return kept
        return interpolate(self.start, kept, self.mix)

    def for_saving(self, kept: nn.Module, step: int) -> nn.Module:
        """The weights to save at ``step`` (see :meth:`of`); an interpolation is remembered with
        a copy of the fine-tuned weights it was made from."""
        model = self.of(kept, step)
        if model is not kept:
            self.saved = model
            self.tuned = {k: v.detach().clone() for k, v in kept.state_dict().items()}
        return model

    def settle(self, trainer, stoppable: bool = True) -> None:
        """At the end of a run: score the saved interpolation on the validation pixels. The
        epoch was chosen on the fine-tuned weights; if their interpolation is no better than the
        starting model, those fine-tuned weights are saved instead (a fine-tune ends in a better
        model or in none). Either way the run's notes say which was saved and its score.
        After a cancel it runs unstoppable (``stoppable=False``): a few seconds of scoring."""
        if self.saved is None or not trainer.val_regions:
            return
        result = trainer.result
        chosen = next(r for r in trainer.history if r["epoch"] == result.best_epoch)
        _, miou, _ = trainer._score(self.saved, stoppable)
        score = trainer.selection_score
        share = f"{self.mix:g} of the learnt change"
        if score is not None and (self.baseline is None or score > self.baseline):
            trainer.result.notes.append(f"saved {share} (validation mean IoU {miou:.3f})")
            return
        net = copy.deepcopy(self.saved)
        net.load_state_dict(self.tuned)
        # the file records the chosen epoch, not the last
        trainer.epoch, trainer.step, trainer.metrics = (
            chosen["epoch"],
            chosen["step"],
            result.best_metrics,
        )
        trainer.save_best(net)
        trainer.result.notes.append(
            f"{share} scored no better than the starting model; saved the whole change"
        )
