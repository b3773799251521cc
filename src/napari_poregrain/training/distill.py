"""Learning without forgetting: a term that keeps predictions close to the starting model's.

With ``TrainConfig.distill > 0`` and a starting model, every step adds ``distill`` times the
mean per-pixel KL divergence from the starting model's class probabilities (a frozen copy, in
eval mode) to the trained model's: on unlabelled (255) pixels with weight 1, on labelled ones
with weight ``distill_labelled`` (1: every pixel alike; 0: the labels alone rule where they
are given). Unlabelled pixels, and what the new data does not show, keep the starting model's
answer instead of drifting.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..classes import IGNORE
from ..inference.device import autocast


class Teacher:
    """A frozen copy of the starting network and the distillation term against it."""

    def __init__(
        self,
        net: nn.Module,
        device: torch.device,
        dtype: torch.dtype | None,
        labelled: float = 1.0,
    ) -> None:
        self.net = copy.deepcopy(net).to(device).eval().requires_grad_(False)
        self.device, self.dtype, self.labelled = device, dtype, labelled

    def loss(
        self, x: torch.Tensor, logits: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean per-pixel KL(teacher || student) for inputs ``x`` and the student's logits;
        with ``target`` (the labels), labelled pixels weigh ``labelled``."""
        with torch.no_grad(), autocast(self.device, self.dtype):
            teacher = self.net(x)
        teacher = torch.log_softmax(teacher.float(), dim=1)
        student = torch.log_softmax(logits.float(), dim=1)
        kl = nn.functional.kl_div(student, teacher, log_target=True, reduction="none").sum(dim=1)
        if target is None or self.labelled == 1:
            return kl.mean()
        weight = torch.where(target == IGNORE, 1.0, self.labelled)
        return (kl * weight).mean()
