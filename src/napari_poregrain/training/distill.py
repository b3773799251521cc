"""Learning without forgetting: a term that keeps predictions close to the starting model's.

With ``TrainConfig.distill > 0`` and a starting model, every step adds ``distill`` times the
mean per-pixel KL divergence from the starting model's class probabilities (a frozen copy, in
eval mode) to the trained model's, on every pixel of the crop, labelled or not. Labelled pixels
still follow their labels through the main loss; unlabelled ones (and what the new data does
not show) keep the starting model's answer instead of drifting.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..inference.device import autocast


class Teacher:
    """A frozen copy of the starting network and the distillation term against it."""

    def __init__(self, net: nn.Module, device: torch.device, dtype: torch.dtype | None) -> None:
        self.net = copy.deepcopy(net).to(device).eval().requires_grad_(False)
        self.device, self.dtype = device, dtype

    def loss(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Mean per-pixel KL(teacher || student) for inputs ``x`` and the student's logits."""
        with torch.no_grad(), autocast(self.device, self.dtype):
            target = self.net(x)
        target = torch.log_softmax(target.float(), dim=1)
        student = torch.log_softmax(logits.float(), dim=1)
        kl = nn.functional.kl_div(student, target, log_target=True, reduction="none")
        return kl.sum(dim=1).mean()
