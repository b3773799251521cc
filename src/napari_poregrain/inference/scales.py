"""Test-time scales: a network wrapper that averages class probabilities over zoomed inputs.

``ScaleAveraged(net, (1.0, 0.5))`` runs the network on the input and on the input zoomed by each
other factor (bilinear, antialiased; sides rounded to a multiple of 16, as DeepLabV3+ needs),
brings each output back to the input's size and returns the log of the mean softmax. An image
taken at a higher magnification than the model's training images is then also seen near the
training scale. Measured (README, Model): far less organic matter taken for grain, fewer small
pores found, so not the default. One forward pass per scale (0.5x costs a quarter). Engine
module: no Qt, no napari.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

MULTIPLE = 16


class ScaleAveraged(torch.nn.Module):
    """``net`` with its class probabilities averaged over the input zoomed by ``scales``."""

    def __init__(self, net: torch.nn.Module, scales: tuple[float, ...] = (1.0, 0.5)) -> None:
        super().__init__()
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive factors, not {scales}")
        self.net, self.scales = net, tuple(float(s) for s in scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        total = None
        for s in self.scales:
            size = (_side(h, s), _side(w, s))
            view = x if size == (h, w) else F.interpolate(
                x, size=size, mode="bilinear", align_corners=False, antialias=True
            )  # fmt: skip
            probs = torch.softmax(self.net(view).float(), dim=1)
            if size != (h, w):
                probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
            total = probs if total is None else total + probs
        return torch.log(total / len(self.scales))


def _side(n: int, s: float) -> int:
    return max(MULTIPLE, round(n * s / MULTIPLE) * MULTIPLE)
